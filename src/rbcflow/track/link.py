"""Flow-aware linking of detections into tracks, one frame at a time.

Cells in a microchannel move one way, roughly at the speed of their neighbours, and enter
and leave at the channel ends. The linker uses all three facts through two strategies it
is given (as trackpy's ``link_iter`` takes a predictor):

- a **predictor** (:class:`ConstantVelocity`): each track predicts its next position from
  its own smoothed velocity; a new track borrows the recent mean velocity of the flow;
- a **gate** (:class:`FlowGate`): a (track, detection) pair is refused when the prediction
  error exceeds ``max_displacement_px`` or the cell would move against the flow by more
  than ``max_backward_px`` per frame.

Detections are then assigned one-to-one per frame by the Hungarian method on the
prediction error; a track survives ``max_gap_frames`` missed frames (gap closing) unless
its prediction has left the field of view (death at the outlet), and every unassigned
detection starts a new track (birth). The linker also flags collisions: a blob much
larger than the track's cell (two cells merged), a track whose candidate blob went to
another track, two cells closer than one cell length.
"""

from __future__ import annotations

import math

import numpy as np

from rbcflow.detect import FIELD_INDEX, detection_rows
from rbcflow.params import TrackParams
from rbcflow.track.judge import FieldOfView

_FLOW_AXES = {"+x": (0, 1.0), "-x": (0, -1.0), "+y": (1, 1.0), "-y": (1, -1.0), "any": (0, 0.0)}
_INFEASIBLE = 1e9
#: Where the fields the linker reads sit in a detection row (``rbcflow.detect.detection_rows``).
_X, _Y, _BX, _BY, _BW, _BH, _AREA, _MAJOR = (
    FIELD_INDEX[name] for name in
    ("x", "y", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "area_px", "major_px"))


class TrackingError(ValueError):
    """Tracking input is inconsistent (bad parameters, malformed detections)."""


class _Track:
    """State of one live track (plain attributes: this is the inner loop)."""

    __slots__ = ("id", "x", "y", "vx", "vy", "frame", "n", "area")

    def __init__(self, track_id: int, x: float, y: float, vx: float, vy: float, frame: int,
                 area: float) -> None:
        self.id = track_id
        self.x = x
        self.y = y
        self.vx = vx
        self.vy = vy
        self.frame = frame
        self.n = 1
        self.area = area


class ConstantVelocity:
    """Predictor: a track continues at its exponentially smoothed velocity.

    ``smoothing`` is the weight of the newest step (centroids jitter by about a pixel).
    The flow prior, the velocity a new track starts with, follows every track's recent
    steps slowly (running mean over the first 20 steps, then weight 0.05).
    """

    def __init__(self, smoothing: float) -> None:
        self.smoothing = smoothing
        self.flow_v = [0.0, 0.0]
        self._flow_n = 0

    def start_velocity(self) -> tuple[float, float]:
        return self.flow_v[0], self.flow_v[1]

    @staticmethod
    def predict(track: _Track, frame: int) -> tuple[float, float]:
        dt = frame - track.frame
        return track.x + track.vx * dt, track.y + track.vy * dt

    def step(self, track: _Track, x: float, y: float, frame: int) -> None:
        """Move the track to its new detection and update the velocities."""
        dt = frame - track.frame
        vx, vy = (x - track.x) / dt, (y - track.y) / dt
        if track.n == 1:
            track.vx, track.vy = vx, vy
        else:
            w = self.smoothing
            track.vx = w * vx + (1.0 - w) * track.vx
            track.vy = w * vy + (1.0 - w) * track.vy
        self._flow_n += 1
        a = max(0.05, 1.0 / self._flow_n)
        self.flow_v[0] += a * (vx - self.flow_v[0])
        self.flow_v[1] += a * (vy - self.flow_v[1])


class FlowGate:
    """Gate: the prediction error of every pair; refused pairs cost ``_INFEASIBLE``.

    Plain Python on purpose: with a handful of cells per frame, numpy's per-call overhead
    would dominate.
    """

    def __init__(self, max_displacement: float, flow_direction: str, max_backward: float):
        self.max_displacement = max_displacement
        self.axis, self.sign = _FLOW_AXES[flow_direction]
        self.max_backward = max_backward

    def costs(self, track: _Track, px: float, py: float, detections: list[list[float]],
              frame: int) -> list[float]:
        gate, axis, sign = self.max_displacement, self.axis, self.sign
        last = track.x if axis == 0 else track.y
        limit = -self.max_backward * (frame - track.frame)
        hypot = math.hypot
        row = []
        for d in detections:
            c = hypot(d[_X] - px, d[_Y] - py)
            if c > gate or (sign != 0.0 and (d[axis] - last) * sign < limit):
                c = _INFEASIBLE
            row.append(c)
        return row


def _assign(cost: list[list[float]]) -> list[tuple[int, int]]:
    """Feasible pairs of the optimal one-to-one assignment."""
    n_t, n_d = len(cost), len(cost[0])
    # without competition (no track with two candidates, no detection wanted twice) the
    # optimum is just the feasible pairs; skip the Hungarian call
    pairs, used_cols, simple = [], set(), True
    for r in range(n_t):
        cols = [c for c in range(n_d) if cost[r][c] < _INFEASIBLE]
        if len(cols) > 1 or (cols and cols[0] in used_cols):
            simple = False
            break
        if cols:
            pairs.append((r, cols[0]))
            used_cols.add(cols[0])
    if simple:
        return pairs
    # imported here: scipy.optimize takes about 0.3 s to import, which a job on a short
    # recording (one cell at a time) would otherwise pay without ever needing it
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(np.asarray(cost))
    return [(r, c) for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
            if cost[r][c] < _INFEASIBLE]


class OnlineLinker:
    """Frame-by-frame linker; call :meth:`update` once per frame, in frame order.

    Parameters
    ----------
    params : linking parameters.
    frame_size : (width, height) of the field of view, used to end tracks whose
        prediction has left it.
    predictor, gate : the strategies (default: :class:`ConstantVelocity` and
        :class:`FlowGate` from ``params``).
    """

    def __init__(self, params: TrackParams, frame_size: tuple[int, int],
                 predictor: ConstantVelocity | None = None, gate: FlowGate | None = None):
        self.params = params
        self.width, self.height = frame_size
        self.view = FieldOfView(frame_size, params.border_margin_px, params.flow_axis)
        self.predictor = predictor or ConstantVelocity(params.velocity_smoothing)
        self.gate = gate or FlowGate(params.max_displacement_px, params.flow_direction,
                                     params.max_backward_px)
        self._active: list[_Track] = []
        self._next_id = 0
        self._last_frame: int | None = None
        #: track id -> True when the track took part in a collision
        self.collided: dict[int, bool] = {}
        #: ids of the tracks that ended (were dropped) in the last :meth:`update`
        self.ended: list[int] = []

    @property
    def active_ids(self) -> list[int]:
        """Ids of the tracks still alive (they may be continued by later frames)."""
        return [t.id for t in self._active]

    @property
    def n_tracks(self) -> int:
        """Tracks started so far."""
        return self._next_id

    def _whole(self, d: list[float]) -> bool:
        return self.view.inside(d[_BX], d[_BY], d[_BW], d[_BH])

    def _new_track(self, d: list[float], frame: int) -> int:
        vx, vy = self.predictor.start_velocity()
        track = _Track(self._next_id, d[_X], d[_Y], vx, vy, frame,
                       d[_AREA] if self._whole(d) else 0.0)
        self._next_id += 1
        self._active.append(track)
        self.collided[track.id] = False
        return track.id

    def _collide(self, *track_ids: int) -> None:
        for track_id in track_ids:
            self.collided[track_id] = True

    def _extend(self, track: _Track, d: list[float], frame: int) -> None:
        whole = self._whole(d)
        ratio = self.params.merge_area_ratio
        if whole and track.area > 0 and track.n > 1 and d[_AREA] > ratio * track.area:
            # two cells in one blob: its centroid lies between them, so the track coasts
            # on its own prediction (velocity kept) and can take its cell back when the
            # blob parts
            self._collide(track.id)
            track.x, track.y = self.predictor.predict(track, frame)
            track.frame = frame
            track.n += 1
            return
        self.predictor.step(track, d[_X], d[_Y], frame)
        if whole:
            # only blobs wholly in view say how big the cell is (it enters piece by piece)
            if track.area > 0 and d[_AREA] > ratio * track.area:
                self._collide(track.id)  # a blob suddenly much larger: a cell merged into it
            else:
                track.area = d[_AREA] if track.area <= 0 else 0.8 * track.area + 0.2 * d[_AREA]
        track.x, track.y, track.frame = d[_X], d[_Y], frame
        track.n += 1

    def _flag_close_pairs(self, det: list[list[float]], ids: list[int]) -> None:
        """Flag tracks whose cells come closer than one cell length to another cell."""
        factor = self.params.collision_distance_factor
        if factor <= 0:
            return
        for i, a in enumerate(det):
            for j in range(i + 1, len(det)):
                b = det[j]
                reach = factor * 0.5 * (a[_MAJOR] + b[_MAJOR])
                if (a[_X] - b[_X]) ** 2 + (a[_Y] - b[_Y]) ** 2 < reach * reach:
                    self._collide(ids[i], ids[j])

    def _check_merged(self, track: _Track, det: list[list[float]], ids: list[int],
                      cost_row: list[float], frame: int) -> None:
        """An unmatched track whose candidate blob went to another track: two cells merged.

        While its predicted position stays inside that blob, the track coasts (moves with
        its velocity, gap not counted), so it can take its cell back when the blob splits
        instead of ending and leaving the cell to a new track.
        """
        merged_into = None
        for c in range(len(det)):
            if cost_row[c] < _INFEASIBLE and ids[c] >= 0:
                merged_into = c
                self._collide(track.id, ids[c])
        if merged_into is None:
            return
        d = det[merged_into]
        px, py = self.predictor.predict(track, frame)
        if (d[_BX] - 1 <= px <= d[_BX] + d[_BW] + 1
                and d[_BY] - 1 <= py <= d[_BY] + d[_BH] + 1):
            track.x, track.y, track.frame = px, py, frame

    def _drop_ended(self, frame: int) -> None:
        """End tracks whose gap is too long or whose prediction has left the view."""
        p = self.params
        margin = p.max_displacement_px
        x_max, y_max = self.width + margin, self.height + margin
        keep = []
        for t in self._active:
            if frame - t.frame > p.max_gap_frames + 1:
                self.ended.append(t.id)
                continue
            if t.n > 1:
                px, py = self.predictor.predict(t, frame)
                if px < -margin or px > x_max or py < -margin or py > y_max:
                    self.ended.append(t.id)
                    continue
            keep.append(t)
        self._active = keep

    def _non_satellites(self, rows: list[list[float]]) -> list[int]:
        """Indices of the rows that are not satellites of a larger neighbour."""
        ratio, gap = self.params.satellite_area_ratio, self.params.satellite_gap_px
        keep = []
        for i, a in enumerate(rows):
            satellite = any(
                j != i and a[_AREA] < ratio * b[_AREA]
                and a[_BX] <= b[_BX] + b[_BW] + gap and b[_BX] <= a[_BX] + a[_BW] + gap
                and a[_BY] <= b[_BY] + b[_BH] + gap and b[_BY] <= a[_BY] + a[_BH] + gap
                for j, b in enumerate(rows))
            if not satellite:
                keep.append(i)
        return keep

    def _link(self, det: list[list[float]], frame: int) -> list[int]:
        """Track ids of one frame's (non-satellite) detections; new tracks for the rest."""
        ids = [-1] * len(det)
        tracks = self._active
        if tracks:
            predict, gate = self.predictor.predict, self.gate.costs
            cost = [gate(t, *predict(t, frame), det, frame) for t in tracks]
            pairs = _assign(cost)
            for r, c in pairs:
                self._extend(tracks[r], det[c], frame)
                ids[c] = tracks[r].id
            if len(pairs) < len(tracks):
                matched = {r for r, _ in pairs}
                for r, t in enumerate(tracks):
                    if r not in matched:
                        self._check_merged(t, det, ids, cost[r], frame)
        for c in range(len(det)):
            if ids[c] < 0:
                ids[c] = self._new_track(det[c], frame)
        if len(det) > 1:
            self._flag_close_pairs(det, ids)
        return ids

    def update(self, frame: int, detections: np.ndarray) -> np.ndarray:
        """Link one frame's detections; returns their track ids (int64, one per row).

        Parameters
        ----------
        frame : frame index; must increase from call to call.
        detections : the frame's detections (``rbcflow.detect.DETECTION_DTYPE``).
        """
        if self._last_frame is not None and frame <= self._last_frame:
            raise TrackingError(
                f"frame {frame} after frame {self._last_frame}: frames must increase")
        self._last_frame = frame
        self.ended = []
        if self._active:
            self._drop_ended(frame)
        if detections is None or len(detections) == 0:
            return np.zeros(0, dtype=np.int64)
        rows = detection_rows(detections)
        keep_rows = self._non_satellites(rows) if len(rows) > 1 else [0]
        ids = self._link([rows[c] for c in keep_rows], frame)
        if len(keep_rows) == len(rows):
            return np.array(ids, dtype=np.int64)
        out = np.full(len(rows), -1, dtype=np.int64)
        out[keep_rows] = ids
        return out


def link_detections(
    frames: np.ndarray, detections: np.ndarray, params: TrackParams, frame_size: tuple[int, int]
) -> tuple[np.ndarray, dict[int, bool]]:
    """Link a whole detection table (records sorted by frame) with :class:`OnlineLinker`.

    Returns the track id of every row and the collision flag of every track.
    """
    frames = np.asarray(frames, dtype=np.int64)
    if frames.size and np.any(np.diff(frames) < 0):
        raise TrackingError("detections must be sorted by frame")
    linker = OnlineLinker(params, frame_size)
    ids = np.empty(frames.size, dtype=np.int64)
    bounds = np.flatnonzero(np.diff(frames)) + 1
    starts = np.concatenate([[0], bounds]) if frames.size else np.array([], dtype=np.int64)
    stops = np.concatenate([bounds, [frames.size]]) if frames.size else starts
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        ids[start:stop] = linker.update(int(frames[start]), detections[start:stop])
    return ids, linker.collided
