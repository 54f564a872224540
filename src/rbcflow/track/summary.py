"""The per-track summary: entry and exit, speed, distances, and the judge's verdict."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from rbcflow.columns import Columns

#: Columns of the per-track summary (``tracks/<sample>_tracks.tsv``).
SUMMARY_COLUMNS = (
    "track_id", "entry_frame", "exit_frame", "n_detections", "velocity_px_per_frame",
    "velocity_mm_s", "flight_distance_px", "centerline_distance_um", "status",
)
_SUMMARY_DTYPES = {"track_id": np.int64, "entry_frame": np.int64, "exit_frame": np.int64,
                   "n_detections": np.int64, "status": object}


def empty_summary() -> Columns:
    """A summary without tracks, with the columns' types."""
    return Columns({c: np.zeros(0, dtype=_SUMMARY_DTYPES.get(c, np.float64))
                    for c in SUMMARY_COLUMNS})


def summarize_tracks(
    table,
    statuses: Mapping[int, str],
    flow_axis: int,
    fps: float,
    um_per_px: float,
    centerline: np.ndarray,
) -> Columns:
    """One row per track (``SUMMARY_COLUMNS``), in order of track id.

    Parameters
    ----------
    table : the tracks table (one row per detection; ``track_id`` -1: not linked), a
        ``rbcflow.columns.Columns`` or a DataFrame.
    statuses : track id -> ``kept`` or rejection reason (``rbcflow.track.judge``).
    flow_axis : 0 when cells flow along x, 1 along y.
    fps, um_per_px : of the recording.
    centerline : lateral centre-line coordinate per pixel along the flow.

    Notes
    -----
    Velocity is the path length (sum of the steps between successive detections, the seed
    paper's distance of flight) over the frames elapsed; ``velocity_mm_s`` converts with
    ``fps`` and ``um_per_px``. The centre-line distance is the mean absolute lateral offset
    of the detections from ``centerline``, in micrometres.
    """
    track_ids, frames = np.asarray(table["track_id"]), np.asarray(table["frame"])
    linked = np.flatnonzero(track_ids >= 0)
    if not linked.size:
        return empty_summary()
    order = linked[np.lexsort((frames[linked], track_ids[linked]))]  # by track, then frame
    tid, frame = track_ids[order], frames[order]
    x = np.asarray(table["x"], dtype=np.float64)[order]
    y = np.asarray(table["y"], dtype=np.float64)[order]
    same = np.concatenate([[False], tid[1:] == tid[:-1]])
    step = np.where(same, np.hypot(np.diff(x, prepend=x[0]), np.diff(y, prepend=y[0])), 0.0)
    along, lat = (y, x) if flow_axis == 1 else (x, y)
    idx = np.clip(np.round(along).astype(np.int64), 0, centerline.size - 1)
    offset = np.abs(lat - centerline[idx])
    starts = np.flatnonzero(~same)
    counts = np.diff(np.append(starts, tid.size))
    entry, exit_ = frame[starts], frame[starts + counts - 1]
    # pandas' groupby sum and mean over groups in sorted order, as this table once was
    # summarised: numpy's (pairwise) sum of each group, so the figures keep their bits
    flight = np.add.reduceat(step, starts)
    offset_px = np.add.reduceat(offset, starts) / counts
    elapsed = (exit_ - entry).astype(np.float64)
    v = np.divide(flight, elapsed, out=np.zeros(counts.size), where=elapsed > 0)
    return Columns({
        "track_id": tid[starts],
        "entry_frame": entry,
        "exit_frame": exit_,
        "n_detections": counts,
        "velocity_px_per_frame": v,
        "velocity_mm_s": v * um_per_px * fps / 1000.0,
        "flight_distance_px": flight,
        "centerline_distance_um": offset_px * um_per_px,
        "status": np.array([statuses[int(i)] for i in tid[starts]], dtype=object),
    })
