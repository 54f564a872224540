"""Flow-aware tracking of detected cells, and the per-track summary.

Cells in a microchannel move one way, roughly at the speed of their neighbours, and
enter and leave at the channel ends. The linker uses all three facts: each track
predicts its next position from its own velocity (a new track borrows the recent mean
velocity of the flow), detections are assigned one-to-one per frame by the Hungarian
method on the prediction error, an assignment is refused when the error exceeds
``max_displacement_px`` or when the cell would move against the flow by more than
``max_backward_px`` per frame, a track survives ``max_gap_frames`` missed frames
(gap closing) unless its prediction has left the field of view (death at the outlet),
and every unassigned detection starts a new track (birth).

The linker is online: :meth:`OnlineLinker.update` takes one frame's detections and
returns their track ids at once, so tracking runs inside the streaming pass over the
video and costs a few microseconds per frame.

Tracks are then summarised (:func:`summarize_tracks`) and rejected when too short, when
they touch the lateral border of the field of view (or are never wholly inside it), or
when they collided with another cell (two cells merged into one blob, or two cells
closer than ``collision_distance_factor`` cell lengths).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from rbcflow.io.atomic import atomic_path

log = logging.getLogger(__name__)

#: Columns of one detection row (the order of ``rbcflow.detect.DETECTION_COLUMNS``).
DETECTION_COLUMNS = (
    "x", "y", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "area_px", "major_px", "minor_px",
    "orientation_deg", "deformation", "brightness",
)
#: Columns of the tracks table (``results/tracks/<sample>.parquet``).
TRACK_TABLE_COLUMNS = ("frame", "track_id", *DETECTION_COLUMNS)
#: Columns of the per-track summary (``results/tracks/<sample>_tracks.tsv``).
SUMMARY_COLUMNS = (
    "track_id", "entry_frame", "exit_frame", "n_detections", "velocity_px_per_frame",
    "velocity_mm_s", "flight_distance_px", "centerline_distance_um", "status",
)
REJECTION_REASONS = ("too_short", "touches_border", "collision")

_X, _Y, _BX, _BY, _BW, _BH, _AREA, _MAJOR = range(8)
_FLOW_AXES = {"+x": (0, 1.0), "-x": (0, -1.0), "+y": (1, 1.0), "-y": (1, -1.0), "any": (0, 0.0)}
_INFEASIBLE = 1e9


class TrackingError(ValueError):
    """Tracking input is inconsistent (bad parameters, malformed detections)."""


@dataclasses.dataclass(frozen=True)
class TrackParams:
    """Linking and rejection parameters (the ``track:`` section of the config).

    Attributes
    ----------
    max_displacement_px : gate on the distance between prediction and detection.
    flow_direction : ``+x`` (left to right), ``-x``, ``+y``, ``-y`` or ``any``.
    max_backward_px : motion against the flow tolerated per frame (detection jitter).
    max_gap_frames : frames a track may go undetected and still be continued.
    min_length : tracks with fewer detections are rejected as ``too_short``.
    border_margin_px : a box closer than this to the frame edge touches the border.
    collision_distance_factor : two cells whose centres are closer than this many
        cell lengths (mean major axis) in one frame are a collision.
    merge_area_ratio : a detection larger than this times the track's typical area is
        taken as two merged cells.
    satellite_area_ratio, satellite_gap_px : a blob smaller than this fraction of a
        neighbouring blob whose box lies within this gap of the neighbour's box is a
        satellite (a piece of the cell's bright halo or a split rim that the detector
        did not re-join); satellites are not linked (track id -1), so they neither start
        tracks nor make their own cell look like a collision.
    """

    max_displacement_px: float = 40.0
    flow_direction: str = "+x"
    max_backward_px: float = 2.0
    max_gap_frames: int = 3
    min_length: int = 8
    border_margin_px: int = 2
    collision_distance_factor: float = 1.0
    merge_area_ratio: float = 1.7
    satellite_area_ratio: float = 0.35
    satellite_gap_px: float = 4.0

    def __post_init__(self) -> None:
        if self.flow_direction not in _FLOW_AXES:
            raise TrackingError(
                f"flow_direction must be one of {sorted(_FLOW_AXES)}, got {self.flow_direction!r}"
            )
        if self.max_displacement_px <= 0 or self.max_backward_px < 0:
            raise TrackingError("max_displacement_px must be > 0 and max_backward_px >= 0")
        if self.max_gap_frames < 0 or self.min_length < 1:
            raise TrackingError("max_gap_frames must be >= 0 and min_length >= 1")

    @classmethod
    def from_mapping(cls, params: Mapping[str, object] | None) -> TrackParams:
        """Build from a config section; unknown keys are an error (they are typos)."""
        params = dict(params or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - names)
        if unknown:
            raise TrackingError(f"unknown track parameter(s) {unknown}; known: {sorted(names)}")
        return cls(**params)


class _Track:
    """State of one live track (plain attributes: this is the inner loop)."""

    __slots__ = ("id", "x", "y", "vx", "vy", "frame", "n", "area", "collided")

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
        self.collided = False


class OnlineLinker:
    """Frame-by-frame linker; call :meth:`update` once per frame, in frame order.

    Parameters
    ----------
    params : linking parameters.
    frame_size : (width, height) of the field of view, used to end tracks whose
        prediction has left it.

    Notes
    -----
    Velocities are smoothed (exponential, weight ``velocity_smoothing`` on the newest
    step) because blob centroids jitter by a pixel or so; the flow prior for new tracks
    is the mean velocity of recent steps of all tracks.
    """

    velocity_smoothing = 0.6

    def __init__(self, params: TrackParams, frame_size: tuple[int, int]) -> None:
        self.params = params
        self.width, self.height = frame_size
        axis, sign = _FLOW_AXES[params.flow_direction]
        self._axis = axis
        self._sign = sign
        self._active: list[_Track] = []
        self._next_id = 0
        self._last_frame: int | None = None
        self._flow_v = [0.0, 0.0]
        self._flow_n = 0
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

    def _whole(self, row: list[float]) -> bool:
        m = self.params.border_margin_px
        return (row[_BX] > m and row[_BY] > m and row[_BX] + row[_BW] < self.width - m
                and row[_BY] + row[_BH] < self.height - m)

    def _new_track(self, row: list[float], frame: int) -> int:
        track = _Track(self._next_id, row[_X], row[_Y], self._flow_v[0], self._flow_v[1],
                       frame, row[_AREA] if self._whole(row) else 0.0)
        self._next_id += 1
        self._active.append(track)
        self.collided[track.id] = False
        return track.id

    def _extend(self, track: _Track, row: list[float], frame: int) -> None:
        dt = frame - track.frame
        x, y = row[_X], row[_Y]
        if (self._whole(row) and track.area > 0 and track.n > 1
                and row[_AREA] > self.params.merge_area_ratio * track.area):
            # two cells in one blob: its centroid lies between them, so the track coasts
            # on its own prediction (velocity kept) and can take its cell back when the
            # blob parts
            track.collided = True
            self.collided[track.id] = True
            track.x, track.y = track.x + track.vx * dt, track.y + track.vy * dt
            track.frame = frame
            track.n += 1
            return
        vx, vy = (x - track.x) / dt, (y - track.y) / dt
        if track.n == 1:
            track.vx, track.vy = vx, vy
        else:
            w = self.velocity_smoothing
            track.vx = w * vx + (1.0 - w) * track.vx
            track.vy = w * vy + (1.0 - w) * track.vy
        if self._whole(row):
            # only blobs wholly in view say how big the cell is (it enters piece by piece)
            area = row[_AREA]
            if track.area > 0 and area > self.params.merge_area_ratio * track.area:
                # a blob suddenly much larger than this cell: another cell merged into it
                track.collided = True
                self.collided[track.id] = True
            else:
                track.area = area if track.area <= 0 else 0.8 * track.area + 0.2 * area
        track.x, track.y, track.frame = x, y, frame
        track.n += 1
        # the flow prior follows recent steps of every track (slowly)
        self._flow_n += 1
        a = max(0.05, 1.0 / self._flow_n)
        self._flow_v[0] += a * (vx - self._flow_v[0])
        self._flow_v[1] += a * (vy - self._flow_v[1])

    def _costs(self, tracks: list[_Track], det: list[list[float]], frame: int
               ) -> list[list[float]]:
        """Prediction error of every (track, detection) pair; gated pairs get _INFEASIBLE.

        Plain Python on purpose: with a handful of cells per frame, numpy's per-call
        overhead would dominate.
        """
        gate = self.params.max_displacement_px
        back = self.params.max_backward_px
        axis, sign = self._axis, self._sign
        hypot = math.hypot
        cost = []
        for t in tracks:
            dt = frame - t.frame
            px, py = t.x + t.vx * dt, t.y + t.vy * dt
            last = t.x if axis == 0 else t.y
            limit = -back * dt
            row = []
            for d in det:
                c = hypot(d[_X] - px, d[_Y] - py)
                if c > gate or (sign != 0.0 and (d[axis] - last) * sign < limit):
                    c = _INFEASIBLE
                row.append(c)
            cost.append(row)
        return cost

    def _flag_close_pairs(self, det: list[list[float]], ids: list[int]) -> None:
        """Flag tracks whose cells come closer than one cell length to another cell."""
        factor = self.params.collision_distance_factor
        if factor <= 0:
            return
        n = len(det)
        for i in range(n):
            a = det[i]
            for j in range(i + 1, n):
                b = det[j]
                reach = factor * 0.5 * (a[_MAJOR] + b[_MAJOR])
                if (a[_X] - b[_X]) ** 2 + (a[_Y] - b[_Y]) ** 2 < reach * reach:
                    self.collided[ids[i]] = True
                    self.collided[ids[j]] = True

    def _check_merged(self, track: _Track, det: list[list[float]], ids: list[int],
                      cost_row: list[float], frame: int) -> None:
        """An unmatched track whose candidate blob went to another track: two cells merged.

        While its predicted position stays inside that blob, the track coasts (moves
        with its velocity, gap not counted), so it can take its cell back when the
        blob splits instead of ending and leaving the cell to a new track.
        """
        merged_into = None
        for c in range(len(det)):
            if cost_row[c] < _INFEASIBLE and ids[c] >= 0:
                merged_into = c
                track.collided = True
                self.collided[track.id] = True
                self.collided[ids[c]] = True
        if merged_into is None:
            return
        d = det[merged_into]
        dt = frame - track.frame
        px, py = track.x + track.vx * dt, track.y + track.vy * dt
        if d[_BX] - 1 <= px <= d[_BX] + d[_BW] + 1 and d[_BY] - 1 <= py <= d[_BY] + d[_BH] + 1:
            track.x, track.y, track.frame = px, py, frame

    @staticmethod
    def _assign(cost: list[list[float]]) -> list[tuple[int, int]]:
        """Feasible pairs of the optimal one-to-one assignment."""
        n_t, n_d = len(cost), len(cost[0])
        # without competition (no track with two candidates, no detection wanted twice)
        # the optimum is just the feasible pairs; skip the Hungarian call
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

    def update(self, frame: int, detections: np.ndarray) -> np.ndarray:
        """Link one frame's detections; returns their track ids (int64, one per row).

        Parameters
        ----------
        frame : frame index; must increase from call to call.
        detections : (n, >= 8) array in ``DETECTION_COLUMNS`` order.
        """
        if self._last_frame is not None and frame <= self._last_frame:
            raise TrackingError(
                f"frame {frame} after frame {self._last_frame}: frames must increase")
        self._last_frame = frame
        p = self.params
        self.ended = []
        if self._active:
            # deaths: gap too long, or the prediction has left the field of view
            margin = p.max_displacement_px
            x_max, y_max = self.width + margin, self.height + margin
            keep = []
            for t in self._active:
                dt = frame - t.frame
                if dt > p.max_gap_frames + 1:
                    self.ended.append(t.id)
                    continue
                if t.n > 1:
                    px, py = t.x + t.vx * dt, t.y + t.vy * dt
                    if px < -margin or px > x_max or py < -margin or py > y_max:
                        self.ended.append(t.id)
                        continue
                keep.append(t)
            self._active = keep
        n_det = 0 if detections is None else len(detections)
        if n_det == 0:
            return np.zeros(0, dtype=np.int64)
        rows = detections[:, :8].tolist()
        keep_rows = self._non_satellites(rows) if n_det > 1 else [0]
        det = [rows[c] for c in keep_rows]
        n_det = len(det)
        ids = [-1] * n_det
        tracks = self._active
        if tracks:
            cost = self._costs(tracks, det, frame)
            pairs = self._assign(cost)
            for r, c in pairs:
                self._extend(tracks[r], det[c], frame)
                ids[c] = tracks[r].id
            if len(pairs) < len(tracks):
                matched = {r for r, _ in pairs}
                for r, t in enumerate(tracks):
                    if r not in matched:
                        self._check_merged(t, det, ids, cost[r], frame)
        for c in range(n_det):
            if ids[c] < 0:
                ids[c] = self._new_track(det[c], frame)
        if n_det > 1:
            self._flag_close_pairs(det, ids)
        if len(keep_rows) == len(rows):
            return np.array(ids, dtype=np.int64)
        out = np.full(len(rows), -1, dtype=np.int64)
        out[keep_rows] = ids
        return out

    def _non_satellites(self, rows: list[list[float]]) -> list[int]:
        """Indices of the rows that are not satellites of a larger neighbour."""
        ratio, gap = self.params.satellite_area_ratio, self.params.satellite_gap_px
        keep = []
        for i, a in enumerate(rows):
            satellite = False
            for j, b in enumerate(rows):
                if (j != i and a[_AREA] < ratio * b[_AREA]
                        and a[_BX] <= b[_BX] + b[_BW] + gap and b[_BX] <= a[_BX] + a[_BW] + gap
                        and a[_BY] <= b[_BY] + b[_BH] + gap and b[_BY] <= a[_BY] + a[_BH] + gap):
                    satellite = True
                    break
            if not satellite:
                keep.append(i)
        return keep


def link_detections(
    frames: np.ndarray, detections: np.ndarray, params: TrackParams, frame_size: tuple[int, int]
) -> tuple[np.ndarray, dict[int, bool]]:
    """Link a whole detection table (rows sorted by frame) with :class:`OnlineLinker`.

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


def estimate_centerline(
    table: pd.DataFrame,
    frame_size: tuple[int, int],
    flow_direction: str = "+x",
    bin_px: int = 8,
    background: np.ndarray | None = None,
    min_per_bin: int = 20,
) -> np.ndarray:
    """Lateral position of the channel centre line at every position along the flow.

    Parameters
    ----------
    table : detections (``x``, ``y``, ``bbox_*``).
    frame_size : (width, height).
    flow_direction : the flow axis is x for ``+x``/``-x``/``any``, y for ``+y``/``-y``.
    bin_px : width of the bins along the flow.
    background : background image, used where detections are too few (a triggered
        recording holds a single cell, whose own path says nothing about the channel).
    min_per_bin : detections a bin needs for the data estimate.

    Returns
    -------
    (L,) float64 array: centre-line lateral coordinate for each pixel along the flow.

    Notes
    -----
    From detections: in each bin the midpoint between the 2nd percentile of box tops and
    the 98th percentile of box bottoms (the lateral extent the cells explore; the
    percentiles keep a stray blob from moving it). From the background: the channel
    interior is brighter and smoother than the walls, so per column the midpoint of the
    longest run of rows whose vertical gradient is small; this is a fallback.
    """
    axis = 1 if flow_direction in ("+y", "-y") else 0
    length = frame_size[1] if axis == 1 else frame_size[0]
    lateral = frame_size[0] if axis == 1 else frame_size[1]
    along_col, lat_col, lat_box, lat_size = (
        ("y", "x", "bbox_x", "bbox_w") if axis == 1 else ("x", "y", "bbox_y", "bbox_h")
    )
    n_bins = max(1, math.ceil(length / bin_px))
    centres = np.full(n_bins, np.nan)
    if len(table):
        along = table[along_col].to_numpy(dtype=np.float64)
        lo = table[lat_box].to_numpy(dtype=np.float64)
        hi = lo + table[lat_size].to_numpy(dtype=np.float64)
        b = np.clip((along // bin_px).astype(np.int64), 0, n_bins - 1)
        count = np.bincount(b, minlength=n_bins)
        full = count >= min_per_bin
        if full.any():
            centres[full] = 0.5 * (_binned_percentile(lo, b, count, 2.0)[full]
                                   + _binned_percentile(hi, b, count, 98.0)[full])
    if np.isnan(centres).all() and background is not None:
        centres = _centerline_from_background(background, axis, bin_px, n_bins)
    if np.isnan(centres).all():
        centres[:] = lateral / 2.0
    good = ~np.isnan(centres)
    bin_mid = (np.arange(n_bins) + 0.5) * bin_px
    return np.interp(np.arange(length, dtype=np.float64), bin_mid[good], centres[good])


def _binned_percentile(values: np.ndarray, bins: np.ndarray, count: np.ndarray, q: float
                       ) -> np.ndarray:
    """``np.percentile(values[bins == k], q)`` for every bin k at once (NaN when empty).

    The same arithmetic as numpy's default (linear) method, bin by bin: virtual index
    ``(n - 1) * q / 100`` between two order statistics, interpolated the way numpy's
    ``_lerp`` does (from the upper neighbour when the weight is 0.5 or more), so the
    results are bit for bit those of one ``np.percentile`` call per bin.
    """
    out = np.full(count.size, np.nan)
    used = count > 0
    if not used.any():
        return out
    ordered = values[np.lexsort((values, bins))]
    start = np.concatenate([[0], np.cumsum(count)[:-1]])[used]
    n = count[used]
    virtual = (n - 1) * (q / 100.0)
    below = np.floor(virtual)
    gamma = virtual - below
    below = below.astype(np.int64)
    above = np.minimum(below + 1, n - 1)
    a, c = ordered[start + below], ordered[start + above]
    diff = c - a
    result = a + diff * gamma
    upper = gamma >= 0.5
    result[upper] = (c - diff * (1 - gamma))[upper]
    out[used] = result
    return out


def _centerline_from_background(image: np.ndarray, axis: int, bin_px: int, n_bins: int
                                ) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    if axis == 1:
        img = img.T
    grad = np.abs(np.diff(img, axis=0))
    centres = np.full(n_bins, np.nan)
    for k in range(n_bins):
        col = grad[:, k * bin_px : (k + 1) * bin_px].mean(axis=1)
        if col.size == 0:
            continue
        # rows with a significant lateral gradient are walls; the channel is the longest
        # quiet run between them, preferring runs that do not touch the image edge
        med = np.median(col)
        mad = 1.4826 * np.median(np.abs(col - med)) + 1e-9
        quiet = np.append(col < med + 6 * mad, False)
        runs, start = [], None
        for i, q in enumerate(quiet):
            if q and start is None:
                start = i
            elif not q and start is not None:
                runs.append((start, i))
                start = None
        if not runs:
            continue
        inner = [r for r in runs if r[0] > 0 and r[1] < col.size] or runs
        lo, hi = max(inner, key=lambda r: r[1] - r[0])
        centres[k] = 0.5 * (lo + hi)
    return centres


def summarize_tracks(
    table: pd.DataFrame,
    collided: Mapping[int, bool],
    params: TrackParams,
    frame_size: tuple[int, int],
    fps: float,
    um_per_px: float,
    centerline: np.ndarray,
) -> pd.DataFrame:
    """One row per track (``SUMMARY_COLUMNS``), with its status.

    Velocity is the path length (sum of the steps between successive detections, the
    seed paper's distance of flight) over the frames elapsed; ``velocity_mm_s`` converts
    with ``fps`` and ``um_per_px``. The centre-line distance is the mean absolute
    lateral offset of the detections from ``centerline``, in micrometres.
    """
    if fps <= 0 or um_per_px <= 0:
        raise TrackingError(f"fps and um_per_px must be > 0, got {fps} and {um_per_px}")
    t = table[table["track_id"] >= 0]
    if t.empty:
        return pd.DataFrame({c: pd.Series(dtype=object if c == "status" else "float64")
                             for c in SUMMARY_COLUMNS}).astype(
            {"track_id": "int64", "entry_frame": "int64", "exit_frame": "int64",
             "n_detections": "int64"})
    t = t.sort_values(["track_id", "frame"], kind="stable")
    width, height = frame_size
    axis = 1 if params.flow_direction in ("+y", "-y") else 0
    tid = t["track_id"].to_numpy()
    frame = t["frame"].to_numpy()
    x = t["x"].to_numpy(dtype=np.float64)
    y = t["y"].to_numpy(dtype=np.float64)
    bx, by = t["bbox_x"].to_numpy(), t["bbox_y"].to_numpy()
    bw, bh = t["bbox_w"].to_numpy(), t["bbox_h"].to_numpy()
    m = params.border_margin_px
    at_left, at_right = bx <= m, bx + bw >= width - m
    at_top, at_bottom = by <= m, by + bh >= height - m
    lateral_touch = (at_top | at_bottom) if axis == 0 else (at_left | at_right)
    inside = ~(at_left | at_right | at_top | at_bottom)
    same = np.concatenate([[False], tid[1:] == tid[:-1]])
    step = np.where(same, np.hypot(np.diff(x, prepend=x[0]), np.diff(y, prepend=y[0])), 0.0)
    along, lat = (y, x) if axis == 1 else (x, y)
    idx = np.clip(np.round(along).astype(np.int64), 0, centerline.size - 1)
    offset = np.abs(lat - centerline[idx])
    df = pd.DataFrame({"track_id": tid, "frame": frame, "step": step, "offset": offset,
                       "lateral": lateral_touch, "inside": inside})
    g = df.groupby("track_id", sort=True)
    out = pd.DataFrame({
        "entry_frame": g["frame"].min(),
        "exit_frame": g["frame"].max(),
        "n_detections": g["frame"].size(),
        "flight_distance_px": g["step"].sum(),
        "offset_px": g["offset"].mean(),
        "lateral": g["lateral"].any(),
        "n_inside": g["inside"].sum(),
    })
    out.index.name = "track_id"
    out = out.reset_index()
    elapsed = (out["exit_frame"] - out["entry_frame"]).to_numpy(dtype=np.float64)
    v = np.divide(out["flight_distance_px"].to_numpy(), elapsed,
                  out=np.zeros(len(out)), where=elapsed > 0)
    out["velocity_px_per_frame"] = v
    out["velocity_mm_s"] = v * um_per_px * fps / 1000.0
    out["centerline_distance_um"] = out["offset_px"] * um_per_px
    coll = out["track_id"].map(lambda i: bool(collided.get(int(i), False))).to_numpy(dtype=bool)
    status = np.full(len(out), "kept", dtype=object)
    status[coll] = "collision"
    status[out["lateral"].to_numpy() | (out["n_inside"].to_numpy() < params.min_length)] = (
        "touches_border")
    status[out["n_detections"].to_numpy() < params.min_length] = "too_short"
    out["status"] = status
    return out[list(SUMMARY_COLUMNS)]


def inside_mask(table: pd.DataFrame, frame_size: tuple[int, int], margin: int) -> np.ndarray:
    """True for detections whose box stays ``margin`` pixels clear of every frame edge."""
    width, height = frame_size
    bx, by = table["bbox_x"].to_numpy(), table["bbox_y"].to_numpy()
    bw, bh = table["bbox_w"].to_numpy(), table["bbox_h"].to_numpy()
    return (bx > margin) & (by > margin) & (bx + bw < width - margin) & (by + bh < height - margin)


def track_video(
    video_path: str | Path,
    background_npz: str | Path,
    out_parquet: str | Path,
    out_summary_tsv: str | Path,
    detect_params: Mapping[str, object],
    track_params: Mapping[str, object],
    fps: float,
    um_per_px: float,
    progress: bool = False,
) -> pd.DataFrame:
    """Detect and track every cell of a recording in one streaming pass.

    Parameters
    ----------
    video_path : the recording.
    background_npz : its background (``rbcflow.background.save_background``).
    out_parquet : tracks table, one row per detection (``TRACK_TABLE_COLUMNS``).
    out_summary_tsv : per-track summary (``SUMMARY_COLUMNS``).
    detect_params : the ``detect:`` config section.
    track_params : the ``track:`` config section.
    fps, um_per_px : of the recording (sample sheet), for velocities in mm/s and distances
        in micrometres.
    progress : show a progress bar.

    Returns
    -------
    The per-track summary.
    """
    from rbcflow.background import load_background
    from rbcflow.detect import DetectParams
    from rbcflow.io.video import open_video

    params = TrackParams.from_mapping(track_params)
    background = load_background(background_npz)
    detect = DetectParams(**dict(detect_params))
    reader = open_video(video_path)
    frame_size = (int(reader.width), int(reader.height))
    detector = background.detector(detect)
    linker = OnlineLinker(params, frame_size)
    builder = TableBuilder()
    n_frames = 0
    iterator = reader.frames()
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=getattr(reader, "n_frames", None), unit="frame",
                        desc=f"track {Path(video_path).name}")
    for index, frame in iterator:
        rows = detector(frame, index)
        n_frames += 1
        ids = linker.update(index, rows)
        if rows.shape[0]:
            builder.add(index, ids, rows)
    if hasattr(reader, "close"):
        reader.close()
    table = builder.table()
    return finish_tracks(table, linker.collided, params, frame_size, n_frames, fps, um_per_px,
                         background, detect_params, out_parquet, out_summary_tsv,
                         source=video_path)[1]


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
        self._rows: list[np.ndarray] = []
        self._blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, frame: int, ids: np.ndarray, rows: np.ndarray) -> None:
        """Add one frame's detections (rows) and their track ids."""
        self._frames.append(frame)
        self._counts.append(rows.shape[0])
        self._ids.append(ids)
        self._rows.append(rows)
        if len(self._rows) >= self.block:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            frames = np.repeat(np.asarray(self._frames, dtype=np.int64), self._counts)
            self._blocks.append((frames, np.concatenate(self._ids), np.concatenate(self._rows)))
            self._frames, self._counts, self._ids, self._rows = [], [], [], []

    def table(self) -> pd.DataFrame:
        """The tracks table (``TRACK_TABLE_COLUMNS``) of everything added so far."""
        self._flush()
        return tracks_table([b[0] for b in self._blocks], [b[1] for b in self._blocks],
                            [b[2] for b in self._blocks])


def finish_tracks(
    table: pd.DataFrame,
    collided: Mapping[int, bool],
    params: TrackParams,
    frame_size: tuple[int, int],
    n_frames: int,
    fps: float,
    um_per_px: float,
    background,
    detect_params: Mapping[str, object],
    out_parquet: str | Path,
    out_summary_tsv: str | Path,
    source: str | Path = "",
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Centre line, per-track summary and the two track files of a linked recording.

    Returns the tracks table, the summary and the metadata written with the table.
    """
    centerline = estimate_centerline(table, frame_size, params.flow_direction,
                                     background=background.image_at(0))
    summary = summarize_tracks(table, collided, params, frame_size, fps, um_per_px,
                               centerline)
    meta = {"frame_size": list(frame_size), "n_frames": n_frames, "fps": fps,
            "um_per_px": um_per_px, "track": dataclasses.asdict(params),
            "detect": dict(detect_params)}
    write_tracks(table, summary, out_parquet, out_summary_tsv, meta)
    log.info("%s: %d frames, %d detections, %d tracks, %d kept", source, n_frames,
             len(table), len(summary), int((summary["status"] == "kept").sum()))
    return table, summary, meta


def tracks_table(frames: list[np.ndarray], ids: list[np.ndarray], rows: list[np.ndarray]
                 ) -> pd.DataFrame:
    """Assemble per-frame chunks into the tracks table (``TRACK_TABLE_COLUMNS``)."""
    if rows:
        f, i, r = np.concatenate(frames), np.concatenate(ids), np.concatenate(rows)
    else:
        f = np.zeros(0, np.int64)
        i = np.zeros(0, np.int64)
        r = np.zeros((0, len(DETECTION_COLUMNS)))
    table = pd.DataFrame(r[:, : len(DETECTION_COLUMNS)].astype(np.float64),
                         columns=list(DETECTION_COLUMNS))
    table.insert(0, "track_id", i)
    table.insert(0, "frame", f)
    return table


def write_tracks(table: pd.DataFrame, summary: pd.DataFrame, out_parquet: str | Path,
                 out_summary_tsv: str | Path, meta: Mapping[str, object]) -> None:
    """Write the tracks table (parquet, with ``meta`` as JSON metadata) and the summary."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = pa.Table.from_pandas(table[list(TRACK_TABLE_COLUMNS)], preserve_index=False)
    arrow = arrow.replace_schema_metadata(
        {**(arrow.schema.metadata or {}), b"rbcflow": json.dumps(dict(meta)).encode()})
    with atomic_path(out_parquet) as tmp:
        pq.write_table(arrow, tmp)
    with atomic_path(out_summary_tsv) as tmp:
        summary.to_csv(tmp, sep="\t", index=False, float_format="%.10g")


def read_tracks(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """Tracks table and its metadata (frame size, parameters) from a parquet file."""
    import pyarrow.parquet as pq

    arrow = pq.read_table(path)
    meta = json.loads((arrow.schema.metadata or {}).get(b"rbcflow", b"{}"))
    table = arrow.to_pandas()
    missing = [c for c in TRACK_TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise TrackingError(f"{path}: tracks table lacks column(s) {missing}")
    return table, meta
