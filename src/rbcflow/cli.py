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


def _recording(config: Path | None, samples: Path | None, sample: str) -> tuple[dict, dict]:
    """The validated config and the sample sheet row of ``sample``."""
    cfg = _config(config)
    sheet_path = samples or (Path(cfg["samples"]) if cfg["samples"] else None)
    if sheet_path is None:
        typer.echo("no sample sheet: pass --samples or set `samples` in the config", err=True)
        raise typer.Exit(2)
    return cfg, _sample_row(sheet_path, sample, cfg)


@app.command()
def ingest(
    sample: str = typer.Argument(..., help="Sample name (a row of the sample sheet)."),
    config: Path | None = ConfigOption,
    samples: Path | None = SamplesOption,
    out_dir: Path | None = typer.Option(
        None, "--out-dir", help="Folder for <sample>.json and .png (default <results>/ingest)."
    ),
) -> None:
    """Check one recording: metadata JSON (decodable frames, fps, SHA-256), contact sheet."""
    from rbcflow.ingest import ingest_video
    from rbcflow.io.video import VideoError

    cfg, row = _recording(config, samples, sample)
    out = out_dir or Path(cfg["results"]) / "ingest"
    try:
        info = ingest_video(
            row["path"], sample=sample, fps_sheet=row["fps"],
            out_json=out / f"{sample}.json", out_png=out / f"{sample}.png",
            allow_truncated=cfg["ingest"]["allow_truncated"],
            fps_tolerance=cfg["ingest"]["fps_tolerance"],
        )
    except VideoError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{out / sample}.json: {info['n_frames']} frames, {info['width']}x"
               f"{info['height']}, truncated={info['truncated']}")


@app.command()
def background(
    sample: str = typer.Argument(..., help="Sample name (a row of the sample sheet)."),
    config: Path | None = ConfigOption,
    samples: Path | None = SamplesOption,
    meta: Path | None = typer.Option(
        None, help="Ingest JSON, for the decodable frame count (default <results>/ingest)."
    ),
    out_dir: Path | None = typer.Option(
        None, "--out-dir", help="Folder for <sample>.npz, _qc.png (default <results>/background)."
    ),
) -> None:
    """Build one recording's background model and its QC figure."""
    import json

    from rbcflow.background import build_background, save_background, write_background_qc
    from rbcflow.detect import DetectParams
    from rbcflow.io.video import VideoError

    cfg, row = _recording(config, samples, sample)
    meta = meta or Path(cfg["results"]) / "ingest" / f"{sample}.json"
    n_readable = None
    if meta.exists():
        n_readable = json.loads(meta.read_text(encoding="utf-8"))["n_frames"]
    settings = cfg["background"]
    out = out_dir or Path(cfg["results"]) / "background"
    try:
        model = build_background(
            row["path"], method=settings["method"], n_frames=settings["n_frames"],
            blur_sigma=settings["blur_sigma"], mog2_history=settings["mog2_history"],
            mog2_var_threshold=settings["mog2_var_threshold"],
            rolling_window=settings["rolling_window"], seed=cfg["seed"],
            n_frames_readable=n_readable,
        )
        save_background(model, out / f"{sample}.npz")
        write_background_qc(row["path"], model, DetectParams(**cfg["detect"]),
                            out / f"{sample}_qc.png")
    except VideoError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{out / sample}.npz: {settings['method']}, {len(model.images)} image(s)")


@app.command()
def track(
    sample: str = typer.Argument(..., help="Sample name (a row of the sample sheet)."),
    config: Path | None = ConfigOption,
    samples: Path | None = SamplesOption,
    background_npz: Path | None = typer.Option(
        None, "--background", help="Background .npz (default <results>/background)."
    ),
    out_dir: Path | None = typer.Option(
        None, "--out-dir",
        help="Folder for <sample>.parquet, _tracks.tsv (default <results>/tracks).",
    ),
) -> None:
    """Detect and track the cells of one recording (tracks table and per-track summary)."""
    from rbcflow.io.video import VideoError
    from rbcflow.track import TrackingError, track_video

    cfg, row = _recording(config, samples, sample)
    background_npz = background_npz or Path(cfg["results"]) / "background" / f"{sample}.npz"
    out = out_dir or Path(cfg["results"]) / "tracks"
    try:
        summary = track_video(
            row["path"], background_npz, out / f"{sample}.parquet", out / f"{sample}_tracks.tsv",
            detect_params=cfg["detect"], track_params=cfg["track"], fps=row["fps"],
            um_per_px=row["um_per_px"], progress=sys.stderr.isatty(),
        )
    except (VideoError, TrackingError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    counts = summary["status"].value_counts().to_dict()
    typer.echo(f"{out / sample}.parquet: {len(summary)} tracks {counts}")


@app.command()
def clips(
    sample: str = typer.Argument(..., help="Sample name (a row of the sample sheet)."),
    config: Path | None = ConfigOption,
    samples: Path | None = SamplesOption,
    results: Path | None = typer.Option(
        None, help="Folder holding background/ and tracks/ (default the config's results)."
    ),
    out_dir: Path | None = typer.Option(
        None, "--out-dir", help="Folder for <sample>.h5 and _qc.tsv (default <results>/clips)."
    ),
) -> None:
    """Cut one recording's clips (one per kept track, or seed 000's frames) into HDF5."""
    from rbcflow.clips import ClipError, cut_clips
    from rbcflow.io.video import VideoError

    cfg, row = _recording(config, samples, sample)
    res = results or Path(cfg["results"])
    out = out_dir or res / "clips"
    try:
        n = cut_clips(
            row["path"], res / "background" / f"{sample}.npz",
            res / "tracks" / f"{sample}.parquet", res / "tracks" / f"{sample}_tracks.tsv",
            out / f"{sample}.h5", out / f"{sample}_qc.tsv", sample_info={"sample": sample, **row},
            clip_params=cfg["clips"], detect_params=cfg["detect"],
        )
    except (VideoError, ClipError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{out / sample}.h5: {n} clips")


@app.command()
def preprocess(
    video: Path = typer.Argument(..., help="The recording (video file, TIFF, frame folder, cine)."),
    out: Path = typer.Option(..., "--out", help="Results folder (ingest/, background/, ...)."),
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
    from rbcflow.preprocess import preprocess_video
    from rbcflow.track import TrackingError

    cfg = _config(config)
    info = {"sample": sample, "donor": donor, "condition": condition, "focus": focus,
            "session": session, "fps": fps, "um_per_px": um_per_px}
    try:
        if fps is None:
            from rbcflow.io.video import open_video

            with open_video(video) as reader:
                info["fps"] = reader.fps
            if not info["fps"]:
                raise VideoError(f"{video}: the file declares no frame rate; pass --fps")
        paths = preprocess_video(video, out, cfg, info)
    except (VideoError, ClipError, TrackingError, ValueError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
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
) -> None:
    """Write Table 1, the figures and the self-contained HTML report from the results."""
    from rbcflow.report import build_report

    cfg = _config(config)
    sheet_path = samples or Path(cfg["samples"] or Path(cfg["simulate"]["outdir"]) / "samples.tsv")
    try:
        # the report reads stage outputs; a moved raw video only drops the pipeline panels
        sheet = load_sample_sheet(sheet_path, conditions=cfg["conditions"], check_files=False)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    results_dir = results or Path(cfg["results"])
    html = build_report(results_dir, cfg, sheet, out or results_dir / "report")
    typer.echo(f"report: {html}")


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
        f"(best {summary['best_epoch']}) in {summary['seconds']:.1f} s"
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
