"""Per-cell results of a preprocessed recording as an RT-DC ``.rtdc`` file.

``rbcflow export-rtdc`` writes, for one recording, one event per tracked cell (its
position, area, deformation and frame, and each class probability of a predictions table
as an ``ml_score_xyz`` feature) with :func:`rbcflow.io.rtdc.write_rtdc`, so that dclab,
DCscope and Shape-Out users can filter and plot the cells. This module is apart from
``rbcflow.io.rtdc`` because it reads the chain's tracks files, which the readers of
``rbcflow.io`` must not depend on.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from rbcflow.io.rtdc import write_rtdc
from rbcflow.io.video import VideoError


def track_cells(table: pd.DataFrame, summary: pd.DataFrame,
                statuses: Container[str] | None = ("kept",)) -> pd.DataFrame:
    """One row per tracked cell: its detection at the middle of its passage.

    A cell is measured once, as an RT-DC instrument measures it: at its track's median
    detection (in frame order), where it is wholly in view for a kept track.

    Parameters
    ----------
    table : a tracks table (``rbcflow.track``: ``frame``, ``track_id``, ``x``, ``y``,
        ``area_px``, ``deformation``, ...), one row per detection.
    summary : the track summary (``track_id``, ``status``).
    statuses : track statuses to export (None: every track).

    Returns
    -------
    DataFrame
        ``track_id``, ``status``, ``frame``, ``x_px``, ``y_px``, ``area_px``,
        ``deformation``, ``n_detections``, sorted by frame then track.
    """
    status = summary.set_index("track_id")["status"]
    wanted = status.index if statuses is None else status.index[status.isin(statuses)]
    rows = table[table["track_id"].isin(wanted)].sort_values(["track_id", "frame"],
                                                              kind="stable")
    groups = rows.groupby("track_id", sort=True)
    position = groups.cumcount().to_numpy()
    middle = rows[position == (groups["frame"].transform("size").to_numpy() - 1) // 2]
    cells = pd.DataFrame({
        "track_id": middle["track_id"].to_numpy(np.int64),
        "status": status.reindex(middle["track_id"]).to_numpy(),
        "frame": middle["frame"].to_numpy(np.int64),
        "x_px": middle["x"].to_numpy(np.float64), "y_px": middle["y"].to_numpy(np.float64),
        "area_px": middle["area_px"].to_numpy(np.float64),
        "deformation": middle["deformation"].to_numpy(np.float64),
        "n_detections": groups.size().reindex(middle["track_id"]).to_numpy(np.int64),
    })
    return cells.sort_values(["frame", "track_id"], kind="stable").reset_index(drop=True)


def _with_predictions(cells: pd.DataFrame, predictions: pd.DataFrame, sample: str
                      ) -> pd.DataFrame:
    """Cells joined with the ``p_<class>`` columns of a predictions table by track."""
    if "track_id" not in predictions.columns:
        raise ValueError("the predictions table has no track_id column")
    if "sample" in predictions.columns:
        predictions = predictions[predictions["sample"].astype(str) == sample]
    scores = [c for c in predictions.columns if str(c).startswith("p_")]
    if not scores:
        raise ValueError("the predictions table has no p_<class> column")
    by_track = predictions.drop_duplicates("track_id").set_index("track_id")[scores]
    if len(by_track) < len(predictions):
        raise ValueError("the predictions table lists a track more than once")
    missing = sorted(set(cells["track_id"]) - set(by_track.index))
    if missing:
        raise ValueError(f"no predictions for track(s) {missing[:5]} of sample {sample}")
    return cells.join(by_track, on="track_id")


def export_tracks_rtdc(
    tracks_parquet: str | Path,
    tracks_summary_tsv: str | Path,
    out: str | Path,
    *,
    sample: str,
    predictions: pd.DataFrame | None = None,
    statuses: Container[str] | None = ("kept",),
    metadata: Mapping[str, object] | None = None,
) -> tuple[int, dict[str, str]]:
    """Per-cell results of a preprocessed recording as an ``.rtdc`` file.

    The pixel size, frame rate and frame size are the ones the tracks were made with
    (the tracks file's metadata). With ``predictions`` (a table with ``track_id`` and
    ``p_<class>`` columns, and ``sample`` when it holds several recordings, such as
    ``rbcflow predict``'s ``cells.tsv``), each class probability becomes an
    ``ml_score_xyz`` feature. Returns the number of cells and the class codes.
    """
    from rbcflow.track import read_summary, read_tracks

    table, meta = read_tracks(tracks_parquet)
    units = (meta.get("params") or {}).get("units") or {}
    if not units.get("um_per_px"):
        raise VideoError(f"{tracks_parquet}: no pixel size in the tracks file's metadata")
    cells = track_cells(table, read_summary(tracks_summary_tsv), statuses)
    if predictions is not None:
        cells = _with_predictions(cells, predictions, sample)
    width, height = meta["frame_size"]
    codes = write_rtdc(out, cells, um_per_px=float(units["um_per_px"]),
                       fps=units.get("fps"), frame_shape=(int(height), int(width)),
                       sample=sample, metadata=metadata,
                       provenance={"tracks": str(tracks_parquet),
                                   "pipeline_id": meta.get("pipeline_id")})
    return len(cells), codes


__all__ = ["export_tracks_rtdc", "track_cells"]
