"""The whole per-recording chain for one video: ingest, background, tracks, clips.

:func:`preprocess_video` writes the same files, with the same content, as the Snakemake
rules ``ingest_video``, ``model_background``, ``track_cells`` and ``cut_clips`` under
``outdir`` (``ingest/``, ``background/``, ``tracks/``, ``clips/``), so one recording can
be processed now without a sample sheet or a workflow. Tracking and clip cutting run as
one pass over the video (:func:`track_and_cut`), which halves the decoding; the rules
keep them apart so that clips can be recut without tracking again.
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from rbcflow.config import validate_config

log = logging.getLogger(__name__)

_SAMPLE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_INFO_DEFAULTS = {"donor": "unknown", "condition": "unknown", "focus": "in",
                  "session": "unknown"}


def sample_name(video_path: str | Path) -> str:
    """A valid sample name from a file name (characters outside [A-Za-z0-9_-] become _)."""
    stem = Path(video_path).name.split(".")[0]
    name = re.sub(r"[^A-Za-z0-9_-]", "_", stem).lstrip("_-")[:64]
    return name or "sample"


def output_paths(outdir: str | Path, sample: str) -> dict[str, Path]:
    """Where each stage writes, laid out as the workflow's ``results/`` folder."""
    out = Path(outdir)
    return {
        "ingest_json": out / "ingest" / f"{sample}.json",
        "contact_sheet": out / "ingest" / f"{sample}.png",
        "background": out / "background" / f"{sample}.npz",
        "background_qc": out / "background" / f"{sample}_qc.png",
        "tracks": out / "tracks" / f"{sample}.parquet",
        "tracks_summary": out / "tracks" / f"{sample}_tracks.tsv",
        "clips": out / "clips" / f"{sample}.h5",
        "clips_qc": out / "clips" / f"{sample}_qc.tsv",
    }


def preprocess_video(
    video_path: str | Path,
    outdir: str | Path,
    config: Mapping[str, object] | None,
    sample_info: Mapping[str, object],
) -> dict[str, Path]:
    """Run ingest -> background -> track -> clips on one recording.

    Parameters
    ----------
    video_path : the recording (any format ``rbcflow.io.video.open_video`` reads).
    outdir : results folder; files go to ``ingest/``, ``background/``, ``tracks/`` and
        ``clips/`` below it, named after the sample.
    config : workflow configuration (validated here; missing keys take their defaults).
    sample_info : the recording's sample-sheet row: ``fps`` and ``um_per_px`` are
        required; ``sample`` defaults to the file name, ``donor``, ``condition``,
        ``session`` to ``unknown`` and ``focus`` to ``in``.

    Returns
    -------
    The path of every file written, by role (see :func:`output_paths`).
    """
    from rbcflow.background import build_background, save_background, write_background_qc
    from rbcflow.clips import cut_clips
    from rbcflow.detect import DetectParams
    from rbcflow.ingest import ingest_video
    from rbcflow.track import track_video

    cfg = validate_config(dict(config or {}), source="preprocess config")
    info = {**_INFO_DEFAULTS, **{k: v for k, v in dict(sample_info).items() if v is not None}}
    info.setdefault("sample", sample_name(video_path))
    missing = [k for k in ("fps", "um_per_px") if k not in info]
    if missing:
        raise ValueError(f"{video_path}: sample information lacks {missing}")
    sample = str(info["sample"])
    if not _SAMPLE_PATTERN.match(sample):
        raise ValueError(f"sample name {sample!r} must match {_SAMPLE_PATTERN.pattern}")
    paths = output_paths(outdir, sample)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    meta = ingest_video(
        video_path, sample=sample, fps_sheet=float(info["fps"]),
        out_json=paths["ingest_json"], out_png=paths["contact_sheet"],
        allow_truncated=cfg["ingest"]["allow_truncated"],
        fps_tolerance=cfg["ingest"]["fps_tolerance"],
    )
    timings["ingest"] = time.perf_counter() - start

    start = time.perf_counter()
    settings = cfg["background"]
    model = build_background(
        video_path, method=settings["method"], n_frames=settings["n_frames"],
        blur_sigma=settings["blur_sigma"], mog2_history=settings["mog2_history"],
        mog2_var_threshold=settings["mog2_var_threshold"],
        rolling_window=settings["rolling_window"], seed=cfg["seed"],
        n_frames_readable=meta["n_frames"],
    )
    save_background(model, paths["background"])
    write_background_qc(video_path, model, DetectParams(**cfg["detect"]), paths["background_qc"])
    timings["background"] = time.perf_counter() - start

    start = time.perf_counter()
    try:
        # one pass: detect, track and cut (the same files as the two stages)
        _, n_clips = track_and_cut(video_path, paths["background"], paths, cfg, info,
                                   source_sha256=meta["sha256"])
        timings["track+clips"] = time.perf_counter() - start
    except BufferOverflow as exc:
        log.warning("%s; cutting the clips in a second pass", exc)
        track_video(
            video_path, paths["background"], paths["tracks"], paths["tracks_summary"],
            detect_params=cfg["detect"], track_params=cfg["track"],
            fps=float(info["fps"]), um_per_px=float(info["um_per_px"]),
        )
        timings["track"] = time.perf_counter() - start
        start = time.perf_counter()
        n_clips = cut_clips(
            video_path, paths["background"], paths["tracks"], paths["tracks_summary"],
            paths["clips"], paths["clips_qc"], sample_info=info, clip_params=cfg["clips"],
            detect_params=cfg["detect"], source_sha256=meta["sha256"],
        )
        timings["clips"] = time.perf_counter() - start
    log.info("%s: %d frames, %d clips; seconds: %s", sample, meta["n_frames"], n_clips,
             ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
    return paths


#: Frames the single pass keeps for clips of live tracks (about 120 kB each at 800 x 150);
#: a track longer than this (a cell stuck in view) sends the clips to a second pass.
MAX_BUFFER_FRAMES = 2000


class _Live:
    """What the single pass knows about one track while it lives."""

    __slots__ = ("first_frame", "n", "lateral", "frames", "xs", "ys", "out")

    def __init__(self, frame: int) -> None:
        self.first_frame = frame
        self.n = 0
        self.lateral = False
        self.frames: list[int] = []  # frames with the cell wholly inside the view
        self.xs: list[float] = []
        self.ys: list[float] = []
        self.out = False  # can no longer be kept (collision, touches the lateral border)


class BufferOverflow(RuntimeError):
    """A live track outlasted the frame buffer of the single pass."""


def track_and_cut(
    video_path: str | Path,
    background_npz: str | Path,
    paths: Mapping[str, Path],
    cfg: Mapping[str, object],
    info: Mapping[str, object],
    source_sha256: str | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[pd.DataFrame, int]:
    """Detect, track and cut clips in ONE pass over the recording.

    Writes the same files, with the same content, as ``track_video`` followed by
    ``cut_clips`` (``tracks``, ``tracks_summary``, ``clips``, ``clips_qc`` of ``paths``):
    the frames a live track may still need are kept in a buffer (the frames since its
    first detection wholly in view, blobs included), and when the track ends and is kept,
    its clip is cut from them with the same functions the clip pass uses.

    Returns the track summary and the number of clips. With ``timings`` (a dict), the
    CPU seconds of the per-frame stream (decode to crop) and of what follows it once per
    recording (summary, centre line, writing the files) are stored there as
    ``stream_cpu_s`` and ``finish_cpu_s``, with the number of ``frames``.

    Raises
    ------
    BufferOverflow
        When a live track needs more than ``MAX_BUFFER_FRAMES`` frames;
        :func:`preprocess_video` then cuts the clips in a second pass.
    """
    from rbcflow.background import load_background
    from rbcflow.clips import (
        clip_frame,
        clip_parameters,
        frame_mode_output,
        frame_overlay,
        frame_wanted,
        sample_times,
        write_clip_outputs,
    )
    from rbcflow.detect import DetectParams, background_band, band_mask, blobs_from_mask
    from rbcflow.io.video import open_video
    from rbcflow.track import OnlineLinker, TableBuilder, TrackParams, finish_tracks

    params = TrackParams.from_mapping(cfg["track"])
    clip_params = clip_parameters(cfg["clips"])
    detect = DetectParams(**dict(cfg["detect"]))
    background = load_background(background_npz)
    track_mode = clip_params["mode"] == "track"
    crop, size = int(clip_params["crop_px"]), int(clip_params["size_px"])
    n_t = int(clip_params["n_frames"])
    mask_cells = bool(clip_params["mask_outside_cell"])
    wanted = frame_wanted(clip_params)
    wanted_set = set(wanted)
    scale = float(clip_params["frame_scale"])
    overlays: dict[int, np.ndarray] = {}
    # the blobs the clip masks use: the tracker's own, except under MOG2 (see cut_clips)
    sigma = detect.blur_sigma or float(background.params.get("blur_sigma", 0.0))
    mog2 = background.method == "mog2"
    bands: dict[int, object] = {}
    bg_u8: dict[int, np.ndarray] = {}
    m = params.border_margin_px
    live: dict[int, _Live] = {}
    clips: dict[int, tuple[np.ndarray, int, int]] = {}
    n_inside: dict[int, int] = {}
    lateral_y = params.flow_direction not in ("+y", "-y")  # which edges are lateral
    buffer: deque = deque()  # (index, frame, rows, blobs, k_bg), oldest first
    builder = TableBuilder()
    n_frames = 0

    stream_start = time.process_time()
    with open_video(video_path) as reader:
        width, height = int(reader.width), int(reader.height)
        linker = OnlineLinker(params, (width, height))
        detector = background.detector(detect) if mog2 else None

        def finish(tid: int) -> None:
            state = live.pop(tid)
            n_inside[tid] = len(state.frames)
            if (state.out or linker.collided.get(tid, False) or state.n < params.min_length
                    or len(state.frames) < params.min_length or len(state.frames) < 2):
                return
            f = np.asarray(state.frames)
            times = sample_times(int(f[0]), int(f[-1]), n_t)
            xs = np.interp(times, f, np.asarray(state.xs))
            ys = np.interp(times, f, np.asarray(state.ys))
            start = buffer[0][0] if buffer else None
            if start is None or int(times[0]) < start:
                raise BufferOverflow(f"{video_path}: track {tid} needs frame {int(times[0])}")
            clip = np.empty((n_t, size, size), np.uint8)
            for t in range(n_t):
                _, frame, rows, blobs, k_bg = buffer[int(times[t]) - start]
                clip[t] = clip_frame(frame, bg_u8[k_bg], blobs if mask_cells else None,
                                     rows if mask_cells else None, xs[t], ys[t], crop, size)
            clips[tid] = (clip, int(f[0]), int(f[-1]))

        single_image = len(background.start_frames) == 1
        for index, frame in reader.frames():
            n_frames += 1
            k_bg = 0 if single_image else background.index_at(index)
            if k_bg not in bands:
                bands[k_bg] = background_band(background.images[k_bg], detect)
                bg_u8[k_bg] = np.clip(np.rint(background.images[k_bg]), 0, 255).astype(np.uint8)
            if mog2:
                rows = detector(frame, index)
                if track_mode and mask_cells:
                    clip_rows, clip_blobs = blobs_from_mask(band_mask(frame, bands[k_bg], sigma),
                                                            frame, detect, with_masks=True)
                else:
                    clip_rows, clip_blobs = rows, None
            else:
                rows, clip_blobs = blobs_from_mask(band_mask(frame, bands[k_bg], sigma), frame,
                                                   detect, with_masks=True)
                clip_rows = rows
            ids = linker.update(index, rows)
            for tid in linker.ended:
                if track_mode:
                    finish(tid)
                else:
                    live.pop(tid, None)
            if rows.shape[0]:
                builder.add(index, ids, rows)
                for r, tid in zip(rows.tolist(), ids.tolist(), strict=True):
                    if tid < 0:
                        continue
                    state = live.get(tid)
                    if state is None:
                        state = live[tid] = _Live(index)
                    state.n += 1
                    bx, by, bw, bh = r[2], r[3], r[4], r[5]
                    top_bottom = by <= m or by + bh >= height - m
                    left_right = bx <= m or bx + bw >= width - m
                    if top_bottom if lateral_y else left_right:
                        state.lateral = state.out = True
                    elif not (top_bottom or left_right):
                        state.frames.append(index)
                        state.xs.append(r[0])
                        state.ys.append(r[1])
            if not track_mode:
                if index in wanted_set:
                    overlays[index] = frame_overlay(frame, background.image_at(index), scale,
                                                    detect)
                continue
            # keep this frame while a live track that may still be kept has begun its clip
            need = index + 1
            for tid, state in live.items():
                if state.out or linker.collided.get(tid, False):
                    state.out = True
                elif state.frames:
                    need = min(need, state.frames[0])
            if need <= index:
                buffer.append((index, frame, clip_rows, clip_blobs, k_bg))
                while buffer and buffer[0][0] < need:
                    buffer.popleft()
                if len(buffer) > MAX_BUFFER_FRAMES:
                    raise BufferOverflow(f"{video_path}: a track outlasts {MAX_BUFFER_FRAMES} "
                                         f"frames at frame {index}")
            else:
                buffer.clear()
        for tid in list(live):
            if track_mode:
                finish(tid)
        buffer.clear()

    finish_start = time.process_time()
    table = builder.table()
    table, summary, meta = finish_tracks(
        table, linker.collided, params, (width, height), n_frames, float(info["fps"]),
        float(info["um_per_px"]), background, cfg["detect"], paths["tracks"],
        paths["tracks_summary"], source=video_path)
    extra: dict[str, int] = {}
    if track_mode:
        kept = summary[summary["status"] == "kept"].sort_values("entry_frame", kind="stable")
        rows_out, arrays = [], []
        for _, row in kept.iterrows():
            tid = int(row["track_id"])
            if tid not in clips:
                if n_inside.get(tid, 0) >= 2:  # the clip pass would cut one
                    raise BufferOverflow(f"{video_path}: no clip buffered for kept track {tid}")
                continue
            clip, first, last = clips[tid]
            arrays.append(clip)
            rows_out.append({
                "track_id": tid, "first_frame": first, "last_frame": last,
                "velocity_mm_s": float(row["velocity_mm_s"]),
                "centerline_distance_um": float(row["centerline_distance_um"]),
                "flight_distance_px": float(row["flight_distance_px"]),
            })
        clip_rows = pd.DataFrame(rows_out, columns=[
            "track_id", "first_frame", "last_frame", "velocity_mm_s",
            "centerline_distance_um", "flight_distance_px"])
        out = (np.stack(arrays) if arrays
               else np.zeros((0, n_t, size, size), dtype=np.uint8))
    else:
        clip = None
        if len(overlays) == len(wanted):
            clip = np.stack([overlays[i] for i in wanted])
        out, clip_rows = frame_mode_output(clip, summary, clip_params, extra, (width, height))
    n_clips = write_clip_outputs(paths["clips"], paths["clips_qc"], out, clip_rows, summary,
                                 extra, info, clip_params, cfg["detect"], meta["track"],
                                 video_path, source_sha256)
    if timings is not None:
        timings.update(stream_cpu_s=finish_start - stream_start,
                       finish_cpu_s=time.process_time() - finish_start, frames=n_frames)
    return summary, n_clips
