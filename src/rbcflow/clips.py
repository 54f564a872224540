"""Clip cutting: one clip per kept track (``track`` mode) or per recording (``frame`` mode).

``track`` mode (default) follows seed 001's final method: a square window of ``crop_px``
pixels centred on the tracked cell, resized to ``size_px``, at ``n_frames`` frames spread
evenly over the cell's passage (from the first to the last frame in which the cell is
wholly in view). With ``mask_outside_cell`` everything outside the cell's blob (grown by
``mask_grow_px``) is replaced by the background, so the channel walls, which differ
between chips and sessions, cannot serve as a shortcut (the failure seed 001 reports).
Where the window reaches past the frame edge it is filled with the background too.

``frame`` mode follows seed 000: the whole frame at frames ``frame_start``,
``frame_start + frame_step``, ... < ``frame_stop``, background-subtracted as a bitwise
overlay (the frame's pixels under the foreground mask, 0 elsewhere), resized by
``frame_scale``; one clip per recording (a triggered clip).

Clips are cut either while the recording streams (:class:`TrackClipCollector`, used by the
chain's single pass: the frames a live track may still need are buffered) or in a second
pass over the recording from its tracks (:func:`cut_clips`, the ``rbcflow clips`` stage).
Both cut every clip frame with :func:`clip_frame`, so they write the same file. Tables
here are ``rbcflow.columns.Columns`` (the single pass does not import pandas); those read
from files (DataFrames) are taken as well.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from pathlib import Path

import cv2
import numpy as np

from rbcflow.clipstore import CLIP_TABLE_COLUMNS, write_clip_file
from rbcflow.columns import Columns, write_tsv
from rbcflow.detect import Blobs, select_blob
from rbcflow.io.atomic import atomic_path
from rbcflow.params import ChainParams, ClipParams
from rbcflow.track.judge import KEPT, REJECTION_REASONS, FieldOfView, TrackJudge

log = logging.getLogger(__name__)

#: Columns of the rows that describe a recording's clips before the sample's own columns
#: are added (``rbcflow.clipstore.CLIP_TABLE_COLUMNS``).
CLIP_ROW_COLUMNS = ["track_id", "first_frame", "last_frame", "velocity_mm_s",
                    "centerline_distance_um", "flight_distance_px"]
_FRAME_COLUMNS = ("track_id", "first_frame", "last_frame")
#: Frames the single pass keeps for clips of live tracks (about 120 kB each at 800 x 150);
#: a kept track that needed an older frame is cut by a second pass over the recording.
MAX_BUFFER_FRAMES = 2000


class ClipError(ValueError):
    """Clip cutting cannot proceed (bad parameters, tracks that disagree with the video)."""


def sample_times(first: int, last: int, n: int) -> np.ndarray:
    """``n`` frame indices spread evenly from ``first`` to ``last`` (repeats if too few)."""
    return np.round(np.linspace(first, last, n)).astype(np.int64)


def crop_window(image: np.ndarray, fill: np.ndarray, x: float, y: float, size: int
                ) -> np.ndarray:
    """Square ``size`` window of ``image`` centred on (x, y); outside the image: ``fill``.

    ``fill`` is an image of the same shape (the background), so a window at the edge
    continues the background instead of turning black.
    """
    height, width = image.shape
    x0, y0, xa, ya, xb, yb = _window_bounds(image.shape, x, y, size)
    if xa == x0 and ya == y0 and xb == x0 + size and yb == y0 + size:
        return image[y0 : y0 + size, x0 : x0 + size].copy()
    # pad by edge replication of the background where the window leaves the frame
    if xb > xa and yb > ya and fill.dtype == np.uint8:
        out = cv2.copyMakeBorder(fill[ya:yb, xa:xb], ya - y0, y0 + size - yb, xa - x0,
                                 x0 + size - xb, cv2.BORDER_REPLICATE | cv2.BORDER_ISOLATED)
    else:
        out = np.empty((size, size), dtype=image.dtype)
        ys = np.clip(np.arange(y0, y0 + size), 0, height - 1)
        xs = np.clip(np.arange(x0, x0 + size), 0, width - 1)
        out[:] = fill[np.ix_(ys, xs)]
    if xb > xa and yb > ya and image is not fill:
        out[ya - y0 : yb - y0, xa - x0 : xb - x0] = image[ya:yb, xa:xb]
    return out


def _window_bounds(shape: tuple[int, ...], x: float, y: float, size: int
                   ) -> tuple[int, int, int, int, int, int]:
    """Window corner (x0, y0) and its part inside the frame, [xa, xb) x [ya, yb)."""
    height, width = shape[:2]
    x0 = int(round(x)) - size // 2
    y0 = int(round(y)) - size // 2
    return x0, y0, max(x0, 0), max(y0, 0), min(x0 + size, width), min(y0 + size, height)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (width, height); area averaging when shrinking (no aliasing)."""
    if image.shape[1] == size[0] and image.shape[0] == size[1]:
        return image
    shrink = size[0] < image.shape[1]
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def clip_frame(frame: np.ndarray, bg: np.ndarray, blobs: Blobs | None, x: float, y: float,
               crop: int, size: int, grow_px: int) -> np.ndarray:
    """One time step of a track clip: the window around (x, y), resized to ``size``.

    With ``blobs`` (the frame's blobs), everything outside the cell's blob (the one
    containing (x, y), else the nearest within half a window, grown by ``grow_px``) is
    replaced by the background ``bg`` (uint8).
    """
    x, y = float(x), float(y)  # numpy scalars would slow every step below
    if blobs is None:
        return _resize(crop_window(frame, bg, x, y, crop), (size, size))
    # the background's window, with the cell's (grown) blob copied in from the frame
    # (outside the frame the window is background either way)
    window = crop_window(bg, bg, x, y, crop)
    b = select_blob(blobs, x, y)
    if b is not None and np.hypot(blobs.detections["x"][b] - x,
                                  blobs.detections["y"][b] - y) <= crop / 2:
        keep = _grown_window(blobs.masks[b], frame.shape, x, y, crop, grow_px)
        x0, y0, xa, ya, xb, yb = _window_bounds(frame.shape, x, y, crop)
        if xb - xa == crop and yb - ya == crop:  # wholly inside: one masked copy
            cv2.copyTo(frame[ya:yb, xa:xb], keep, window)
        elif xb > xa and yb > ya:
            inner = (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))
            np.copyto(window[inner], frame[ya:yb, xa:xb], where=keep[inner] > 0)
    return _resize(window, (size, size))


@functools.lru_cache(maxsize=4)
def _grow_kernel(g: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * g + 1,) * 2)


def _grown_window(blob, shape: tuple[int, int], x: float, y: float, crop: int, g: int
                  ) -> np.ndarray:
    """The blob's mask grown by ``g`` pixels (inside the frame), on the crop window.

    Equals growing the blob on a whole-frame mask and cutting the window out of it, but
    grows the blob's own box (plus the growth margin) only.
    """
    height, width = shape
    x0, y0, *_ = _window_bounds(shape, x, y, crop)
    out = np.zeros((crop, crop), np.uint8)
    h, w = blob.mask.shape
    gx0, gy0 = blob.x - g, blob.y - g  # corner of the grown box
    # the grown box's part inside the window and the frame (outside it nothing grows)
    xa, ya = max(x0, gx0, 0), max(y0, gy0, 0)
    xb, yb = min(x0 + crop, blob.x + w + g, width), min(y0 + crop, blob.y + h + g, height)
    if xb <= xa or yb <= ya:
        return out
    grown = cv2.dilate(cv2.copyMakeBorder(blob.mask, g, g, g, g, cv2.BORDER_CONSTANT, value=0),
                       _grow_kernel(g))
    out[ya - y0 : yb - y0, xa - x0 : xb - x0] = grown[ya - gy0 : yb - gy0, xa - gx0 : xb - gx0]
    return out


def _passage_clip(frames_at, positions, params: ClipParams) -> tuple[np.ndarray, int, int]:
    """A track clip from the frames in which the cell is wholly in view.

    ``positions`` is ``(frames, xs, ys)`` of those detections; ``frames_at(t)`` gives
    ``(frame, background, blobs or None)`` of frame ``t``. Returns the clip, its first and
    last frame.
    """
    f, xs, ys = positions
    times = sample_times(int(f[0]), int(f[-1]), params.n_frames)
    cx, cy = np.interp(times, f, xs), np.interp(times, f, ys)
    clip = np.empty((params.n_frames, params.size_px, params.size_px), np.uint8)
    for t in range(params.n_frames):
        frame, bg, blobs = frames_at(int(times[t]))
        clip[t] = clip_frame(frame, bg, blobs if params.mask_outside_cell else None, cx[t],
                             cy[t], params.crop_px, params.size_px, params.mask_grow_px)
    return clip, int(f[0]), int(f[-1])


class _Passage:
    """Where a live track's cell was wholly in view: frames and centroids."""

    __slots__ = ("frames", "xs", "ys")

    def __init__(self) -> None:
        self.frames: list[int] = []
        self.xs: list[float] = []
        self.ys: list[float] = []


class TrackClipCollector:
    """Cuts track clips while the recording streams (the chain's single pass).

    The frames a live track that may still be kept will need (from its first frame wholly
    in view on) are buffered with their blobs; when the track ends and the judge keeps it,
    its clip is cut from the buffer. A kept track whose first needed frame has already left
    the buffer (one longer than ``max_buffer`` frames) is listed in :attr:`second_pass`.
    """

    def __init__(self, params: ClipParams, judge: TrackJudge,
                 max_buffer: int | None = None) -> None:
        self.params = params
        self.judge = judge
        self.max_buffer = MAX_BUFFER_FRAMES if max_buffer is None else max_buffer
        self.clips: dict[int, tuple[np.ndarray, int, int]] = {}
        self.second_pass: set[int] = set()
        self._live: dict[int, _Passage] = {}
        self._buffer: deque = deque()  # (index, frame, background u8, blobs), oldest first

    def end_tracks(self, track_ids: Iterable[int]) -> None:
        """Cut the clips of the given tracks that the judge keeps."""
        for tid in list(track_ids):
            passage = self._live.pop(tid, None)
            if passage is None or self.judge.status(tid) != KEPT:
                continue
            start = self._buffer[0][0] if self._buffer else None
            times = sample_times(passage.frames[0], passage.frames[-1], self.params.n_frames)
            if start is None or int(times[0]) < start:
                self.second_pass.add(tid)
                continue

            def frames_at(index: int, start: int = start) -> tuple:
                return self._buffer[index - start][1:]

            positions = (np.asarray(passage.frames), np.asarray(passage.xs),
                         np.asarray(passage.ys))
            self.clips[tid] = _passage_clip(frames_at, positions, self.params)

    def add_frame(self, index: int, frame: np.ndarray, background_u8: np.ndarray,
                  detections: np.ndarray, ids: np.ndarray, inside: list[bool],
                  clip_blobs: Blobs) -> None:
        """Record one frame's linked detections and buffer the frame if a track needs it.

        ``detections`` are the tracker's (aligned with ``ids`` and ``inside``);
        ``clip_blobs`` the blobs the clip masks are cut from (the same under the band
        rule, the band rule's under MOG2).
        """
        if len(ids):
            xs, ys = detections["x"].tolist(), detections["y"].tolist()
            for tid, is_inside, x, y in zip(ids.tolist(), inside, xs, ys, strict=True):
                if tid < 0:
                    continue
                passage = self._live.get(tid)
                if passage is None:
                    passage = self._live[tid] = _Passage()
                if is_inside:
                    passage.frames.append(index)
                    passage.xs.append(x)
                    passage.ys.append(y)
        need = index + 1
        for tid, passage in self._live.items():
            if passage.frames and self.judge.may_be_kept(tid):
                need = min(need, passage.frames[0])
        if need > index:
            self._buffer.clear()
            return
        self._buffer.append((index, frame, background_u8,
                             clip_blobs if self.params.mask_outside_cell else None))
        while self._buffer and (self._buffer[0][0] < need
                                or len(self._buffer) > self.max_buffer):
            self._buffer.popleft()

    def finish(self) -> None:
        """End every track still alive (the recording is over)."""
        self.end_tracks(list(self._live))
        self._buffer.clear()


def _kept_in_entry_order(summary) -> np.ndarray:
    """Rows of the summary's kept tracks, in order of entry frame (ties: summary order)."""
    kept = np.flatnonzero(np.asarray(summary["status"], dtype=object) == KEPT)
    return kept[np.argsort(np.asarray(summary["entry_frame"])[kept], kind="stable")]


def plan_track_clips(
    table,
    summary,
    view: FieldOfView,
    n_frames: int,
    track_ids: Iterable[int] | None = None,
) -> tuple[Columns, Columns]:
    """Which frames each kept track's clip uses, and where the cell is in each.

    Parameters
    ----------
    table, summary : the recording's tracks table and per-track summary
        (``rbcflow.columns.Columns`` or DataFrames).
    view : the field of view (only detections wholly in view place a clip frame).
    n_frames : frames per clip.
    track_ids : plan only these kept tracks (default: all kept tracks).

    Returns
    -------
    plan : one row per (clip, time step): ``slot`` (row of the clip in the output),
        ``t``, ``frame``, ``x``, ``y`` (interpolated over missed frames), sorted by frame.
    clips : one row per clip (``CLIP_ROW_COLUMNS``), in order of entry frame.
    """
    summary_ids = np.asarray(summary["track_id"])
    kept = _kept_in_entry_order(summary)
    if track_ids is not None:
        kept = kept[np.isin(summary_ids[kept], list(track_ids))]
    tid = np.asarray(table["track_id"])
    used = np.isin(tid, summary_ids[kept]) & view.inside_mask(table)
    tid, frames = tid[used], np.asarray(table["frame"])[used]
    xs, ys = np.asarray(table["x"])[used], np.asarray(table["y"])[used]
    # one sort for all tracks (by track, then frame), then each track is a slice
    order = np.lexsort((frames, tid))
    tid, frames, xs, ys = tid[order], frames[order], xs[order], ys[order]
    bounds = np.flatnonzero(tid[1:] != tid[:-1]) + 1
    starts = np.concatenate([[0], bounds]) if tid.size else bounds
    stops = np.concatenate([bounds, [tid.size]]) if tid.size else bounds
    spans = {int(tid[a]): (int(a), int(b)) for a, b in zip(starts, stops, strict=True)}
    plan_parts, rows = [], []
    for k in kept.tolist():
        a, b = spans.get(int(summary_ids[k]), (0, 0))
        if b - a < 2:
            continue
        f = frames[a:b]
        times = sample_times(int(f[0]), int(f[-1]), n_frames)
        plan_parts.append((np.full(n_frames, len(rows), np.int64), np.arange(n_frames), times,
                           np.interp(times, f, xs[a:b]), np.interp(times, f, ys[a:b])))
        rows.append(clip_row(summary, k, int(f[0]), int(f[-1])))
    names = ("slot", "t", "frame", "x", "y")
    if plan_parts:
        values = [np.concatenate([part[j] for part in plan_parts]) for j in range(len(names))]
    else:
        values = [np.zeros(0, np.int64)] * 3 + [np.zeros(0, np.float64)] * 2
    plan = Columns(dict(zip(names, values, strict=True)))
    plan = plan.take(np.lexsort((plan["t"], plan["slot"], plan["frame"])))
    return plan, clip_rows_table(rows)


def clip_row(summary, row: int, first_frame: int, last_frame: int) -> dict:
    """The clip-table row of the kept track in row ``row`` of the summary, cut from these
    frames."""
    figures = {c: float(np.asarray(summary[c])[row])
               for c in ("velocity_mm_s", "centerline_distance_um", "flight_distance_px")}
    return {"track_id": int(np.asarray(summary["track_id"])[row]),
            "first_frame": first_frame, "last_frame": last_frame, **figures}


def clip_rows_table(rows: list[dict]) -> Columns:
    """The table of clip rows (``CLIP_ROW_COLUMNS``; :func:`clip_row`)."""
    return Columns({c: np.array([row[c] for row in rows],
                                dtype=np.int64 if c in _FRAME_COLUMNS else np.float64)
                    for c in CLIP_ROW_COLUMNS})


def cut_track_clips(reader, background, segmenter, plan: Columns, n_clips: int,
                    params: ClipParams) -> np.ndarray:
    """Cut planned clips in one pass over ``reader``; returns (N, T, S, S) uint8.

    ``segmenter`` gives the blobs of the clip masks (``rbcflow.segment.BandSegmenter``).
    """
    size, n_t = params.size_px, params.n_frames
    out = np.zeros((n_clips, n_t, size, size), dtype=np.uint8)
    if not len(plan):
        return out
    frames, slots, ts, xs, ys = (plan[name] for name in ("frame", "slot", "t", "x", "y"))
    pos, cut = 0, 0
    background_u8: dict[int, np.ndarray] = {}
    for index, frame in reader.frames(int(frames[0]), int(frames[-1]) + 1,
                                      only=set(frames.tolist())):
        if pos >= len(frames):
            break
        if frames[pos] != index:
            continue
        stop = int(np.searchsorted(frames, index, side="right"))
        k = background.index_at(index)
        if k not in background_u8:
            background_u8[k] = background.image_u8(k)
        blobs = segmenter.blobs(frame, index) if params.mask_outside_cell else None
        for j in range(pos, stop):
            out[slots[j], ts[j]] = clip_frame(frame, background_u8[k], blobs, xs[j], ys[j],
                                              params.crop_px, size, params.mask_grow_px)
        cut += stop - pos
        pos = stop
    if cut < len(frames):
        missing = sorted({int(f) for f in frames[pos:]})
        raise ClipError(f"{reader.path}: frame(s) {missing[:5]} of the tracks could not be read")
    return out


def frame_overlay(frame: np.ndarray, blobs: Blobs, scale: float) -> np.ndarray:
    """One frame of a ``frame``-mode clip: the frame under its cells' masks, resized."""
    overlay = cv2.bitwise_and(frame, frame, mask=blobs.mask_image(frame.shape))
    if scale != 1.0:
        size = (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale)))
        overlay = _resize(overlay, size)
    return overlay


class FrameClipCollector:
    """Collects the overlays of a ``frame``-mode clip while the recording streams."""

    def __init__(self, params: ClipParams) -> None:
        self.params = params
        self.wanted = params.frame_numbers
        self._wanted = set(self.wanted)
        self.overlays: dict[int, np.ndarray] = {}

    def add_frame(self, index: int, frame: np.ndarray, blobs: Blobs) -> None:
        if index in self._wanted:
            self.overlays[index] = frame_overlay(frame, blobs, self.params.frame_scale)

    def clip(self) -> np.ndarray | None:
        """(T, H, W) uint8, or None when the recording ended before the last wanted frame."""
        if len(self.overlays) < len(self.wanted):
            return None
        return np.stack([self.overlays[i] for i in self.wanted])


def frame_mode_output(clip: np.ndarray | None, summary, params: ClipParams,
                      extra: dict[str, int], frame_size: tuple[int, int]
                      ) -> tuple[np.ndarray, Columns]:
    """The clips array and clip rows of ``frame`` mode (none when the video is too short).

    The clip's ``track_id`` is the one kept track seen in the frame window, or -1 when
    there are none or several (then velocity and distances are the mean over the kept
    tracks in the window, NaN when none).
    """
    start, stop = params.frame_start, params.frame_stop - 1
    kept = ((np.asarray(summary["status"], dtype=object) == KEPT)
            & (np.asarray(summary["entry_frame"]) <= stop)
            & (np.asarray(summary["exit_frame"]) >= start))
    row = {"track_id": int(np.asarray(summary["track_id"])[kept][0]) if kept.sum() == 1
           else -1, "first_frame": start, "last_frame": stop}
    for column in ("velocity_mm_s", "centerline_distance_um", "flight_distance_px"):
        # np.mean: the sum and division pandas' Series.mean does
        row[column] = (float(np.mean(np.asarray(summary[column], dtype=np.float64)[kept]))
                       if kept.any() else float("nan"))
    if clip is not None:
        return clip[None], clip_rows_table([row])
    extra["video_too_short"] = 1
    scale = params.frame_scale
    clips = np.zeros((0, len(params.frame_numbers), max(1, round(frame_size[1] * scale)),
                      max(1, round(frame_size[0] * scale))), dtype=np.uint8)
    return clips, clip_rows_table([])


def track_mode_output(summary, clips: Mapping[int, tuple[np.ndarray, int, int]],
                      params: ClipParams) -> tuple[np.ndarray, Columns]:
    """The clips array and clip rows of ``track`` mode, in order of entry frame."""
    arrays, rows = [], []
    track_ids = np.asarray(summary["track_id"])
    for k in _kept_in_entry_order(summary).tolist():
        tid = int(track_ids[k])
        if tid in clips:
            clip, first, last = clips[tid]
            arrays.append(clip)
            rows.append(clip_row(summary, k, first, last))
    out = (np.stack(arrays) if arrays else
           np.zeros((0, params.n_frames, params.size_px, params.size_px), dtype=np.uint8))
    return out, clip_rows_table(rows)


def qc_table(summary, extra: Mapping[str, int]) -> Columns:
    """Tracks per rejection reason, extra reasons, and ``kept`` (the tracks clipped)."""
    counts = Counter(np.asarray(summary["status"], dtype=object).tolist())
    rows = [(r, counts[r]) for r in REJECTION_REASONS]
    rows += [(r, int(c)) for r, c in extra.items()]
    rows.append((KEPT, counts[KEPT]))
    return Columns({"reason": np.array([r for r, _ in rows], dtype=object),
                    "count": np.array([c for _, c in rows], dtype=np.int64)})


def write_clip_outputs(out_h5: str | Path, out_qc_tsv: str | Path, clips: np.ndarray,
                       clip_rows: Columns, qc: Columns,
                       sample_info: Mapping[str, object], params: ChainParams,
                       source_sha256: str) -> int:
    """Write the clip file and the QC table of one recording; returns the clip count."""
    sample = str(sample_info["sample"])
    table = _clip_table(clip_rows, sample_info, sample)
    attrs = {"source_sha256": source_sha256, "sample": sample, "params": params.as_dict(),
             "pipeline_id": params.pipeline_id}
    write_clip_file(out_h5, clips, table, attrs=attrs, compression=params.clips.compression,
                    clip_shape=tuple(clips.shape[1:]))
    with atomic_path(out_qc_tsv) as tmp:
        write_tsv(qc, tmp)
    log.info("%s: %d clips (%s)", sample, len(table),
             ", ".join(f"{r} {c}" for r, c in zip(qc["reason"], qc["count"], strict=True)))
    return len(table)


def _clip_table(rows: Columns, info: Mapping[str, object], sample: str) -> Columns:
    """The clip file's table (``CLIP_TABLE_COLUMNS``): the clip rows and the sample's own
    columns."""
    n = len(rows)
    own = {"clip_id": [f"{sample}/{int(t)}" for t in rows["track_id"]], "sample": [sample] * n,
           **{key: [str(info.get(key, ""))] * n
              for key in ("donor", "condition", "focus", "session")}}
    return Columns({c: np.array(own[c], dtype=object) if c in own else rows[c]
                    for c in CLIP_TABLE_COLUMNS})


def cut_clips(
    video_path: str | Path,
    background_npz: str | Path,
    tracks_parquet: str | Path,
    tracks_summary_tsv: str | Path,
    out_h5: str | Path,
    out_qc_tsv: str | Path,
    sample_info: Mapping[str, object],
    params: ChainParams,
    source_sha256: str,
    out_qc_record: str | Path | None = None,
) -> int:
    """Cut one recording's clips from its tracks in a second pass (``rbcflow clips``).

    Writes the same clip file and QC table as the chain's single pass, and with
    ``out_qc_record`` its QC record (``rbcflow.qc``). The tracks must have been made with
    the same detection and tracking parameters (checked: the masks of the clips are the
    tracker's blobs). Returns the clip count.
    """
    from rbcflow.background import load_background
    from rbcflow.io.video import open_video
    from rbcflow.segment import BandSegmenter, make_segmenter
    from rbcflow.track import read_summary, read_tracks

    table, meta = read_tracks(tracks_parquet)
    background = load_background(background_npz)
    params = params.calibrated(background)
    differences = params.matches(meta.get("params") or {}, sections=("detect", "track"))
    if differences:
        raise ClipError(f"{tracks_parquet}: made with other parameters than the clips "
                        f"would be cut with: {'; '.join(differences)}")
    summary = read_summary(tracks_summary_tsv)
    extra: dict[str, int] = {}
    with open_video(video_path) as reader:
        frame_size = (reader.width, reader.height)
        if tuple(meta.get("frame_size") or frame_size) != frame_size:
            raise ClipError(f"{tracks_parquet}: tracks were made on {meta['frame_size'][0]}x"
                            f"{meta['frame_size'][1]} frames, {video_path} is "
                            f"{frame_size[0]}x{frame_size[1]}")
        if params.clips.mode == "track":
            view = FieldOfView(frame_size, params.track.border_margin_px, params.track.flow_axis)
            plan, rows = plan_track_clips(table, summary, view, params.clips.n_frames)
            clips = cut_track_clips(reader, background, BandSegmenter(background, params.detect),
                                    plan, len(rows), params.clips)
        else:
            clip = cut_frame_clip(reader, make_segmenter(background, params.detect), params.clips)
            clips, rows = frame_mode_output(clip, summary, params.clips, extra, frame_size)
    n_clips = write_clip_outputs(out_h5, out_qc_tsv, clips, rows, qc_table(summary, extra),
                                 sample_info, params, source_sha256)
    if out_qc_record is not None:
        from rbcflow.qc import assess_recording, recording_record, write_record

        record = recording_record(str(sample_info["sample"]), int(meta["n_frames"]),
                                  len(table), summary, n_clips, params.pipeline_id)
        write_record(assess_recording(record, table, summary, background, params, video_path,
                                      limits=params.qc), out_qc_record)
    return n_clips


def cut_frame_clip(reader, segmenter, params: ClipParams) -> np.ndarray | None:
    """Seed 000's clip from a second pass; None if the recording is too short.

    A sequential segmenter (MOG2) sees every frame up to the last wanted one, as in the
    single pass; a band segmenter only the wanted frames.
    """
    collector = FrameClipCollector(params)
    wanted = set(collector.wanted)
    only = None if segmenter.sequential else wanted
    for index, frame in reader.frames(0, max(wanted) + 1, only=only):
        if segmenter.sequential or index in wanted:
            collector.add_frame(index, frame, segmenter.blobs(frame, index))
    return collector.clip()
