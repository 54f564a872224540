"""The ``rbcflow`` command: one subcommand per stage, so every stage runs without Snakemake.

Each command only parses arguments, loads and validates the config, sets up logging and
calls the package function that does the work (the same function the Snakemake rule
calls). Heavy imports happen inside the commands so ``rbcflow --help`` stays fast.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from rbcflow.config import ConfigError, load_config, load_sample_sheet

app = typer.Typer(
    help="rbcflow: classify red blood cells from high-speed microfluidic video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = typer.Option(None, "--config", "-c", help="YAML config (defaults if omitted).")


def _setup_logging(verbose: bool = False, log_file: Path | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def _config(path: Path | None) -> dict:
    try:
        return load_config(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def _sample_row(sheet_path: Path, sample: str, config: dict) -> dict:
    try:
        sheet = load_sample_sheet(sheet_path, conditions=config["conditions"])
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if sample not in sheet.index:
        typer.echo(f"{sheet_path}: no sample {sample!r}", err=True)
        raise typer.Exit(2)
    return sheet.loc[sample].to_dict()


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    _setup_logging(verbose)


@app.command()
def validate(
    config: Path | None = ConfigOption,
    samples: Path | None = typer.Option(None, help="Sample sheet to check (else config's)."),
) -> None:
    """Validate the config and the sample sheet; list every problem."""
    cfg = _config(config)
    sheet_path = samples or (Path(cfg["samples"]) if cfg["samples"] else None)
    if sheet_path is not None:
        try:
            sheet = load_sample_sheet(sheet_path, conditions=cfg["conditions"])
        except ConfigError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        if cfg["study"]["enabled"]:
            from rbcflow.study import StudyError, check_study

            try:
                check_study(sheet, cfg, source=str(sheet_path),
                            open_files=cfg["study"]["open_files"])
            except StudyError as exc:
                typer.echo(str(exc), err=True)
                raise typer.Exit(2) from None
        typer.echo(f"{sheet_path}: {len(sheet)} samples OK")
    typer.echo("config OK")


@app.command()
def simulate(
    outdir: Path = typer.Argument(..., help="Folder to write videos, samples.tsv and truth/."),
    preset: str = typer.Option("demo", help="tiny (tests) or demo (the demo dataset)."),
    seed: int = typer.Option(2024, help="Simulator seed; same seed, identical output."),
    effect_size: float = typer.Option(
        1.0, help="Scales every difference between conditions; 0 makes them identical."
    ),
    video_format: str = typer.Option("avi_raw", help="avi_raw, ffv1, mjpg or tiff."),
    workers: int = typer.Option(1, help="Recordings rendered in parallel (same output)."),
) -> None:
    """Simulate a labelled microflow video dataset with ground truth."""
    from rbcflow.simulate import simulate_dataset

    sheet = simulate_dataset(
        outdir, preset=preset, seed=seed, effect_size=effect_size, video_format=video_format,
        workers=workers,
    )
    typer.echo(f"sample sheet: {sheet}")


SamplesOption = typer.Option(None, "--samples", help="Sample sheet (else the config's).")
OutOption = typer.Option(
    None, "--out", help="Folder of the recording's files (ingest/, background/, tracks/, "
    "clips/, qc/); default <results>/preprocess/<sample>, where the workflow puts them.")


def _recording(config: Path | None, samples: Path | None, sample: str, out: Path | None):
    """The validated config, the sample-sheet row, its resolved parameters and output paths."""
    from rbcflow.params import ParameterError, resolve_chain_params
    from rbcflow.preprocess import output_paths

    cfg = _config(config)
    sheet_path = samples or (Path(cfg["samples"]) if cfg["samples"] else None)
    if sheet_path is None:
        typer.echo("no sample sheet: pass --samples or set `samples` in the config", err=True)
        raise typer.Exit(2)
    row = {"sample": sample, **_sample_row(sheet_path, sample, cfg)}
    try:
        params = resolve_chain_params(cfg, row["fps"], row["um_per_px"])
    except ParameterError as exc:
        typer.echo(f"{sheet_path}: sample {sample}: {exc}", err=True)
        raise typer.Exit(2) from None
    folder = out or Path(cfg["results"]) / "preprocess" / sample
    return cfg, row, params, output_paths(folder, sample)


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(str(exc), err=True)
    return typer.Exit(1)


def _ingest_json(paths) -> dict:
    import json

    if not paths["ingest_json"].exists():
        typer.echo(f"{paths['ingest_json']}: missing; run `rbcflow ingest` first", err=True)
        raise typer.Exit(2)
    return json.loads(paths["ingest_json"].read_text(encoding="utf-8"))


@app.command()
def ingest(
    sample: str = typer.Argument(..., help="Sample name (a row of the sample sheet)."),
    config: Path | None = ConfigOption,
    samples: Path | None = SamplesOption,
    out: Path | None = OutOption,
) -> None:
    """Check one recording: metadata JSON (decodable frames, fps, SHA-256), contact sheet."""
    from rbcflow.ingest import ingest_video
    from rbcflow.io.video import VideoError

    cfg, row, params, paths = _recording(config, samples, sample, out)
    try:
        info = ingest_video(
            row["path"], sample=sample, fps_sheet=params.fps, out_json=paths["ingest_json"],
            out_png=paths["contact_sheet"], allow_truncated=cfg["ingest"]["allow_truncated"],
            fps_tolerance=cfg["ingest"]["fps_tolerance"],
        )
    except VideoError as exc:
        raise _fail(exc) from None
    typer.echo(f"{paths['ingest_json']}: {info['n_frames']} frames, {info['width']}x"
               f"{info['height']}, truncated={info['truncated']}")


@app.command()
def background(
    sample: str = typer.Argument(..., help="Sample name (a row of the sample sheet)."),
    config: Path | None = ConfigOption,
    samples: Path | None = SamplesOption,
    out: Path | None = OutOption,
) -> None:
    """Build one recording's background model and its QC figure (after `rbcflow ingest`)."""
    from rbcflow.background import build_background, save_background
    from rbcflow.io.video import VideoError
    from rbcflow.qc import write_background_qc

    _, row, params, paths = _recording(config, samples, sample, out)
    meta = _ingest_json(paths)
    try:
        model = build_background(row["path"], params.background,
                                 n_frames_readable=meta["n_frames"])
        save_background(model, paths["background"])
        write_background_qc(row["path"], model, params.detect, paths["background_qc"])
    except VideoError as exc:
        raise _fail(exc) from None
    typer.echo(f"{paths['background']}: {model.method}, {len(model.images)} image(s)")


@app.command()
def track(
    sample: str = typer.Argument(..., help="Sample name (a row of the sample sheet)."),
    config: Path | None = ConfigOption,
    samples: Path | None = SamplesOption,
    out: Path | None = OutOption,
) -> None:
    """Detect and track the cells of one recording (after `rbcflow background`)."""
    from rbcflow.io.video import VideoError
    from rbcflow.track import TrackingError, track_video

    _, row, params, paths = _recording(config, samples, sample, out)
    try:
        summary = track_video(row["path"], paths["background"], paths["tracks"],
                              paths["tracks_summary"], params, progress=sys.stderr.isatty())
    except (VideoError, TrackingError, ValueError) as exc:
        raise _fail(exc) from None
    counts = summary["status"].value_counts().to_dict()
    typer.echo(f"{paths['tracks']}: {len(summary)} tracks {counts}")


@app.command()
def clips(
    sample: str = typer.Argument(..., help="Sample name (a row of the sample sheet)."),
    config: Path | None = ConfigOption,
    samples: Path | None = SamplesOption,
    out: Path | None = OutOption,
) -> None:
    """Cut one recording's clips from its tracks (after `rbcflow track`) into HDF5."""
    from rbcflow.clips import ClipError, cut_clips
    from rbcflow.io.video import VideoError
    from rbcflow.track import TrackTableError

    _, row, params, paths = _recording(config, samples, sample, out)
    meta = _ingest_json(paths)
    try:
        n = cut_clips(row["path"], paths["background"], paths["tracks"],
                      paths["tracks_summary"], paths["clips"], paths["clips_qc"],
                      sample_info=row, params=params, source_sha256=meta["sha256"],
                      out_qc_record=paths["qc"])
    except (VideoError, ClipError, TrackTableError) as exc:
        raise _fail(exc) from None
    typer.echo(f"{paths['clips']}: {n} clips")


def _check_recording_options(video: Path, info: dict) -> None:
    """The options of `rbcflow preprocess` checked as a sample-sheet row, before any write."""
    from rbcflow.config import check_sample_row
    from rbcflow.preprocess import sample_name

    row = {**info, "sample": info["sample"] or sample_name(video), "path": str(video)}
    try:
        check_sample_row(row, f"{video}: options")
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@app.command()
def preprocess(
    video: Path = typer.Argument(..., help="The recording (video file, TIFF, frame folder, cine)."),
    out: Path = typer.Option(..., "--out", help="Folder for ingest/, background/, tracks/, ..."),
    config: Path | None = ConfigOption,
    sample: str | None = typer.Option(None, help="Sample name (default: from the file name)."),
    donor: str = typer.Option("unknown"),
    condition: str = typer.Option("unknown"),
    focus: str = typer.Option("in", help="in, above or below."),
    session: str = typer.Option("unknown"),
    fps: float | None = typer.Option(None, help="Frame rate (default: the file's header)."),
    um_per_px: float = typer.Option(..., "--um-per-px", help="Micrometres per pixel."),
) -> None:
    """Run ingest, background, tracking and clips on one recording, as the workflow does."""
    from rbcflow.clips import ClipError
    from rbcflow.io.video import VideoError
    from rbcflow.params import ParameterError
    from rbcflow.preprocess import preprocess_video
    from rbcflow.track import TrackingError

    cfg = _config(config)
    info = {"sample": sample, "donor": donor, "condition": condition, "focus": focus,
            "session": session, "fps": fps, "um_per_px": um_per_px}
    if fps is None:
        # the header's rate is checked with the other options (reading it writes nothing)
        from rbcflow.io.video import open_video

        try:
            with open_video(video) as reader:
                info["fps"] = reader.fps
            if not info["fps"]:
                raise VideoError(f"{video}: the file declares no frame rate; pass --fps")
        except VideoError as exc:
            raise _fail(exc) from None
    _check_recording_options(video, info)
    try:
        paths = preprocess_video(video, out, cfg, info, progress=sys.stderr.isatty())
    except ParameterError as exc:
        typer.echo(f"{video}: {exc}", err=True)
        raise typer.Exit(2) from None
    except (VideoError, ClipError, TrackingError, ValueError) as exc:
        raise _fail(exc) from None
    for role, path in paths.items():
        typer.echo(f"{role}: {path}")


@app.command()
def report(
    config: Path | None = ConfigOption,
    samples: Path | None = typer.Option(
        None, "--samples", help="Sample sheet (else the config's, or the simulated demo's)."
    ),
    results: Path | None = typer.Option(None, help="Results folder (else the config's)."),
    out: Path | None = typer.Option(None, help="Report folder (default <results>/report)."),
    lock_file: Path | None = typer.Option(
        Path("requirements/lock.txt"), help="Lock file whose hash the report records."),
) -> None:
    """Write Table 1, the figures and the self-contained HTML report from the results."""
    from rbcflow.report import ReportInputs, build_report

    cfg = _config(config)
    sheet_path = samples or Path(cfg["samples"] or Path(cfg["simulate"]["outdir"]) / "samples.tsv")
    try:
        # the report reads stage outputs; a moved raw video only drops the pipeline panels
        sheet = load_sample_sheet(sheet_path, conditions=cfg["conditions"], check_files=False)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    results_dir = results or Path(cfg["results"])
    found = ReportInputs.from_results(
        results_dir, sheet, [t["name"] for t in cfg["tasks"]], cfg["report"]["pipeline_sample"],
        lock_file if lock_file is not None and lock_file.is_file() else None)
    html = build_report(cfg, sheet, found, out or results_dir / "report")
    typer.echo(f"report: {html}")


@app.command()
def runtimes(
    logs: Path = typer.Argument(Path("logs"), help="Logs folder of a workflow run (`logs`)."),
) -> None:
    """Wall time, CPU time and peak memory per rule, from the jobs' benchmark files."""
    from rbcflow.report.inputs import read_benchmarks
    from rbcflow.report.tables import runtime_table

    table = runtime_table(read_benchmarks(logs))
    if table.empty:
        typer.echo(f"{logs}/benchmarks: no benchmark files (they exist after a run)",
                   err=True)
        raise typer.Exit(1)
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))


def _task(config: dict, name: str) -> dict:
    tasks = {task["name"]: task for task in config["tasks"]}
    if name not in tasks:
        typer.echo(f"no task {name!r} in the config; tasks: {', '.join(tasks)}", err=True)
        raise typer.Exit(2)
    return tasks[name]


@app.command()
def split(
    clip_files: list[Path] = typer.Argument(..., help="Clip files (results/clips/*.h5)."),
    task: str = typer.Option(..., help="Task name from the config's `tasks`."),
    out: Path = typer.Option(..., help="Split table to write (results/splits/<task>.tsv)."),
    config: Path | None = ConfigOption,
) -> None:
    """Split a task's clips by donor (train/validation/test or K folds) with an audit."""
    from rbcflow.split import SplitError, split_task

    cfg = _config(config)
    params = cfg["split"]
    audit = out.with_name(f"{out.stem}_audit.json")
    try:
        table = split_task(
            clip_files, _task(cfg, task), out, audit, train=params["train"],
            validation=params["validation"], test=params["test"],
            group_by_session=params["group_by_session"], cv_folds=params["cv_folds"],
            seed=cfg["seed"],
        )
    except SplitError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{out}: {len(table)} clips of {table['donor'].nunique()} donors; audit {audit}")


@app.command()
def train(
    split_tsv: Path = typer.Argument(..., help="Split table of the task."),
    clip_files: list[Path] = typer.Argument(..., help="Clip files holding its clips."),
    out_dir: Path = typer.Option(..., help="Model folder (results/models/<task>)."),
    config: Path | None = ConfigOption,
) -> None:
    """Train the task's model (and the single-frame baseline when ablations are on)."""
    from rbcflow.train import train_task

    cfg = _config(config)
    summary = train_task(
        split_tsv, clip_files, out_dir, cfg["train"], seed=cfg["seed"],
        ablations=cfg["evaluate"]["ablations"],
    )
    typer.echo(
        f"{out_dir}: {summary['model']} trained {summary['epochs_run']} epochs "
        f"(best {summary['best_epoch']}) in {summary['run']['seconds']:.1f} s "
        f"({summary['run']['train_clips_per_s']} clips/s on {summary['run']['device']})"
    )


@app.command()
def evaluate(
    split_tsv: Path = typer.Argument(..., help="Split table of the task."),
    clip_files: list[Path] = typer.Argument(..., help="Clip files holding its clips."),
    task: str = typer.Option(..., help="Task name from the config's `tasks`."),
    model_dir: Path = typer.Option(..., help="Model folder written by `rbcflow train`."),
    config: Path | None = ConfigOption,
) -> None:
    """Evaluate a trained task: metrics.json (Table 1, CIs, ablations), predictions.tsv."""
    from rbcflow.evaluate import evaluate_task

    cfg = _config(config)
    metrics = evaluate_task(
        split_tsv, clip_files, model_dir, _task(cfg, task), cfg["evaluate"], seed=cfg["seed"]
    )
    low, high = metrics["test"]["accuracy_ci95"]
    typer.echo(
        f"{model_dir}: test accuracy {metrics['accuracy']['test']:.3f} "
        f"(95% CI {low:.3f}-{high:.3f}, donor bootstrap)"
    )


@app.command()
def predict(
    model_dir: Path = typer.Argument(..., help="Model folder with bundle.json and model.keras "
                                     "(results/models/<task>)."),
    inputs: list[Path] = typer.Argument(..., help="Recordings (any readable format), sample "
                                        "sheets (.tsv; condition may be empty) or clip files "
                                        "(.h5)."),
    out: Path = typer.Option(..., "--out", help="Folder for cells.tsv, samples.tsv, "
                             "index.html and the recordings' preprocess/ files."),
    fps: float | None = typer.Option(None, help="Frame rate of bare recordings (default: "
                                     "the file's header)."),
    um_per_px: float | None = typer.Option(
        None, "--um-per-px", help="Pixel size of bare recordings (default: the file's, else "
        "that of the training recordings with the same frame rate)."),
    config: Path | None = ConfigOption,
) -> None:
    """Classify every cell of new recordings; each sample's composition with intervals.

    The bootstrap's replicates and the example clips come from the config's `predict`
    section, the seed from its `seed`; the chain's parameters from the model's bundle.
    """
    from rbcflow.bundle import BundleError
    from rbcflow.clips import ClipError
    from rbcflow.io.video import VideoError
    from rbcflow.params import ParameterError
    from rbcflow.predict import PredictError, predict_samples
    from rbcflow.track import TrackingError

    cfg = _config(config)
    try:
        paths = predict_samples(model_dir, inputs, out, n_boot=cfg["predict"]["bootstrap"],
                                seed=cfg["seed"],
                                example_clips=cfg["predict"]["example_clips"], fps=fps,
                                um_per_px=um_per_px, progress=sys.stderr.isatty())
    except (BundleError, PredictError, ParameterError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    except (VideoError, ClipError, TrackingError) as exc:
        raise _fail(exc) from None
    for role, path in paths.items():
        typer.echo(f"{role}: {path}")


@app.command(name="inspect")
def inspect_command(
    video: Path = typer.Argument(..., help="The recording (video, TIFF, frame folder, .rtdc)."),
    out: Path | None = typer.Option(None, "--out", help="Folder of the page (default "
                                    "<video name>_inspect in the current folder)."),
    config: Path | None = ConfigOption,
    um_per_px: float | None = typer.Option(None, "--um-per-px",
                                           help="Micrometres per pixel (default: the file's)."),
    fps: float | None = typer.Option(None, help="Frame rate (default: the file's header)."),
) -> None:
    """Show one recording as the chain sees it (HTML page, PNGs, suggested settings)."""
    from rbcflow.clips import ClipError
    from rbcflow.inspect import inspect_recording
    from rbcflow.io.video import VideoError
    from rbcflow.params import ParameterError
    from rbcflow.preprocess import sample_name
    from rbcflow.track import TrackingError

    cfg = _config(config)
    folder = out or Path(f"{sample_name(video)}_inspect")
    try:
        paths = inspect_recording(video, folder, cfg, um_per_px=um_per_px, fps=fps)
    except ParameterError as exc:
        typer.echo(f"{video}: {exc}", err=True)
        raise typer.Exit(2) from None
    except (VideoError, ClipError, TrackingError, ValueError) as exc:
        raise _fail(exc) from None
    typer.echo(f"inspection page: {paths['html']}")
    typer.echo(paths["config_snippet"].read_text(encoding="utf-8").rstrip())


@app.command(name="export-rtdc")
def export_rtdc(
    folder: Path = typer.Argument(..., help="A recording's preprocessing folder (the --out "
                                  "of `rbcflow preprocess`, or a batch folder of the workflow)."),
    out: Path = typer.Option(..., "--out", help="The .rtdc file to write."),
    sample: str | None = typer.Option(None, help="Sample (default: the folder's only one)."),
    predictions: Path | None = typer.Option(
        None, help="Table (TSV) with track_id and p_<class> columns (e.g. `rbcflow predict`'s "
        "cells.tsv): class probabilities become ml_score_xyz features."),
    all_tracks: bool = typer.Option(False, "--all-tracks", help="Every track, not only kept."),
) -> None:
    """Write a recording's per-cell results as an .rtdc file (dclab, DCscope, Shape-Out)."""
    import pandas as pd

    from rbcflow.export import export_tracks_rtdc
    from rbcflow.io.video import VideoError
    from rbcflow.preprocess import output_paths
    from rbcflow.track import TrackTableError

    found = sorted(p.name[:-len(".parquet")] for p in (folder / "tracks").glob("*.parquet"))
    if sample is None and len(found) != 1:
        typer.echo(f"{folder}: {len(found)} recordings {found[:5]}; choose one with --sample",
                   err=True)
        raise typer.Exit(2)
    sample = sample or found[0]
    paths = output_paths(folder, sample)
    try:
        table = None if predictions is None else pd.read_csv(predictions, sep="\t")
        n, codes = export_tracks_rtdc(paths["tracks"], paths["tracks_summary"], out,
                                      sample=sample, predictions=table,
                                      statuses=None if all_tracks else ("kept",))
    except (VideoError, TrackTableError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    scores = ", ".join(f"{v} = {k}" for k, v in codes.items()) or "no class scores"
    typer.echo(f"{out}: {n} cells ({scores})")


def main() -> None:
    from rbcflow.io.atomic import write_failure_message

    try:
        app()
    except OSError as exc:  # a full disk or a read-only folder: one line, not a traceback
        message = write_failure_message(exc)
        if message is None:
            raise
        typer.echo(message, err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
