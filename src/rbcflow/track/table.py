"""The tracks table: built while a recording streams, written as parquet, read back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

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

    def table(self) -> pd.DataFrame:
        """The tracks table (``TRACK_TABLE_COLUMNS``) of everything added so far."""
        self._flush()
        if self._blocks:
            frames, ids, detections = (np.concatenate([b[k] for b in self._blocks])
                                       for k in range(3))
        else:
            frames, ids = np.zeros(0, np.int64), np.zeros(0, np.int64)
            detections = np.zeros(0, dtype=DETECTION_DTYPE)
        table = pd.DataFrame({name: detections[name] for name in DETECTION_COLUMNS})
        table.insert(0, "track_id", ids)
        table.insert(0, "frame", frames)
        return table


def write_tracks(table: pd.DataFrame, summary: pd.DataFrame, out_parquet: str | Path,
                 out_summary_tsv: str | Path, meta: Mapping[str, object]) -> None:
    """Write the tracks table (parquet, with ``meta`` as JSON metadata) and the summary."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = pa.Table.from_pandas(table[list(TRACK_TABLE_COLUMNS)], preserve_index=False)
    arrow = arrow.replace_schema_metadata(
        {**(arrow.schema.metadata or {}),
         b"rbcflow": json.dumps(dict(meta), sort_keys=True).encode()})
    with atomic_path(out_parquet) as tmp:
        pq.write_table(arrow, tmp)
    with atomic_path(out_summary_tsv) as tmp:
        # shortest repr that reads back exactly: the clip stage reads these numbers again
        summary.to_csv(tmp, sep="\t", index=False)


def read_tracks(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """Tracks table and its metadata (frame size, parameters) from a parquet file."""
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


def read_summary(path: str | Path) -> pd.DataFrame:
    """The per-track summary TSV."""
    return pd.read_csv(path, sep="\t")
