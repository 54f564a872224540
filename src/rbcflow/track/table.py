"""The tracks table: built while a recording streams, written as parquet, read back.

It is built and written as ``rbcflow.columns.Columns`` (the chain's single pass does not
import pandas); the readers return pandas DataFrames.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from rbcflow.columns import Columns, write_tsv
from rbcflow.detect import DETECTION_COLUMNS, DETECTION_DTYPE
from rbcflow.io.atomic import atomic_path

#: Columns of the tracks table (``tracks/<sample>.parquet``).
TRACK_TABLE_COLUMNS = ("frame", "track_id", *DETECTION_COLUMNS)


class TrackTableError(ValueError):
    """A tracks file is missing columns or cannot be read."""


class TableBuilder:
    """Collects one frame's detections at a time into the tracks table.

    Frames are gathered in blocks (one array per ``block`` frames), so the Python objects
    held do not grow with every frame of a long recording; only the detections do.
    """

    def __init__(self, block: int = 2048) -> None:
        self.block = block
        self._frames: list[int] = []
        self._counts: list[int] = []
        self._ids: list[np.ndarray] = []
        self._detections: list[np.ndarray] = []
        self._blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, frame: int, ids: np.ndarray, detections: np.ndarray) -> None:
        """Add one frame's detections (``DETECTION_DTYPE``) and their track ids."""
        self._frames.append(frame)
        self._counts.append(len(detections))
        self._ids.append(ids)
        self._detections.append(detections)
        if len(self._detections) >= self.block:
            self._flush()

    def _flush(self) -> None:
        if self._detections:
            frames = np.repeat(np.asarray(self._frames, dtype=np.int64), self._counts)
            # joined as plain float64 (the records' bytes): concatenating record arrays
            # promotes their fields array by array, about 20 us per frame
            values = np.concatenate([np.ascontiguousarray(d).view(np.float64)
                                     for d in self._detections])
            self._blocks.append((frames, np.concatenate(self._ids),
                                 values.view(DETECTION_DTYPE)))
            self._frames, self._counts, self._ids, self._detections = [], [], [], []

    def table(self) -> Columns:
        """The tracks table (``TRACK_TABLE_COLUMNS``) of everything added so far."""
        self._flush()
        if self._blocks:
            frames, ids, detections = (np.concatenate([b[k] for b in self._blocks])
                                       for k in range(3))
        else:
            frames, ids = np.zeros(0, np.int64), np.zeros(0, np.int64)
            detections = np.zeros(0, dtype=DETECTION_DTYPE)
        # each field on its own (a record array's fields are strided views of its rows)
        return Columns({"frame": frames, "track_id": ids,
                        **{name: np.ascontiguousarray(detections[name])
                           for name in DETECTION_COLUMNS}})


def write_tracks(table, summary, out_parquet: str | Path, out_summary_tsv: str | Path,
                 meta: Mapping[str, object]) -> None:
    """Write the tracks table (parquet, with ``meta`` as JSON metadata) and the summary.

    ``table`` and ``summary`` are ``rbcflow.columns.Columns`` or DataFrames. The parquet
    schema holds the columns of ``TRACK_TABLE_COLUMNS`` and the ``rbcflow`` metadata only
    (no pandas index or metadata: :func:`read_tracks` gives the default index either way).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = pa.Table.from_arrays(
        [_arrow_column(pa, table[name], name) for name in TRACK_TABLE_COLUMNS],
        names=list(TRACK_TABLE_COLUMNS),
        metadata={b"rbcflow": json.dumps(dict(meta), sort_keys=True).encode()})
    with atomic_path(out_parquet) as tmp:
        pq.write_table(arrow, tmp)
    with atomic_path(out_summary_tsv) as tmp:
        # shortest repr that reads back exactly: the clip stage reads these numbers again
        write_tsv(summary, tmp)


#: The tracks table's column types: frame and track id integers, the detection's fields floats.
_COLUMN_TYPES = {"frame": np.int64, "track_id": np.int64}


def _arrow_column(pa, values, name: str):
    """One column of the tracks table as an Arrow array made from its numpy buffer.

    ``pa.array`` would do the same, but its first call imports pandas (to check for
    pandas objects), a quarter second of every preprocessing job's start-up.
    """
    kind = np.dtype(_COLUMN_TYPES.get(name, np.float64))
    values = np.asarray(values)
    if not np.can_cast(values.dtype, kind, "safe"):
        raise TypeError(f"tracks table column {name!r} has type {values.dtype}, "
                        f"expected {kind} (or a type that converts to it exactly)")
    values = np.ascontiguousarray(values, dtype=kind)
    return pa.Array.from_buffers(pa.from_numpy_dtype(kind), len(values),
                                 [None, pa.py_buffer(values)])


def read_tracks(path: str | Path):
    """Tracks table (a DataFrame) and its metadata (frame size, parameters) from a
    parquet file."""
    import pyarrow.parquet as pq

    try:
        arrow = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise TrackTableError(f"{path}: not a readable tracks file ({exc})") from None
    meta = json.loads((arrow.schema.metadata or {}).get(b"rbcflow", b"{}"))
    table = arrow.to_pandas()
    missing = [c for c in TRACK_TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise TrackTableError(f"{path}: tracks table lacks column(s) {missing}")
    return table, meta


def read_summary(path: str | Path):
    """The per-track summary TSV, as a DataFrame."""
    import pandas as pd

    return pd.read_csv(path, sep="\t")
