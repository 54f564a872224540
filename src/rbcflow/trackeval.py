"""Tracking accuracy against the simulator's ground truth (CLEAR MOT and identity metrics).

The truth table lists a cell in every frame in which any part of it is in view; a cell
with only a sliver in view cannot be detected as a whole, and a partial blob's centroid
lies away from the true centre. Such truth rows are *don't care*: per frame, truth and
hypotheses are first matched (Hungarian, within ``max_distance_px``); hypotheses matched
to a don't-care row and the don't-care rows themselves are then left out, and the rest
goes to ``motmetrics`` (the way the MOT benchmarks treat ignored regions).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

_INFEASIBLE = 1e12


def _full_view(truth: pd.DataFrame, frame_size: tuple[int, int] | None) -> np.ndarray:
    """True where the whole cell (centre +- half its long axis) is in view."""
    x, y = truth["x"].to_numpy(float), truth["y"].to_numpy(float)
    r = 0.5 * truth["major_px"].to_numpy(float)
    if frame_size is None:
        # the truth boxes are clipped to the frame, so a box narrower than the cell
        # says the cell is cut by an edge
        w, h = truth["bbox_w"].to_numpy(float), truth["bbox_h"].to_numpy(float)
        minor = truth["minor_px"].to_numpy(float)
        return (w >= minor - 1) & (h >= minor - 1) & (
            truth["bbox_x"].to_numpy(float) > 0) & (truth["bbox_y"].to_numpy(float) > 0)
    width, height = frame_size
    return (x - r >= 0) & (x + r <= width - 1) & (y - r >= 0) & (y + r <= height - 1)


def _isolated(truth: pd.DataFrame) -> np.ndarray:
    """True for truth rows with no other cell closer than one cell diameter.

    The distance between two cells is the gap between them (centre distance minus both
    half long axes), and the diameter is the larger long axis: cells a hair apart look
    as one blob through the microscope's blur, and no threshold can part them.
    """
    out = np.ones(len(truth), dtype=bool)
    frames = truth["frame"].to_numpy()
    xy = truth[["x", "y"]].to_numpy(float)
    major = truth["major_px"].to_numpy(float)
    if frames.size == 0:
        return {}  # no detections at all (e.g. a triggered clip whose cell never came)
    order = np.argsort(frames, kind="stable")
    bounds = np.flatnonzero(np.diff(frames[order])) + 1
    for group in np.split(order, bounds):
        if group.size < 2:
            continue
        d = np.hypot(*(xy[group, None, :] - xy[None, group, :]).transpose(2, 0, 1))
        half = 0.5 * major[group]
        gap = d - half[:, None] - half[None, :]
        np.fill_diagonal(gap, np.inf)
        diameter = np.maximum(major[group, None], major[None, group])
        out[group] = (gap >= diameter).all(axis=1)
    return out


def _match(t_xy: np.ndarray, h_xy: np.ndarray, max_d: float) -> list[tuple[int, int]]:
    if t_xy.size == 0 or h_xy.size == 0:
        return []
    d = np.hypot(t_xy[:, None, 0] - h_xy[None, :, 0], t_xy[:, None, 1] - h_xy[None, :, 1])
    cost = np.where(d <= max_d, d, _INFEASIBLE)
    rows, cols = linear_sum_assignment(cost)
    return [(r, c) for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
            if cost[r, c] < _INFEASIBLE]


def _rows_by_frame(frames: np.ndarray) -> dict[int, np.ndarray]:
    """Row indices of each frame number, rows in their original order."""
    if frames.size == 0:
        return {}  # no detections at all (e.g. a triggered clip whose cell never came)
    order = np.argsort(frames, kind="stable")
    values, starts = np.unique(frames[order], return_index=True)
    return {int(f): rows for f, rows in zip(values, np.split(order, starts[1:]), strict=True)}


def evaluate_tracking(
    tracks_df: pd.DataFrame,
    truth_df: pd.DataFrame,
    max_distance_px: float,
    frame_size: tuple[int, int] | None = None,
    track_ids: np.ndarray | list[int] | None = None,
) -> dict[str, float]:
    """Compare linked detections with the simulator's truth.

    Parameters
    ----------
    tracks_df : tracks table (``frame``, ``track_id``, ``x``, ``y``, ...); rows with
        ``track_id`` < 0 are detections outside any track: they count for the detection
        recall only.
    truth_df : simulator truth (``frame``, ``cell_id``, ``x``, ``y``, ``bbox_*``,
        ``major_px``, ``minor_px``).
    max_distance_px : a hypothesis farther than this from a truth centre cannot match it.
    frame_size : (width, height); decides which truth rows show the whole cell (else
        inferred from the clipped truth boxes).
    track_ids : evaluate only these tracks (e.g. the kept ones); default all.

    Returns
    -------
    dict with ``idf1``, ``idp``, ``idr``, ``mota``, ``motp`` (mean distance, px),
    ``recall``, ``precision``, ``id_switches``, ``fragmentations``, ``mostly_tracked``,
    ``n_truth_cells``, ``n_tracks``, ``n_truth_rows``, ``detection_recall_isolated``
    (fraction of whole-in-view truth rows with no other cell within one diameter, see
    :func:`_isolated`, that a detection lies within ``max_distance_px`` of) and
    ``n_isolated_rows``.
    """
    import motmetrics as mm

    truth = truth_df.reset_index(drop=True)
    hyps_all = tracks_df.reset_index(drop=True)
    care = _full_view(truth, frame_size)
    isolated = _isolated(truth) & care
    h_xy_all = hyps_all[["x", "y"]].to_numpy(float)
    h_id_all = hyps_all["track_id"].to_numpy()
    # row indices per frame, and plain arrays: indexing DataFrames frame by frame costs
    # more than the matching itself on long recordings
    hyp_rows = _rows_by_frame(hyps_all["frame"].to_numpy())
    truth_groups = _rows_by_frame(truth["frame"].to_numpy())
    t_xy_all = truth[["x", "y"]].to_numpy(float)
    det_hits = _isolated_hits(truth_groups, isolated, t_xy_all, hyp_rows, h_xy_all,
                              max_distance_px)
    n_isolated = int(isolated.sum())

    in_track = h_id_all >= 0
    if track_ids is not None:
        in_track &= np.isin(h_id_all, np.asarray(track_ids))
    hyps = hyps_all[in_track]
    hyp_groups = {f: kept for f, rows in hyp_rows.items() if (kept := rows[in_track[rows]]).size}
    acc = mm.MOTAccumulator(auto_id=False)
    cell_ids = truth["cell_id"].to_numpy()
    major = truth["major_px"].to_numpy(float)
    no_rows = np.zeros(0, dtype=np.int64)
    for f in sorted(set(truth_groups) | set(hyp_groups)):
        t_idx = truth_groups.get(f, no_rows)
        h_rows = hyp_groups.get(f, no_rows)
        keep_t, keep_h = _cared_for(t_idx, care, major, t_xy_all, h_xy_all[h_rows],
                                    max_distance_px)
        h_xy, h_id = h_xy_all[h_rows][keep_h], h_id_all[h_rows][keep_h]
        dist = mm.distances.norm2squared_matrix(
            t_xy_all[keep_t], h_xy, max_d2=max_distance_px**2
        )
        acc.update(cell_ids[keep_t].tolist(), h_id.tolist(), np.sqrt(dist), frameid=int(f))
    return _scores(acc, hyps, care, det_hits, n_isolated)


def _isolated_hits(truth_groups, isolated, t_xy_all, hyp_rows, h_xy_all, max_distance_px
                   ) -> int:
    """Isolated whole-cell truth rows with a detection (any, linked or not) in reach."""
    hits = 0
    for f, idx in truth_groups.items():
        sel = idx[isolated[idx]]
        if sel.size and f in hyp_rows:
            hits += len(_match(t_xy_all[sel], h_xy_all[hyp_rows[f]], max_distance_px))
    return hits


def _cared_for(t_idx, care, major, t_xy_all, h_xy, max_distance_px
               ) -> tuple[np.ndarray, np.ndarray]:
    """One frame's truth rows to score, and which of its hypotheses stay in.

    A blob of a cell cut by the edge has its centroid inside the visible part, up to half
    a cell length from the true centre: hypotheses matched to such a (don't care) row are
    left out with it.
    """
    dont_care = ~care[t_idx]
    keep_h = np.ones(h_xy.shape[0], dtype=bool)
    if dont_care.any():
        dc = t_idx[dont_care]
        radius = 0.5 * major[dc] + max_distance_px
        for r, c in _match(t_xy_all[dc], h_xy, float(radius.max())):
            if np.hypot(*(t_xy_all[dc[r]] - h_xy[c])) <= radius[r]:
                keep_h[c] = False
    return t_idx[~dont_care], keep_h


def _scores(acc, hyps, care, det_hits: int, n_isolated: int) -> dict[str, float]:
    import motmetrics as mm

    names = ["idf1", "idp", "idr", "mota", "motp", "recall", "precision", "num_switches",
             "num_fragmentations", "mostly_tracked", "num_unique_objects"]
    summary = mm.metrics.create().compute(acc, metrics=names, name="video")
    row = summary.loc["video"]

    def num(v: object) -> float:
        v = float(v)
        return v if np.isfinite(v) else float("nan")

    return {
        "idf1": num(row["idf1"]),
        "idp": num(row["idp"]),
        "idr": num(row["idr"]),
        "mota": num(row["mota"]),
        "motp": num(row["motp"]),
        "recall": num(row["recall"]),
        "precision": num(row["precision"]),
        "id_switches": int(row["num_switches"]),
        "fragmentations": int(row["num_fragmentations"]),
        "mostly_tracked": int(row["mostly_tracked"]),
        "n_truth_cells": int(row["num_unique_objects"]),
        "n_tracks": int(hyps["track_id"].nunique()),
        "n_truth_rows": int(care.sum()),
        "detection_recall_isolated": det_hits / n_isolated if n_isolated else float("nan"),
        "n_isolated_rows": n_isolated,
    }


def evaluate_recording(tracks_parquet: str | Path, summary_tsv: str | Path,
                       truth_tsv: str | Path, out_json: str | Path,
                       max_distance_px: float) -> dict[str, float]:
    """Score one recording's kept tracks against its truth table; write the scores (JSON)."""
    from rbcflow.io.atomic import write_text_atomic
    from rbcflow.track import KEPT, read_summary, read_tracks

    tracks, meta = read_tracks(tracks_parquet)
    summary = read_summary(summary_tsv)
    truth = pd.read_csv(truth_tsv, sep="\t")
    frame_size = tuple(meta["frame_size"]) if meta.get("frame_size") else None
    kept = summary.loc[summary["status"] == KEPT, "track_id"].to_numpy()
    scores = evaluate_tracking(tracks[["frame", "track_id", "x", "y"]], truth, max_distance_px,
                               frame_size=frame_size, track_ids=kept)
    scores["max_distance_px"] = float(max_distance_px)
    scores["n_truth_cells_in_view"] = int(truth["cell_id"].nunique())
    safe = {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
            for k, v in scores.items()}
    write_text_atomic(out_json, json.dumps(safe, indent=2, sort_keys=True) + "\n")
    return scores
