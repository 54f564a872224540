"""The per-sample clip file (HDF5): writing, reading and verifying.

Layout (see docs/architecture.md):

- ``clips``: (N, T, H, W) uint8, one clip per chunk, so reading one clip reads one chunk;
- ``table/<column>``: one 1-D dataset per column of the clip table;
- root attributes: provenance (``rbcflow_version``, ``packages``, ``source_sha256``,
  ``params`` and ``pipeline_id``; JSON where not a string). No time or host: the same
  inputs and parameters give the same bytes.

The file is built in memory by HDF5, then written under a temporary name and renamed, so
a crash or a full disk never leaves a clip file that looks complete, and HDF5 itself never
meets a failing disk.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from rbcflow.io.atomic import write_bytes_atomic
from rbcflow.provenance import PREPROCESSING_PACKAGES, stable_provenance

CLIP_TABLE_COLUMNS = [
    "clip_id", "sample", "donor", "condition", "focus", "session", "track_id",
    "first_frame", "last_frame", "velocity_mm_s", "centerline_distance_um",
    "flight_distance_px",
]
_STRING_COLUMNS = {"clip_id", "sample", "donor", "condition", "focus", "session"}
_COMPRESSION = {"none": None, "lzf": "lzf", "gzip": "gzip"}


class ClipFileError(ValueError):
    """A clip file is missing parts or its parts disagree."""


def write_clip_file(
    path: str | Path,
    clips: np.ndarray,
    table,
    attrs: Mapping[str, object] | None = None,
    compression: str = "none",
    clip_shape: tuple[int, int, int] | None = None,
) -> Path:
    """Write clips and their table atomically.

    Parameters
    ----------
    clips : (N, T, H, W) uint8 array (N may be 0; then give ``clip_shape``).
    table : one row per clip with at least the columns of ``CLIP_TABLE_COLUMNS``
        (``rbcflow.columns.Columns`` or a DataFrame).
    attrs : extra provenance; JSON-encoded when not a scalar or string.
    compression : ``none``, ``lzf`` or ``gzip``.
    """
    clips = np.asarray(clips)
    if clips.ndim != 4 and not (clips.size == 0 and clip_shape is not None):
        raise ClipFileError(f"{path}: clips must be (N, T, H, W), got shape {clips.shape}")
    if clips.size == 0:
        clips = np.zeros((0, *clip_shape), dtype=np.uint8) if clip_shape else clips
    if clips.dtype != np.uint8:
        raise ClipFileError(f"{path}: clips must be uint8, got {clips.dtype}")
    if len(table) != clips.shape[0]:
        raise ClipFileError(f"{path}: {clips.shape[0]} clips but {len(table)} table rows")
    missing = [c for c in CLIP_TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise ClipFileError(f"{path}: clip table lacks column(s) {missing}")
    if compression not in _COMPRESSION:
        raise ClipFileError(f"unknown compression {compression!r}")

    path = Path(path)
    # HDF5 builds the file in memory and Python writes it out: HDF5 writing to a full
    # disk itself reports errno 28 and can then crash the interpreter when it closes.
    with h5py.File(f"{path.name}.image", "w", driver="core", backing_store=False) as h5:
        _fill_clip_file(h5, clips, table, attrs, compression)
        h5.flush()
        image = h5.id.get_file_image()
    write_bytes_atomic(path, image)
    return path


def _fill_clip_file(h5, clips: np.ndarray, table,
                    attrs: Mapping[str, object] | None, compression: str) -> None:
    """The datasets and attributes of a clip file (layout in the module docstring)."""
    chunks = (1, *clips.shape[1:]) if clips.shape[0] > 0 else None
    h5.create_dataset(
        "clips", data=clips, chunks=chunks, compression=_COMPRESSION[compression]
    )
    group = h5.create_group("table")
    for column in table.columns:
        values = np.asarray(table[column])
        if column in _STRING_COLUMNS or values.dtype == object:
            data = np.array([str(v) for v in values], dtype=object)
            group.create_dataset(column, data=data, dtype=h5py.string_dtype("utf-8"))
        else:
            group.create_dataset(column, data=values)
    record = stable_provenance(PREPROCESSING_PACKAGES, **(dict(attrs) if attrs else {}))
    for key, value in record.items():
        h5.attrs[key] = value if isinstance(value, str | int | float) else json.dumps(value)


def read_clip_table(path: str | Path):
    """The clip table of a clip file as a DataFrame (row i describes ``clips[i]``)."""
    import pandas as pd

    with h5py.File(path, "r") as h5:
        if "table" not in h5:
            raise ClipFileError(f"{path}: no clip table (group 'table')")
        columns = {}
        for name, dataset in h5["table"].items():
            values = dataset[()]
            if dataset.dtype.kind in ("O", "S"):
                values = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]
            columns[name] = values
    ordered = [c for c in CLIP_TABLE_COLUMNS if c in columns]
    ordered += sorted(c for c in columns if c not in CLIP_TABLE_COLUMNS)
    return pd.DataFrame({c: columns[c] for c in ordered})


def read_clip_attrs(path: str | Path) -> dict[str, object]:
    """Root attributes (provenance) of a clip file, JSON values decoded."""
    attrs: dict[str, object] = {}
    with h5py.File(path, "r") as h5:
        for key, value in h5.attrs.items():
            if isinstance(value, bytes):
                value = value.decode("utf-8")
            if isinstance(value, str) and value[:1] in "[{":
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    pass
            attrs[key] = value.item() if isinstance(value, np.generic) else value
    return attrs


def read_clips(path: str | Path, indices: np.ndarray | list[int] | None = None) -> np.ndarray:
    """Clips of a file, all or the given rows (in the given order)."""
    with h5py.File(path, "r") as h5:
        data = h5["clips"]
        if indices is None:
            return data[()]
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            return np.zeros((0, *data.shape[1:]), dtype=data.dtype)
        order = np.argsort(indices)
        out = np.empty((indices.size, *data.shape[1:]), dtype=data.dtype)
        out[order] = data[indices[order]] if np.all(np.diff(indices[order]) > 0) else np.stack(
            [data[i] for i in indices[order]]
        )
        return out


def verify_clip_file(path: str | Path) -> list[str]:
    """Problems found in a clip file (empty list: the file is consistent)."""
    problems = []
    try:
        with h5py.File(path, "r") as h5:
            if "clips" not in h5:
                return [f"{path}: no 'clips' dataset"]
            clips = h5["clips"]
            if clips.ndim != 4 or clips.dtype != np.uint8:
                problems.append(
                    f"{path}: clips are {clips.dtype} {clips.shape}, not uint8 (N, T, H, W)"
                )
            n = clips.shape[0]
            for name, dataset in h5.get("table", {}).items():
                if dataset.shape != (n,):
                    problems.append(f"{path}: table/{name} has {dataset.shape[0]} rows, clips {n}")
            for column in CLIP_TABLE_COLUMNS:
                if f"table/{column}" not in h5:
                    problems.append(f"{path}: table/{column} is missing")
            for key in ("rbcflow_version", "params"):
                if key not in h5.attrs:
                    problems.append(f"{path}: attribute {key!r} is missing")
    except OSError as exc:
        problems.append(f"{path}: not a readable HDF5 file ({exc})")
    return problems
