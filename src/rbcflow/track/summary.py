"""The per-track summary: entry and exit, speed, distances, and the judge's verdict."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

#: Columns of the per-track summary (``tracks/<sample>_tracks.tsv``).
SUMMARY_COLUMNS = (
    "track_id", "entry_frame", "exit_frame", "n_detections", "velocity_px_per_frame",
    "velocity_mm_s", "flight_distance_px", "centerline_distance_um", "status",
)


def empty_summary() -> pd.DataFrame:
    """A summary without tracks, with the columns' types."""
    return pd.DataFrame({c: pd.Series(dtype=object if c == "status" else "float64")
                         for c in SUMMARY_COLUMNS}).astype(
        {"track_id": "int64", "entry_frame": "int64", "exit_frame": "int64",
         "n_detections": "int64"})


def summarize_tracks(
    table: pd.DataFrame,
    statuses: Mapping[int, str],
    flow_axis: int,
    fps: float,
    um_per_px: float,
    centerline: np.ndarray,
) -> pd.DataFrame:
    """One row per track (``SUMMARY_COLUMNS``).

    Parameters
    ----------
    table : the tracks table (one row per detection; ``track_id`` -1: not linked).
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
    t = table[table["track_id"] >= 0]
    if t.empty:
        return empty_summary()
    t = t.sort_values(["track_id", "frame"], kind="stable")
    tid = t["track_id"].to_numpy()
    x = t["x"].to_numpy(dtype=np.float64)
    y = t["y"].to_numpy(dtype=np.float64)
    same = np.concatenate([[False], tid[1:] == tid[:-1]])
    step = np.where(same, np.hypot(np.diff(x, prepend=x[0]), np.diff(y, prepend=y[0])), 0.0)
    along, lat = (y, x) if flow_axis == 1 else (x, y)
    idx = np.clip(np.round(along).astype(np.int64), 0, centerline.size - 1)
    offset = np.abs(lat - centerline[idx])
    g = pd.DataFrame({"track_id": tid, "frame": t["frame"].to_numpy(), "step": step,
                      "offset": offset}).groupby("track_id", sort=True)
    out = pd.DataFrame({
        "entry_frame": g["frame"].min(),
        "exit_frame": g["frame"].max(),
        "n_detections": g["frame"].size(),
        "flight_distance_px": g["step"].sum(),
        "offset_px": g["offset"].mean(),
    })
    out.index.name = "track_id"
    out = out.reset_index()
    elapsed = (out["exit_frame"] - out["entry_frame"]).to_numpy(dtype=np.float64)
    v = np.divide(out["flight_distance_px"].to_numpy(), elapsed,
                  out=np.zeros(len(out)), where=elapsed > 0)
    out["velocity_px_per_frame"] = v
    out["velocity_mm_s"] = v * um_per_px * fps / 1000.0
    out["centerline_distance_um"] = out["offset_px"] * um_per_px
    out["status"] = np.array([statuses[int(i)] for i in out["track_id"]], dtype=object)
    return out[list(SUMMARY_COLUMNS)]
