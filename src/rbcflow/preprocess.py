"""The per-recording chain: ingest, background, then one pass that tracks and cuts clips.

:func:`preprocess_video` is the one chain the workflow (rule ``preprocess_batch``, which
runs it for a batch of recordings in one job), ``rbcflow preprocess`` and the benchmark
all run. It writes, under one folder, laid out like this::

    ingest/<sample>.json, ingest/<sample>.png        metadata, contact sheet
    background/<sample>.npz, background/<sample>_qc.png
    tracks/<sample>.parquet, tracks/<sample>_tracks.tsv
    clips/<sample>.h5, clips/<sample>_qc.tsv
    qc/<sample>.json                                 counts for the report

Tracking and clip cutting share one pass over the video (:func:`track_and_cut`): the
frames a live track may still need are buffered, and a kept track's clip is cut when the
track ends. The per-stage commands (``rbcflow ingest``, ``background``, ``track``,
``clips``) call the same stage functions one at a time and write the same files.

The chain does not import pandas (its tables are ``rbcflow.columns.Columns``), nor scipy
unless a frame needs the linker's assignment: a job on a short recording starts that much
sooner.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from rbcflow.layout import output_paths
from rbcflow.params import ChainParams, resolve_chain_params, section_with_defaults

__all__ = ["output_paths", "preprocess_batch", "preprocess_video", "track_and_cut"]

log = logging.getLogger(__name__)

SAMPLE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_INFO_DEFAULTS = {"donor": "unknown", "condition": "unknown", "focus": "in",
                  "session": "unknown"}


def sample_name(video_path: str | Path) -> str:
    """A valid sample name from a file name (characters outside [A-Za-z0-9_-] become _)."""
    stem = Path(video_path).name.split(".")[0]
    name = re.sub(r"[^A-Za-z0-9_-]", "_", stem).lstrip("_-")[:64]
    return name or "sample"


def recording_info(video_path: str | Path, sample_info: Mapping[str, object]) -> dict:
    """A sample-sheet row completed with defaults; the sample name checked.

    ``fps`` and ``um_per_px`` are required; ``sample`` defaults to the file name,
    ``donor``, ``condition`` and ``session`` to ``unknown``, ``focus`` to ``in``.
    """
    info = {**_INFO_DEFAULTS, **{k: v for k, v in dict(sample_info).items() if v is not None}}
    info.setdefault("sample", sample_name(video_path))
    missing = [k for k in ("fps", "um_per_px") if k not in info]
    if missing:
        raise ValueError(f"{video_path}: sample information lacks {missing}")
    if not SAMPLE_PATTERN.match(str(info["sample"])):
        raise ValueError(f"sample name {info['sample']!r} must match {SAMPLE_PATTERN.pattern}")
    return info


def preprocess_video(
    video_path: str | Path,
    outdir: str | Path,
    config: Mapping[str, object] | None,
    sample_info: Mapping[str, object],
    progress: bool = False,
) -> dict[str, Path]:
    """Run the whole chain on one recording; returns the path of every file, by role.

    Parameters
    ----------
    video_path : the recording (any format ``rbcflow.io.video.open_video`` reads).
    outdir : folder receiving the files (layout in the module docstring).
    config : workflow configuration, or the sections of it the chain reads (``ingest``,
        ``background``, ``detect``, ``track``, ``clips``, ``seed``); missing keys take
        the schema's defaults.
    sample_info : the recording's sample-sheet row (see :func:`recording_info`).
    progress : show a progress bar over the frames.
    """
    from rbcflow.background import build_background, save_background
    from rbcflow.ingest import ingest_video
    from rbcflow.qc import write_background_qc

    config = dict(config or {})
    info = recording_info(video_path, sample_info)
    # every value is checked before the first file is written
    params = resolve_chain_params(config, float(info["fps"]), float(info["um_per_px"]))
    ingest = section_with_defaults("ingest", config.get("ingest"))
    sample = str(info["sample"])
    paths = output_paths(outdir, sample)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    meta = ingest_video(video_path, sample=sample, fps_sheet=params.fps,
                        out_json=paths["ingest_json"], out_png=paths["contact_sheet"],
                        allow_truncated=ingest["allow_truncated"],
                        fps_tolerance=ingest["fps_tolerance"])
    timings["ingest"] = time.perf_counter() - start
    start = time.perf_counter()
    model = build_background(video_path, params.background, n_frames_readable=meta["n_frames"])
    save_background(model, paths["background"])
    params = params.calibrated(model)
    log.info("%s: noise %.2f grey levels; detection threshold %g (%s), polarity %s (%s)",
             sample, params.detect.noise_sigma or float("nan"), params.detect.threshold,
             "auto" if params.detect.auto_threshold else "fixed", params.detect.polarity,
             "auto" if params.detect.auto_polarity else "fixed")
    write_background_qc(video_path, model, params.detect, paths["background_qc"])
    timings["background"] = time.perf_counter() - start
    start = time.perf_counter()
    n_clips = track_and_cut(video_path, model, params, paths, info, meta["sha256"],
                            progress=progress)
    timings["track+clips"] = time.perf_counter() - start
    log.info("%s: %d frames, %d clips; seconds: %s", sample, meta["n_frames"], n_clips,
             ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
    return paths


def preprocess_batch(
    rows: Iterable[Mapping[str, object]],
    outdir: str | Path,
    config: Mapping[str, object] | None,
) -> list[dict[str, Path]]:
    """Run the chain on several recordings (sample-sheet rows with ``path``), in order."""
    return [preprocess_video(row["path"], outdir, config, row) for row in rows]


def _frame_loop(reader, segmenter, tracking, collector, clip_segmenter, background, track_mode,
                progress: bool):
    """The per-frame stream of the single pass: segment, link, judge, buffer or overlay."""
    frames = reader.frames()
    if progress:
        from tqdm import tqdm

        frames = tqdm(frames, total=reader.n_frames_header, unit="frame",
                      desc=f"preprocess {Path(reader.path).name}")
    single_image = len(background.start_frames) == 1
    background_u8: dict[int, object] = {}
    for index, frame in frames:
        blobs = segmenter.blobs(frame, index)
        step = tracking.add(index, blobs.detections)
        if not track_mode:
            collector.add_frame(index, frame, blobs)
            continue
        collector.end_tracks(step.ended)
        k = 0 if single_image else background.index_at(index)
        if k not in background_u8:
            background_u8[k] = background.image_u8(k)
        clip_blobs = blobs if clip_segmenter is None else clip_segmenter.blobs(frame, index)
        collector.add_frame(index, frame, background_u8[k], blobs.detections, step.ids,
                            step.inside, clip_blobs)
    if track_mode:
        collector.finish()


def _second_pass(video_path, background, params: ChainParams, table, summary, view,
                 track_ids) -> dict:
    """Clips of the kept tracks the single pass could not buffer, from a second pass."""
    from rbcflow.clips import cut_track_clips, plan_track_clips
    from rbcflow.io.video import open_video
    from rbcflow.segment import BandSegmenter

    log.warning("%s: %d track(s) outlasted the frame buffer; cutting their clips in a "
                "second pass", video_path, len(track_ids))
    plan, rows = plan_track_clips(table, summary, view, params.clips.n_frames, track_ids)
    with open_video(video_path) as reader:
        arrays = cut_track_clips(reader, background, BandSegmenter(background, params.detect),
                                 plan, len(rows), params.clips)
    return {int(tid): (arrays[k], int(first), int(last))
            for k, (tid, first, last) in enumerate(zip(rows["track_id"], rows["first_frame"],
                                                       rows["last_frame"], strict=True))}


def track_and_cut(
    video_path: str | Path,
    background,
    params: ChainParams,
    paths: Mapping[str, Path],
    info: Mapping[str, object],
    source_sha256: str,
    timings: dict[str, float] | None = None,
    progress: bool = False,
) -> int:
    """Detect, track and cut clips in ONE pass over the recording; returns the clip count.

    Writes the tracks table and summary, the clip file and its QC table, and the QC record
    (``tracks``, ``tracks_summary``, ``clips``, ``clips_qc``, ``qc`` of ``paths``): the same
    files as ``rbcflow.track.track_video`` followed by ``rbcflow.clips.cut_clips``. With
    ``timings`` (a dict), the CPU seconds of the per-frame stream (decode to crop) and of
    what follows once per recording (summary, centre line, writing) are stored there as
    ``stream_cpu_s`` and ``finish_cpu_s``, with the number of ``frames``.
    """
    from rbcflow.clips import (
        FrameClipCollector,
        TrackClipCollector,
        frame_mode_output,
        qc_table,
        track_mode_output,
        write_clip_outputs,
    )
    from rbcflow.io.video import open_video
    from rbcflow.qc import assess_recording, recording_record, write_record
    from rbcflow.segment import BandSegmenter, make_segmenter
    from rbcflow.track import TrackingPass

    params = params.calibrated(background)  # the values every output records
    track_mode = params.clips.mode == "track"
    segmenter = make_segmenter(background, params.detect)
    # clip masks need every frame's blobs again, which a MOG2 model cannot replay
    clip_segmenter = (BandSegmenter(background, params.detect)
                      if track_mode and params.clips.mask_outside_cell and segmenter.sequential
                      else None)
    stream_start = time.process_time()
    with open_video(video_path) as reader:
        frame_size = (int(reader.width), int(reader.height))
        tracking = TrackingPass(params, frame_size)
        collector = (TrackClipCollector(params.clips, tracking.judge) if track_mode
                     else FrameClipCollector(params.clips))
        _frame_loop(reader, segmenter, tracking, collector, clip_segmenter, background,
                    track_mode, progress)
    finish_start = time.process_time()
    table, summary = tracking.finish(background.image_at(0), paths["tracks"],
                                     paths["tracks_summary"], source=video_path)
    extra: dict[str, int] = {}
    if track_mode:
        clips = dict(collector.clips)
        if collector.second_pass:
            clips.update(_second_pass(video_path, background, params, table, summary,
                                      tracking.judge.view, sorted(collector.second_pass)))
        out, rows = track_mode_output(summary, clips, params.clips)
    else:
        out, rows = frame_mode_output(collector.clip(), summary, params.clips, extra,
                                      frame_size)
    n_clips = write_clip_outputs(paths["clips"], paths["clips_qc"], out, rows,
                                 qc_table(summary, extra), info, params, source_sha256)
    record = recording_record(str(info["sample"]), tracking.n_frames, len(table), summary,
                              n_clips, params.pipeline_id)
    write_record(assess_recording(record, table, summary, background, params, video_path,
                                  limits=params.qc), paths["qc"])
    if timings is not None:
        timings.update(stream_cpu_s=finish_start - stream_start,
                       finish_cpu_s=time.process_time() - finish_start,
                       frames=tracking.n_frames)
    return n_clips
