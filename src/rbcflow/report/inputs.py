"""Reading the report's inputs from the results folder, tolerating missing optional ones.

Every reader returns ``None`` (or an empty frame) when its file is absent, so the report
can say in the page what it could not show instead of failing. Files that exist but are
malformed raise a ``ReportInputError`` naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

BENCHMARK_COLUMNS = [
    "s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out",
    "mean_load", "cpu_time",
]
HISTORY_COLUMNS = ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
PREDICTION_COLUMNS = ["clip_id", "donor", "split", "label", "p_positive", "predicted"]
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


def read_metrics(results: Path, task: str) -> dict | None:
    """``results/models/<task>/metrics.json``."""
    return read_json(results / "models" / task / "metrics.json")


def read_history(results: Path, task: str) -> pd.DataFrame | None:
    """``results/models/<task>/history.csv`` (one row per epoch)."""
    return read_tsv(results / "models" / task / "history.csv", HISTORY_COLUMNS, sep=",")


def read_predictions(results: Path, task: str) -> pd.DataFrame | None:
    """``results/models/<task>/predictions.tsv``."""
    return read_tsv(results / "models" / task / "predictions.tsv", PREDICTION_COLUMNS)


def read_split(results: Path, task: str) -> tuple[pd.DataFrame | None, dict | None]:
    """``results/splits/<task>.tsv`` and its audit JSON."""
    splits = read_tsv(results / "splits" / f"{task}.tsv", SPLIT_COLUMNS)
    if splits is not None:
        splits = splits.astype({"donor": str, "session": str, "sample": str})
    return splits, read_json(results / "splits" / f"{task}_audit.json")


def read_track_summary(results: Path, sample: str) -> pd.DataFrame | None:
    """``results/tracks/<sample>_tracks.tsv``."""
    return read_tsv(results / "tracks" / f"{sample}_tracks.tsv", TRACK_SUMMARY_COLUMNS)


def count_detections(results: Path, sample: str) -> int | None:
    """Rows of ``results/tracks/<sample>.parquet``, read from its footer (no data loaded)."""
    path = results / "tracks" / f"{sample}.parquet"
    if not path.is_file():
        return None
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def read_detections(
    results: Path, sample: str, first_frame: int, last_frame: int
) -> pd.DataFrame | None:
    """Detections of ``first_frame..last_frame`` only (the file can hold millions of rows)."""
    path = results / "tracks" / f"{sample}.parquet"
    if not path.is_file():
        return None
    return pd.read_parquet(
        path,
        columns=["frame", "track_id", "x", "y"],
        filters=[("frame", ">=", int(first_frame)), ("frame", "<=", int(last_frame))],
    )


def read_clip_qc(results: Path, sample: str) -> pd.DataFrame | None:
    """``results/clips/<sample>_qc.tsv`` (``reason``, ``count``)."""
    return read_tsv(results / "clips" / f"{sample}_qc.tsv", ["reason", "count"])


def read_clip_table(results: Path, sample: str) -> pd.DataFrame | None:
    """The clip table of ``results/clips/<sample>.h5``."""
    path = results / "clips" / f"{sample}.h5"
    if not path.is_file():
        return None
    from rbcflow.clipstore import read_clip_table as _read

    return _read(path)


def read_clip_file_clips(results: Path, sample: str, indices: list[int]) -> np.ndarray:
    """Rows ``indices`` of the clips of ``results/clips/<sample>.h5``, (n, T, H, W) uint8."""
    from rbcflow.clipstore import read_clips

    return read_clips(results / "clips" / f"{sample}.h5", indices)


def read_background(results: Path, sample: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Background images (K, H, W) and the frame each starts at, or None."""
    path = results / "background" / f"{sample}.npz"
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        if "images" not in data or "start_frames" not in data:
            raise ReportInputError(f"{path}: needs arrays 'images' and 'start_frames'")
        images = np.asarray(data["images"], dtype=np.float32)
        starts = np.asarray(data["start_frames"], dtype=np.int64)
    if images.ndim != 3 or starts.shape != (images.shape[0],):
        raise ReportInputError(
            f"{path}: images must be (K, H, W) and start_frames (K,), got "
            f"{images.shape} and {starts.shape}"
        )
    return images, starts


def background_for_frame(images: np.ndarray, starts: np.ndarray, frame: int) -> np.ndarray:
    """The background image that applies at ``frame`` (the last one starting at or before it)."""
    index = int(np.searchsorted(starts, frame, side="right")) - 1
    return images[max(index, 0)]


def read_truth(path: str | Path) -> pd.DataFrame | None:
    """A simulator truth table, or None when the sheet names none or the file is missing."""
    if not path or not Path(path).is_file():
        return None
    return read_tsv(Path(path), ["frame", "cell_id", "x", "y"])


def read_benchmarks(results: Path) -> pd.DataFrame:
    """Every Snakemake benchmark file under ``results/benchmarks/``.

    Returns one row per job (repeats of one job averaged) with ``rule``, ``job`` (the
    file's path below the rule folder, i.e. its wildcards) and the benchmark columns.
    """
    root = results / "benchmarks"
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


def read_dvc_lock(path: Path) -> list[dict]:
    """Paths and hashes of every dependency and output recorded in a ``dvc.lock``."""
    if not path.is_file():
        return []
    import yaml

    lock = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries: dict[str, dict] = {}
    for stage, spec in (lock.get("stages") or {}).items():
        for kind in ("deps", "outs"):
            for item in spec.get(kind) or []:
                digest = item.get("md5") or item.get("hash") or item.get("etag")
                if item.get("path") and digest:
                    entries.setdefault(
                        item["path"], {"path": item["path"], "md5": digest, "stage": stage}
                    )
    return sorted(entries.values(), key=lambda e: e["path"])


def _to_grey(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 3 and frame.shape[2] >= 3:
        import cv2

        return cv2.cvtColor(np.ascontiguousarray(frame[:, :, :3]), cv2.COLOR_BGR2GRAY)
    if frame.ndim == 3:
        return frame[:, :, 0]
    return frame


def read_video_frames(path: str | Path, frame_numbers: list[int]) -> dict[int, np.ndarray]:
    """The given frames of a recording as grey images, streamed (only these are kept).

    Uses ``rbcflow.io.video.sample_frames`` when that module is installed (it knows every
    format the pipeline reads), else OpenCV (colour conversion off, so grey videos stay
    single-channel) or tifffile for multi-page TIFF.
    """
    wanted = sorted({int(f) for f in frame_numbers})
    if not wanted:
        return {}
    try:
        from rbcflow.io.video import VideoError, sample_frames
    except ImportError:
        sample_frames = None
    if sample_frames is not None:
        try:
            return sample_frames(path, wanted)
        except VideoError as exc:
            raise ReportInputError(str(exc)) from None
    if Path(path).suffix.lower() in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            pages = len(tif.pages)
            return {f: _to_grey(tif.pages[f].asarray()) for f in wanted if f < pages}
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ReportInputError(f"{path}: OpenCV cannot open the video")
    capture.set(cv2.CAP_PROP_CONVERT_RGB, 0)

    def frames():
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame

    try:
        return _collect(frames(), wanted, path)
    finally:
        capture.release()


def _collect(frames, wanted: list[int], path: str | Path) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    targets = set(wanted)
    for index, frame in enumerate(frames):
        if index in targets:
            out[index] = _to_grey(frame).copy()
        if index >= wanted[-1]:
            break
    if not out:
        raise ReportInputError(f"{path}: none of frames {wanted[0]}..{wanted[-1]} could be read")
    return out
