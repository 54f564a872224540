"""The report's inputs: which files it reads (:class:`ReportInputs`) and their readers.

The workflow's ``render_report`` rule lists every file in :class:`ReportInputs` and
declares exactly those as inputs; ``rbcflow report`` finds the same files by the results
folder's layout (:meth:`ReportInputs.from_results`). Every reader returns ``None`` when
its file is absent, so the report says in the page what it could not show; a file that
exists but is malformed raises :class:`ReportInputError` naming it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rbcflow.layout import (
    PIPELINE_FILES,
    SAMPLE_FILES,
    model_folder,
    model_paths,
    output_paths,
    task_paths,
)

BENCHMARK_COLUMNS = [
    "s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out",
    "mean_load", "cpu_time",
]
HISTORY_COLUMNS = ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
#: Columns every ``predictions.tsv`` has (two-class tasks add ``p_positive``, tasks with
#: more classes one ``p_<class>`` per class).
PREDICTION_COLUMNS = ["clip_id", "donor", "split", "label", "predicted"]
SPLIT_COLUMNS = ["clip_id", "sample", "donor", "session", "focus", "condition", "label", "split"]
TRACK_SUMMARY_COLUMNS = ["track_id", "entry_frame", "exit_frame", "n_detections", "status"]


class ReportInputError(ValueError):
    """An input of the report exists but cannot be used; the message names the file."""


def _require_columns(frame: pd.DataFrame, columns: list[str], path: Path) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ReportInputError(f"{path}: missing column(s) {missing}")
    return frame


def read_json(path: Path) -> dict | None:
    """A JSON file as a dict, or None when it does not exist."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReportInputError(f"{path}: not valid JSON: {exc}") from None


def read_tsv(path: Path, columns: list[str] | None = None, sep: str = "\t") -> pd.DataFrame | None:
    """A tab-separated table (checked for ``columns``), or None when it does not exist."""
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path, sep=sep)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ReportInputError(f"{path}: cannot be read as a table: {exc}") from None
    return _require_columns(frame, columns or [], path)




@dataclass
class ReportInputs:
    """Every file the report reads, by task, by sample and for the pipeline panels.

    ``tasks[name]`` maps ``TASK_FILES`` to paths, ``samples[name]`` maps ``SAMPLE_FILES``,
    ``tracking[name]`` is a recording's tracking-accuracy JSON (where it has a truth),
    ``pipeline`` the sample shown in the pipeline panels with ``PIPELINE_FILES``,
    ``extra_models[task][model]`` maps ``rbcflow.layout.MODEL_FILES`` to the files of
    the other models of ``train.models``.
    """

    tasks: dict[str, dict[str, Path]] = field(default_factory=dict)
    extra_models: dict[str, dict[str, dict[str, Path]]] = field(default_factory=dict)
    samples: dict[str, dict[str, Path]] = field(default_factory=dict)
    tracking: dict[str, Path] = field(default_factory=dict)
    pipeline: dict[str, object] | None = None
    lock_file: Path | None = None

    @classmethod
    def from_mapping(cls, data: Mapping) -> ReportInputs:
        """From plain JSON-like values (the rule's params)."""
        def paths(d):
            return {k: Path(v) for k, v in d.items()}

        pipeline = dict(data["pipeline"]) if data.get("pipeline") else None
        if pipeline:
            pipeline.update({k: Path(pipeline[k]) for k in PIPELINE_FILES})
        return cls(
            tasks={t: paths(f) for t, f in data.get("tasks", {}).items()},
            extra_models={t: {m: paths(f) for m, f in models.items()}
                          for t, models in data.get("extra_models", {}).items()},
            samples={s: paths(f) for s, f in data.get("samples", {}).items()},
            tracking=paths(data.get("tracking", {})),
            pipeline=pipeline,
            lock_file=Path(data["lock_file"]) if data.get("lock_file") else None,
        )

    @classmethod
    def from_results(cls, results: str | Path, sheet, task_names: Sequence[str],
                     pipeline_sample: str = "", lock_file: str | Path | None = None
                     ) -> ReportInputs:
        """The files of a results folder laid out as the workflow writes it."""

        results = Path(results)
        folders = {qc.parent.parent for qc in results.glob("preprocess/*/qc/*.json")}
        located: dict[str, dict[str, Path]] = {}
        for folder in sorted(folders):
            for qc in sorted((folder / "qc").glob("*.json")):
                located[qc.stem] = output_paths(folder, qc.stem)
        samples = {s: {k: located[s][k] for k in (*SAMPLE_FILES, *PIPELINE_FILES[1:])}
                   for s in sheet["sample"] if s in located}
        scored = {path.stem: path for path in results.glob("tracking/*/*.json")}
        tracking = {s: scored[s] for s in sheet["sample"] if s in scored}
        shown = pipeline_sample or next(iter(samples), "")
        pipeline = None
        if shown in samples:
            video = sheet.loc[sheet["sample"] == shown, "path"].iloc[0]
            pipeline = {"sample": shown, "video": Path(video),
                        **{k: samples[shown][k] for k in PIPELINE_FILES[1:]}}
        extra = {t: {path.parent.name: model_paths(results, t, path.parent.name)
                     for path in sorted(results.glob(f"{model_folder('', t, '*')}/metrics.json"))}
                 for t in task_names}
        return cls(
            tasks={t: task_paths(results, t) for t in task_names},
            extra_models={t: models for t, models in extra.items() if models},
            samples={s: {k: f[k] for k in SAMPLE_FILES} for s, f in samples.items()},
            tracking=tracking, pipeline=pipeline,
            lock_file=Path(lock_file) if lock_file else None,
        )


def read_saliency(path: Path) -> np.ndarray | None:
    """A model's ``saliency.npy``: (n_examples, 3, T, H, W) clips, Grad-CAM maps and cell
    masks (``rbcflow.evaluate.SALIENCY_LAYERS``); None when absent or empty."""
    if not path.is_file():
        return None
    try:
        layers = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ReportInputError(f"{path}: not a NumPy array file: {exc}") from None
    if layers.size == 0:
        return None
    if layers.ndim != 5 or layers.shape[1] != 3:
        raise ReportInputError(f"{path}: expected (n, 3, T, H, W), got {layers.shape}")
    return layers


def read_models_table(path: Path) -> pd.DataFrame | None:
    """A task's ``extra/models.tsv``: its models, the task's model first."""
    return read_tsv(path, ["model", "metrics"])


def read_history(path: Path) -> pd.DataFrame | None:
    """A task's ``history.csv`` (one row per epoch)."""
    return read_tsv(path, HISTORY_COLUMNS, sep=",")


def read_predictions(path: Path) -> pd.DataFrame | None:
    """A task's ``predictions.tsv``."""
    return read_tsv(path, PREDICTION_COLUMNS)


def read_split(path: Path) -> pd.DataFrame | None:
    """A task's split table."""
    splits = read_tsv(path, SPLIT_COLUMNS)
    if splits is not None:
        splits = splits.astype({"donor": str, "session": str, "sample": str})
    return splits


def read_track_summary(path: Path) -> pd.DataFrame | None:
    """A recording's ``<sample>_tracks.tsv``."""
    return read_tsv(path, TRACK_SUMMARY_COLUMNS)


def read_detections(path: Path, first_frame: int, last_frame: int) -> pd.DataFrame | None:
    """Detections of ``first_frame..last_frame`` only (the file can hold millions of rows)."""
    if not path.is_file():
        return None
    return pd.read_parquet(
        path,
        columns=["frame", "track_id", "x", "y"],
        filters=[("frame", ">=", int(first_frame)), ("frame", "<=", int(last_frame))],
    )


def read_clip_qc(path: Path) -> pd.DataFrame | None:
    """A recording's ``<sample>_qc.tsv`` (``reason``, ``count``)."""
    return read_tsv(path, ["reason", "count"])


def read_clip_table(path: Path) -> pd.DataFrame | None:
    """The clip table of a recording's clip file."""
    if not path.is_file():
        return None
    from rbcflow.clipstore import read_clip_table as _read

    return _read(path)


def read_clip_file_clips(path: Path, indices: list[int]) -> np.ndarray:
    """Rows ``indices`` of a clip file's clips, (n, T, H, W) uint8."""
    from rbcflow.clipstore import read_clips

    return read_clips(path, indices)


def read_background_model(path: Path):
    """A recording's background model (``rbcflow.background.load_background``)."""
    from rbcflow.background import load_background

    try:
        return load_background(path)
    except ValueError as exc:
        raise ReportInputError(str(exc)) from None


def read_truth(path: str | Path) -> pd.DataFrame | None:
    """A simulator truth table, or None when the sheet names none or the file is missing."""
    if not path or not Path(path).is_file():
        return None
    return read_tsv(Path(path), ["frame", "cell_id", "x", "y"])


def read_benchmarks(logs: Path) -> pd.DataFrame:
    """Every Snakemake benchmark file under ``<logs>/benchmarks/`` (the config's ``logs``).

    Returns one row per job (repeats of one job averaged) with ``rule``, ``job`` (the
    file's path below the rule folder, i.e. its wildcards) and the benchmark columns.
    """
    root = Path(logs) / "benchmarks"
    rows = []
    if root.is_dir():
        for path in sorted(root.rglob("*.tsv")):
            relative = path.relative_to(root)
            table = read_tsv(path, ["s"])
            numeric = table.drop(columns=["h:m:s"], errors="ignore").apply(
                pd.to_numeric, errors="coerce"
            )
            row = numeric.mean(numeric_only=True).to_dict()
            # <rule>/<wildcards>.tsv, or <rule>.tsv for a rule that runs once
            row["rule"] = relative.parts[0] if len(relative.parts) > 1 else path.stem
            row["job"] = (
                str(Path(*relative.parts[1:]).with_suffix("")) if len(relative.parts) > 1 else ""
            )
            rows.append(row)
    columns = ["rule", "job"] + [c for c in BENCHMARK_COLUMNS if c != "h:m:s"]
    return pd.DataFrame(rows).reindex(columns=columns) if rows else pd.DataFrame(columns=columns)


def read_video_frames(path: str | Path, frame_numbers: list[int]) -> dict[int, np.ndarray]:
    """The given frames of a recording as grey images, streamed (only these are kept)."""
    from rbcflow.io.video import VideoError, sample_frames

    wanted = sorted({int(f) for f in frame_numbers})
    if not wanted:
        return {}
    try:
        return sample_frames(path, wanted)
    except VideoError as exc:
        raise ReportInputError(str(exc)) from None
