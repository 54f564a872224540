"""Clip cutting: one clip per kept track (``track`` mode) or per recording (``frame`` mode).

``track`` mode (default) follows seed 001's final method: a square window of ``crop_px``
pixels centred on the tracked cell, resized to ``size_px``, at ``n_frames`` frames spread
evenly over the cell's passage (from the first to the last frame in which the cell is
wholly in view). With ``mask_outside_cell`` everything outside the cell's blob (grown by
``MASK_GROW_PX``) is replaced by the background, so the channel walls, which differ
between chips and sessions, cannot serve as a shortcut (the failure seed 001 reports).
Where the window reaches past the frame edge it is filled with the background too.

``frame`` mode follows seed 000: the whole frame at frames ``frame_start``,
``frame_start + frame_step``, ... < ``frame_stop``, background-subtracted as a bitwise
overlay (the frame's pixels under the foreground mask, 0 elsewhere), resized by
``frame_scale``; one clip per recording (a triggered clip).

Both modes read the recording once, front to back, and stop after the last frame they
need; only the output array (its size is known from the tracks before reading) and the
current frame are held in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from rbcflow.clipstore import CLIP_TABLE_COLUMNS, write_clip_file
from rbcflow.io.atomic import atomic_path
from rbcflow.track import REJECTION_REASONS, read_tracks

log = logging.getLogger(__name__)

#: Pixels by which a cell's blob is grown before masking: the thresholded blob misses
#: the faint outer rim of the cell, which carries its shape.
MASK_GROW_PX = 2
CLIP_MODES = ("track", "frame")
_DEFAULT_CLIP_PARAMS = {
    "mode": "track", "crop_px": 64, "size_px": 64, "n_frames": 16, "mask_outside_cell": True,
    "frame_start": 50, "frame_stop": 141, "frame_step": 10, "frame_scale": 1.0,
    "compression": "none",
}


class ClipError(ValueError):
    """Clip cutting cannot proceed (bad parameters, tracks that disagree with the video)."""


def clip_parameters(clip_params: Mapping[str, object] | None) -> dict:
    """The ``clips:`` config section with defaults filled in and checked."""
    params = {**_DEFAULT_CLIP_PARAMS, **dict(clip_params or {})}
    unknown = sorted(set(params) - set(_DEFAULT_CLIP_PARAMS))
    if unknown:
        raise ClipError(f"unknown clip parameter(s) {unknown}")
    if params["mode"] not in CLIP_MODES:
        raise ClipError(f"clip mode must be one of {CLIP_MODES}, got {params['mode']!r}")
    for key in ("crop_px", "size_px", "n_frames", "frame_step"):
        if int(params[key]) < 1:
            raise ClipError(f"clips.{key} must be >= 1, got {params[key]}")
    if params["frame_stop"] <= params["frame_start"]:
        raise ClipError("clips.frame_stop must be greater than clips.frame_start")
    if not 0 < float(params["frame_scale"]) <= 1:
        raise ClipError("clips.frame_scale must be in (0, 1]")
    return params


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


def plan_track_clips(
    table: pd.DataFrame,
    summary: pd.DataFrame,
    frame_size: tuple[int, int],
    n_frames: int,
    border_margin_px: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Which frames each kept track's clip uses, and where the cell is in each.

    Returns
    -------
    plan : one row per (clip, time step): ``slot`` (row of the clip in the file),
        ``t``, ``frame``, ``x``, ``y`` (interpolated over missed frames).
    clips : one row per clip: ``track_id``, ``first_frame``, ``last_frame`` and the
        summary's velocity and distances.
    """
    from rbcflow.track import inside_mask

    kept = summary[summary["status"] == "kept"].sort_values("entry_frame", kind="stable")
    table = table[table["track_id"].isin(kept["track_id"])]
    table = table[inside_mask(table, frame_size, border_margin_px)]
    # one sort for all tracks (by track, then frame), then each track is a slice
    tid = table["track_id"].to_numpy()
    order = np.lexsort((table["frame"].to_numpy(), tid))
    tid = tid[order]
    frames = table["frame"].to_numpy()[order]
    xs, ys = table["x"].to_numpy()[order], table["y"].to_numpy()[order]
    bounds = np.flatnonzero(tid[1:] != tid[:-1]) + 1
    starts = np.concatenate([[0], bounds]) if tid.size else bounds
    stops = np.concatenate([bounds, [tid.size]]) if tid.size else bounds
    spans = {int(tid[a]): (int(a), int(b)) for a, b in zip(starts, stops, strict=True)}
    plan_parts, clip_rows = [], []
    columns = ("track_id", "velocity_mm_s", "centerline_distance_um", "flight_distance_px")
    for track_id, velocity, distance, flight in zip(
            *(kept[c].to_numpy() for c in columns), strict=True):
        a, b = spans.get(int(track_id), (0, 0))
        if b - a < 2:
            continue
        f = frames[a:b]
        times = sample_times(int(f[0]), int(f[-1]), n_frames)
        slot = len(clip_rows)
        plan_parts.append((np.full(n_frames, slot, np.int64), np.arange(n_frames), times,
                           np.interp(times, f, xs[a:b]), np.interp(times, f, ys[a:b])))
        clip_rows.append({
            "track_id": int(track_id), "first_frame": int(f[0]),
            "last_frame": int(f[-1]), "velocity_mm_s": float(velocity),
            "centerline_distance_um": float(distance),
            "flight_distance_px": float(flight),
        })
    plan = (pd.DataFrame({name: np.concatenate([p[k] for p in plan_parts])
                          for k, name in enumerate(("slot", "t", "frame", "x", "y"))})
            if plan_parts else pd.DataFrame(columns=["slot", "t", "frame", "x", "y"]))
    plan = plan.sort_values(["frame", "slot", "t"], kind="stable").reset_index(drop=True)
    return plan, pd.DataFrame(clip_rows, columns=[
        "track_id", "first_frame", "last_frame", "velocity_mm_s", "centerline_distance_um",
        "flight_distance_px"])


_GROW_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * MASK_GROW_PX + 1,) * 2)


def _grown(mask: np.ndarray) -> np.ndarray:
    return cv2.dilate(mask, _GROW_KERNEL)


def clip_frame(frame: np.ndarray, bg: np.ndarray, blobs, rows, x: float, y: float,
               crop: int, size: int) -> np.ndarray:
    """One time step of a track clip: the window around (x, y), resized to ``size``.

    With ``blobs`` (the frame's blobs and their ``rows``), everything outside the cell's
    blob (the one containing (x, y), else the nearest within half a window, grown by
    ``MASK_GROW_PX``) is replaced by the background ``bg`` (uint8).
    """
    from rbcflow.detect import select_blob

    x, y = float(x), float(y)  # numpy scalars would slow every step below
    if blobs is None:
        return _resize(crop_window(frame, bg, x, y, crop), (size, size))
    # the background's window, with the cell's (grown) blob copied in from the frame
    # (outside the frame the window is background either way)
    window = crop_window(bg, bg, x, y, crop)
    b = select_blob(blobs, rows, x, y)
    if b is not None and np.hypot(rows[b, 0] - x, rows[b, 1] - y) <= crop / 2:
        keep = _grown_window(blobs[b], frame.shape, x, y, crop)
        x0, y0, xa, ya, xb, yb = _window_bounds(frame.shape, x, y, crop)
        if xb - xa == crop and yb - ya == crop:  # wholly inside: one masked copy
            cv2.copyTo(frame[ya:yb, xa:xb], keep, window)
        elif xb > xa and yb > ya:
            inner = (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))
            np.copyto(window[inner], frame[ya:yb, xa:xb], where=keep[inner] > 0)
    return _resize(window, (size, size))


def _grown_window(blob, shape: tuple[int, int], x: float, y: float, crop: int) -> np.ndarray:
    """The blob's mask grown by ``MASK_GROW_PX`` (inside the frame), on the crop window.

    Equals growing the blob on a whole-frame mask and cutting the window out of it, but
    grows the blob's own box (plus the growth margin) only.
    """
    height, width = shape
    g = MASK_GROW_PX
    x0, y0, *_ = _window_bounds(shape, x, y, crop)
    out = np.zeros((crop, crop), np.uint8)
    h, w = blob.mask.shape
    gx0, gy0 = blob.x - g, blob.y - g  # corner of the grown box
    # the grown box's part inside the window and the frame (outside it nothing grows)
    xa, ya = max(x0, gx0, 0), max(y0, gy0, 0)
    xb, yb = min(x0 + crop, blob.x + w + g, width), min(y0 + crop, blob.y + h + g, height)
    if xb <= xa or yb <= ya:
        return out
    grown = _grown(cv2.copyMakeBorder(blob.mask, g, g, g, g, cv2.BORDER_CONSTANT, value=0))
    out[ya - y0 : yb - y0, xa - x0 : xb - x0] = grown[ya - gy0 : yb - gy0, xa - gx0 : xb - gx0]
    return out


def cut_track_clips(
    reader,
    background,
    plan: pd.DataFrame,
    n_clips: int,
    params: Mapping[str, object],
    detect_params,
) -> np.ndarray:
    """Cut the planned crops in one pass over ``reader``; returns (N, T, S, S) uint8."""
    from rbcflow.detect import background_band, band_mask, blobs_from_mask

    crop, size, n_t = int(params["crop_px"]), int(params["size_px"]), int(params["n_frames"])
    mask_cells = bool(params["mask_outside_cell"])
    out = np.zeros((n_clips, n_t, size, size), dtype=np.uint8)
    if plan.empty:
        return out
    frames = plan["frame"].to_numpy()
    slots, ts = plan["slot"].to_numpy(), plan["t"].to_numpy()
    xs, ys = plan["x"].to_numpy(), plan["y"].to_numpy()
    first, last = int(frames[0]), int(frames[-1])
    pos = 0
    seen = set()
    # the masks must be the blobs the tracker saw: same band, same blur of the frame
    sigma = detect_params.blur_sigma or float(background.params.get("blur_sigma", 0.0))
    bands: dict[int, object] = {}
    bg_u8: dict[int, np.ndarray] = {}
    for index, frame in reader.frames(first, last + 1, only=set(frames.tolist())):
        if pos >= len(frames):
            break
        if frames[pos] != index:
            continue
        stop = int(np.searchsorted(frames, index, side="right"))
        k_bg = background.index_at(index)
        if k_bg not in bg_u8:
            bg_u8[k_bg] = np.clip(np.rint(background.images[k_bg]), 0, 255).astype(np.uint8)
        bg = bg_u8[k_bg]
        if mask_cells:
            if k_bg not in bands:
                bands[k_bg] = background_band(background.images[k_bg], detect_params)
            rows, blobs = blobs_from_mask(band_mask(frame, bands[k_bg], sigma), frame,
                                          detect_params, with_masks=True)
        for k in range(pos, stop):
            out[slots[k], ts[k]] = clip_frame(frame, bg, blobs if mask_cells else None,
                                              rows if mask_cells else None, xs[k], ys[k],
                                              crop, size)
            seen.add((int(slots[k]), int(ts[k])))
        pos = stop
    if len(seen) < len(frames):
        missing = sorted({int(frames[k]) for k in range(len(frames))
                          if (int(slots[k]), int(ts[k])) not in seen})
        raise ClipError(f"{reader.path}: frame(s) {missing[:5]} of the tracks could not be read")
    return out


def frame_wanted(params: Mapping[str, object]) -> list[int]:
    """Frames of a ``frame``-mode clip."""
    return list(range(int(params["frame_start"]), int(params["frame_stop"]),
                      int(params["frame_step"])))


def frame_overlay(frame: np.ndarray, background: np.ndarray, scale: float, detect_params
                  ) -> np.ndarray:
    """One frame of a ``frame``-mode clip: the frame under its foreground mask, resized."""
    from rbcflow.detect import foreground_mask

    mask = foreground_mask(frame, background, detect_params)
    overlay = cv2.bitwise_and(frame, frame, mask=mask)
    if scale != 1.0:
        size = (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale)))
        overlay = _resize(overlay, size)
    return overlay


def cut_frame_clip(reader, background, params: Mapping[str, object], detect_params
                   ) -> np.ndarray | None:
    """Seed 000's clip: foreground overlay of whole frames; None if the video is too short."""
    wanted = frame_wanted(params)
    scale = float(params["frame_scale"])
    clip = None
    got = 0
    for index, frame in reader.frames(wanted[0], wanted[-1] + 1, only=set(wanted)):
        if index not in wanted:
            continue
        overlay = frame_overlay(frame, background.image_at(index), scale, detect_params)
        if clip is None:
            clip = np.zeros((len(wanted), *overlay.shape), dtype=np.uint8)
        clip[wanted.index(index)] = overlay
        got += 1
    return clip if got == len(wanted) else None


def _qc_table(summary: pd.DataFrame, extra: Mapping[str, int]) -> pd.DataFrame:
    counts = summary["status"].value_counts() if len(summary) else pd.Series(dtype=int)
    rows = [{"reason": r, "count": int(counts.get(r, 0))} for r in REJECTION_REASONS]
    rows += [{"reason": r, "count": int(c)} for r, c in extra.items()]
    rows.append({"reason": "kept", "count": int(counts.get("kept", 0))})
    return pd.DataFrame(rows, columns=["reason", "count"])


def cut_clips(
    video_path: str | Path,
    background_npz: str | Path,
    tracks_parquet: str | Path,
    tracks_summary_tsv: str | Path,
    out_h5: str | Path,
    out_qc_tsv: str | Path,
    sample_info: Mapping[str, object],
    clip_params: Mapping[str, object],
    detect_params: Mapping[str, object],
    source_sha256: str | None = None,
) -> int:
    """Cut the clips of one recording into its HDF5 clip file; returns the clip count.

    Parameters
    ----------
    video_path, background_npz, tracks_parquet, tracks_summary_tsv : inputs (the
        recording, its background, its tracks table and track summary).
    out_h5 : clip file (``rbcflow.clipstore`` layout), written atomically.
    out_qc_tsv : tracks per rejection reason (``reason``, ``count``); ``kept`` counts
        the tracks that became clips.
    sample_info : the sample-sheet row (``sample``, ``donor``, ``condition``, ``focus``,
        ``session``, ...).
    clip_params : the ``clips:`` config section.
    detect_params : the ``detect:`` config section (the cell masks).
    source_sha256 : SHA-256 of the recording if already known (else computed).

    Notes
    -----
    In ``frame`` mode the clip's ``track_id`` is the one kept track seen in the frame
    window, or -1 when there are none or several (then velocity and distances are the
    mean over the kept tracks in the window, NaN when none).
    """
    from rbcflow.background import load_background
    from rbcflow.detect import DetectParams
    from rbcflow.io.video import open_video

    params = clip_parameters(clip_params)
    detect = DetectParams(**dict(detect_params))
    table, meta = read_tracks(tracks_parquet)
    summary = pd.read_csv(tracks_summary_tsv, sep="\t")
    background = load_background(background_npz)
    extra: dict[str, int] = {}
    with open_video(video_path) as reader:
        frame_size = tuple(meta.get("frame_size") or (reader.width, reader.height))
        if tuple(frame_size) != (reader.width, reader.height):
            raise ClipError(f"{tracks_parquet}: tracks were made on {frame_size[0]}x"
                            f"{frame_size[1]} frames, {video_path} is "
                            f"{reader.width}x{reader.height}")
        if params["mode"] == "track":
            margin = int(meta.get("track", {}).get("border_margin_px", 2))
            plan, clip_rows = plan_track_clips(table, summary, frame_size,
                                               int(params["n_frames"]), margin)
            clips = cut_track_clips(reader, background, plan, len(clip_rows), params, detect)
        else:
            clip = cut_frame_clip(reader, background, params, detect)
            clips, clip_rows = frame_mode_output(clip, summary, params, extra,
                                                 (reader.width, reader.height))
    return write_clip_outputs(out_h5, out_qc_tsv, clips, clip_rows, summary, extra, sample_info,
                              params, detect_params, meta.get("track", {}), video_path,
                              source_sha256)


def frame_mode_output(clip: np.ndarray | None, summary: pd.DataFrame,
                      params: Mapping[str, object], extra: dict[str, int],
                      frame_size: tuple[int, int]) -> tuple[np.ndarray, pd.DataFrame]:
    """The clips array and clip rows of ``frame`` mode (none when the video is too short)."""
    clip_rows = _frame_clip_row(summary, params)
    if clip is not None:
        return clip[None], clip_rows
    extra["video_too_short"] = 1
    scale = float(params["frame_scale"])
    n_t = len(frame_wanted(params))
    clips = np.zeros((0, n_t, max(1, round(frame_size[1] * scale)),
                      max(1, round(frame_size[0] * scale))), dtype=np.uint8)
    return clips, clip_rows.iloc[:0]


def write_clip_outputs(
    out_h5: str | Path,
    out_qc_tsv: str | Path,
    clips: np.ndarray,
    clip_rows: pd.DataFrame,
    summary: pd.DataFrame,
    extra: Mapping[str, int],
    sample_info: Mapping[str, object],
    params: Mapping[str, object],
    detect_params: Mapping[str, object],
    track_params: Mapping[str, object],
    video_path: str | Path,
    source_sha256: str | None,
) -> int:
    """Write the clip file and the QC table of one recording; returns the clip count."""
    from rbcflow.ingest import sha256_recording

    sample = str(sample_info["sample"])
    table_out = _clip_table(clip_rows, sample_info, sample)
    attrs = {
        "source_sha256": source_sha256 or sha256_recording(video_path),
        "source_path": str(video_path),
        "sample": sample,
        "params": {"clips": dict(params), "detect": dict(detect_params),
                   "track": dict(track_params)},
    }
    write_clip_file(out_h5, clips, table_out, attrs=attrs, compression=str(params["compression"]),
                    clip_shape=tuple(clips.shape[1:]))
    qc = _qc_table(summary, extra)
    with atomic_path(out_qc_tsv) as tmp:
        qc.to_csv(tmp, sep="\t", index=False)
    log.info("%s: %d clips (%s)", sample, len(table_out),
             ", ".join(f"{r} {c}" for r, c in zip(qc["reason"], qc["count"], strict=True)))
    return len(table_out)


def _frame_clip_row(summary: pd.DataFrame, params: Mapping[str, object]) -> pd.DataFrame:
    start, stop = int(params["frame_start"]), int(params["frame_stop"]) - 1
    kept = summary[(summary["status"] == "kept") & (summary["entry_frame"] <= stop)
                   & (summary["exit_frame"] >= start)]
    row = {
        "track_id": int(kept["track_id"].iloc[0]) if len(kept) == 1 else -1,
        "first_frame": start, "last_frame": stop,
        "velocity_mm_s": float(kept["velocity_mm_s"].mean()) if len(kept) else float("nan"),
        "centerline_distance_um": (float(kept["centerline_distance_um"].mean())
                                   if len(kept) else float("nan")),
        "flight_distance_px": (float(kept["flight_distance_px"].mean())
                               if len(kept) else float("nan")),
    }
    return pd.DataFrame([row])


def _clip_table(rows: pd.DataFrame, info: Mapping[str, object], sample: str) -> pd.DataFrame:
    table = pd.DataFrame({
        "clip_id": [f"{sample}/{int(t)}" for t in rows["track_id"]],
        "sample": sample,
        "donor": str(info.get("donor", "")),
        "condition": str(info.get("condition", "")),
        "focus": str(info.get("focus", "")),
        "session": str(info.get("session", "")),
        "track_id": rows["track_id"].to_numpy(dtype=np.int64),
        "first_frame": rows["first_frame"].to_numpy(dtype=np.int64),
        "last_frame": rows["last_frame"].to_numpy(dtype=np.int64),
        "velocity_mm_s": rows["velocity_mm_s"].to_numpy(dtype=np.float64),
        "centerline_distance_um": rows["centerline_distance_um"].to_numpy(dtype=np.float64),
        "flight_distance_px": rows["flight_distance_px"].to_numpy(dtype=np.float64),
    })
    return table[list(CLIP_TABLE_COLUMNS)]
