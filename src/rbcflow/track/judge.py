"""Which tracks become clips: the border rule and the rejection rules, decided online.

A track is rejected as ``too_short`` (fewer than ``min_length`` detections),
``touches_border`` (its box touched a lateral edge of the field of view, or it was wholly
in view in fewer than ``min_length`` frames: a cell cut by the frame edge shows only part
of itself) or ``collision`` (the linker saw it merge with, or come too close to, another
cell). :class:`TrackJudge` keeps the counts these rules need while the recording streams,
so the streaming pass knows early which tracks may still be kept (and need their frames
buffered for a clip) and the per-track summary reports the same verdicts.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from rbcflow.detect import FIELD_INDEX, detection_rows
from rbcflow.params import TrackParams

REJECTION_REASONS = ("too_short", "touches_border", "collision")
KEPT = "kept"


class FieldOfView:
    """The frame's edges, with the margin within which a box touches one.

    Parameters
    ----------
    frame_size : (width, height) in pixels.
    margin : a box closer than this to an edge touches it.
    flow_axis : 0 when cells flow along x (top and bottom are the lateral edges), 1 along y.
    """

    def __init__(self, frame_size: tuple[int, int], margin: int, flow_axis: int) -> None:
        self.width, self.height = (int(v) for v in frame_size)
        self.margin = margin
        self.flow_axis = flow_axis

    def touches(self, bx: float, by: float, bw: float, bh: float) -> tuple[bool, bool]:
        """(touches a lateral edge, touches any edge) for one box."""
        m = self.margin
        top_bottom = by <= m or by + bh >= self.height - m
        left_right = bx <= m or bx + bw >= self.width - m
        lateral = top_bottom if self.flow_axis == 0 else left_right
        return lateral, top_bottom or left_right

    def inside(self, bx: float, by: float, bw: float, bh: float) -> bool:
        """The box stays ``margin`` pixels clear of every edge (the cell is wholly in view)."""
        m = self.margin
        return bx > m and by > m and bx + bw < self.width - m and by + bh < self.height - m

    def inside_mask(self, detections) -> np.ndarray:
        """:meth:`inside` for many boxes (columns ``bbox_x``, ``_y``, ``_w``, ``_h``)."""
        m = self.margin
        bx, by = np.asarray(detections["bbox_x"]), np.asarray(detections["bbox_y"])
        bw, bh = np.asarray(detections["bbox_w"]), np.asarray(detections["bbox_h"])
        return ((bx > m) & (by > m) & (bx + bw < self.width - m)
                & (by + bh < self.height - m))


class _Record:
    __slots__ = ("n", "n_inside", "lateral")

    def __init__(self) -> None:
        self.n = 0
        self.n_inside = 0
        self.lateral = False


_BOX_FIELDS = ["bbox_x", "bbox_y", "bbox_w", "bbox_h"]


class TrackJudge:
    """Counts per track what the rejection rules need, frame by frame.

    ``collided`` is the linker's collision flag per track id (shared, updated in place).
    """

    def __init__(self, params: TrackParams, frame_size: tuple[int, int],
                 collided: Mapping[int, bool]) -> None:
        self.min_length = params.min_length
        self.view = FieldOfView(frame_size, params.border_margin_px, params.flow_axis)
        self.collided = collided
        self._records: dict[int, _Record] = {}

    def observe(self, ids: np.ndarray, detections: np.ndarray) -> list[bool]:
        """Count one frame's linked detections; returns, per row, whether it is wholly in view.

        Rows with track id -1 (not linked) are not counted (and reported as not inside).
        """
        inside_rows = []
        ix, iy, iw, ih = (FIELD_INDEX[name] for name in _BOX_FIELDS)
        for tid, row in zip(ids.tolist(), detection_rows(detections), strict=True):
            bx, by, bw, bh = row[ix], row[iy], row[iw], row[ih]
            if tid < 0:
                inside_rows.append(False)
                continue
            record = self._records.get(tid)
            if record is None:
                record = self._records[tid] = _Record()
            record.n += 1
            lateral, any_edge = self.view.touches(bx, by, bw, bh)
            if lateral:
                record.lateral = True
            inside = not any_edge
            if inside:
                record.n_inside += 1
            inside_rows.append(inside)
        return inside_rows

    def may_be_kept(self, track_id: int) -> bool:
        """False once the track can no longer be kept (touched a lateral edge, collided)."""
        record = self._records.get(track_id)
        return not (record is None or record.lateral
                    or self.collided.get(track_id, False))

    def status(self, track_id: int) -> str:
        """``kept`` or the rejection reason (the last rule that applies wins)."""
        record = self._records[track_id]
        status = KEPT
        if self.collided.get(track_id, False):
            status = "collision"
        if record.lateral or record.n_inside < self.min_length:
            status = "touches_border"
        if record.n < self.min_length:
            status = "too_short"
        return status

    def statuses(self) -> dict[int, str]:
        """Verdict of every track seen so far."""
        return {tid: self.status(tid) for tid in sorted(self._records)}


def judge_table(table, collided: Mapping[int, bool], params: TrackParams,
                frame_size: tuple[int, int]) -> dict[int, str]:
    """Verdicts of a whole tracks table (rows in frame order), as the streaming pass gives.

    ``table``: ``rbcflow.columns.Columns`` or a DataFrame.
    """
    from rbcflow.detect import DETECTION_DTYPE

    judge = TrackJudge(params, frame_size, collided)
    track_ids = np.asarray(table["track_id"], dtype=np.int64)
    linked = track_ids >= 0
    detections = np.zeros(int(linked.sum()), dtype=DETECTION_DTYPE)
    for name in _BOX_FIELDS:
        detections[name] = np.asarray(table[name], dtype=np.float64)[linked]
    judge.observe(track_ids[linked], detections)
    return judge.statuses()
