"""The whole per-recording chain for one video: ingest, background, tracks, clips.

:func:`preprocess_video` calls the same functions, with the same config keys, as the
Snakemake rules ``ingest_video``, ``model_background``, ``track_cells`` and ``cut_clips``,
and writes the same files under ``outdir`` (``ingest/``, ``background/``, ``tracks/``,
``clips/``), so one recording can be processed now without a sample sheet or a workflow.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path

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
