"""Quality control of one recording: the background figure, the QC record and its verdict.

The figure follows seed 000 Fig. 2A-C; the record (``qc/<sample>.json``) counts what the
chain found (frames, detections, tracks by verdict, clips) so the report reads one small
file per recording instead of re-reading the large ones.

:func:`assess_recording` adds a verdict to the record, ``ok``, ``suspect`` or ``failed``,
from signs that settings which do not fit a recording leave behind (each with its limit,
a key of the config's ``qc`` section):

- ``noise_foreground_fraction``: pixels above the threshold that belong to no blob (a
  threshold within the noise marks speckle everywhere);
- ``foreground_fraction``: pixels above the threshold at all (a wrong background, or
  illumination that drifts);
- ``persistent_foreground_fraction``: pixels above the threshold in most sampled frames
  (a background that still holds cells shows them as ghosts in every frame);
- ``background_frames``: frames the background was built from;
- ``kept_detection_fraction``: detections in kept tracks (detections on empty background
  make tracks no one keeps);
- ``too_short_fraction``: tracks rejected as too short;
- ``blob_area_ratio``: median blob area over the expected cell area (``detect.
  cell_diameter_um``).

A recording without detections, or (when its frames are a continuous video) without a
kept track, has ``failed``; one with any sign beyond its limit is ``suspect``. Either
logs one warning that names the recording, each sign and the parameter to change.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from rbcflow.background import BackgroundModel
from rbcflow.detect import blobs_from_mask, difference
from rbcflow.io.atomic import write_png_atomic, write_text_atomic
from rbcflow.io.video import VideoError, open_video
from rbcflow.params import DetectParams
from rbcflow.segment import make_segmenter

#: Frames searched for the busiest one shown by the background figure.
QC_SEARCH_FRAMES = 500
#: Frames on either side of the shown one that are superimposed (every 5th).
QC_OVERLAY_HALF_WIDTH = 20
VERDICTS = ("ok", "suspect", "failed")

log = logging.getLogger(__name__)


def _label(panel: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((18, panel.shape[1]), 255, np.uint8)
    cv2.putText(bar, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 0, 1, cv2.LINE_AA)
    return np.vstack([bar, panel])


def busiest_frame(video_path: str | Path, model: BackgroundModel, params: DetectParams,
                  search_frames: int = QC_SEARCH_FRAMES) -> int:
    """The frame with the largest foreground area among the first ``search_frames``."""
    segmenter = make_segmenter(model, params)
    best, best_area = 0, -1.0
    with open_video(video_path) as reader:
        for index, frame in reader.frames(0, search_frames):
            area = float(segmenter.blobs(frame, index).detections["area_px"].sum())
            if area > best_area:
                best, best_area = index, area
    return best


def _superimpose(overlaid: np.ndarray | None, frame: np.ndarray, background: np.ndarray
                 ) -> np.ndarray:
    """Keep, per pixel, the value farthest from the background: every cell's position shows,
    the static scene stays as it is."""
    current = frame.astype(np.float32)
    if overlaid is None:
        return current
    farther = np.abs(current - background) > np.abs(overlaid - background)
    return np.where(farther, current, overlaid)


def write_background_qc(video_path: str | Path, model: BackgroundModel, params: DetectParams,
                        out_png: str | Path, frame_index: int | None = None) -> int:
    """QC figure in the style of seed 000 Fig. 2A-C, written atomically as PNG.

    Panels, top to bottom: the background; frames overlaid (the frame +- 20 frames, every
    5th), showing the cells' paths; the foreground mask of the frame (the pipeline's own
    rule, ``rbcflow.segment``); the background-subtracted frame. Without ``frame_index``
    the busiest of the first frames is shown. Returns the frame shown.
    """
    video_path = Path(video_path)
    if frame_index is None:
        frame_index = busiest_frame(video_path, model, params)
    half = QC_OVERLAY_HALF_WIDTH
    overlay_at = set(range(max(frame_index - half, 0), frame_index + half + 1, 5))
    segmenter = make_segmenter(model, params)
    shown, blobs, overlaid = None, None, None
    with open_video(video_path) as reader:
        for index, frame in reader.frames(0, frame_index + half + 1):
            if index == frame_index or (segmenter.sequential and index < frame_index):
                found = segmenter.blobs(frame, index)  # MOG2 must see every frame up to it
                if index == frame_index:
                    shown, blobs = frame.copy(), found
            if index in overlay_at:
                overlaid = _superimpose(overlaid, frame, model.image_at(index))
    if shown is None:
        raise VideoError(f"{video_path}: frame {frame_index} cannot be read for the QC figure")
    background = model.image_at(frame_index)
    mask = blobs.mask_image(model.shape)
    evidence = difference(shown, background, segmenter.params.polarity)
    panels = [
        _label(np.clip(np.rint(background), 0, 255).astype(np.uint8),
               f"background ({model.method})"),
        _label(np.clip(np.rint(overlaid), 0, 255).astype(np.uint8),
               f"frames {min(overlay_at)}..{max(overlay_at)} overlaid"),
        _label(mask * 255, f"foreground mask, frame {frame_index}: {len(blobs)} blob(s), "
                           f"max |diff| {float(evidence.max()):.0f}"),
        _label(np.where(mask > 0, shown, 0).astype(np.uint8), "background subtracted"),
    ]
    write_png_atomic(out_png, np.vstack(panels))  # a full disk: WriteError, not libpng noise
    return int(frame_index)


def recording_record(sample: str, n_frames: int, n_detections: int, summary,
                     n_clips: int, pipeline_id: str, extra: Mapping[str, object] | None = None
                     ) -> dict:
    """The QC record of one recording (JSON-ready); ``summary``: the track summary
    (``rbcflow.columns.Columns`` or a DataFrame)."""
    statuses = Counter(np.asarray(summary["status"], dtype=object).tolist())
    return {"sample": sample, "n_frames": int(n_frames), "n_detections": int(n_detections),
            "tracks": {str(k): int(v) for k, v in sorted(statuses.items())},
            "n_clips": int(n_clips), "pipeline_id": pipeline_id, **dict(extra or {})}


def write_record(record: Mapping[str, object], path: str | Path) -> None:
    """Write a QC record atomically."""
    write_text_atomic(path, json.dumps(dict(record), indent=2, sort_keys=True) + "\n")


def read_record(path: str | Path) -> dict:
    """A QC record written by :func:`write_record`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


class Sign(NamedTuple):
    """One QC sign: the figure it reads, its limit's config key and what to change."""

    name: str
    limit_key: str
    is_upper: bool
    parameter: str


#: The signs in the order they are reported. ``is_upper``: the figure must not exceed
#: its limit (else not fall below it).
SIGNS = (
    Sign("noise_foreground_fraction", "max_noise_foreground_fraction", True,
         "detect.threshold_k (or a fixed detect.threshold higher; detect.blur_sigma)"),
    Sign("foreground_fraction", "max_foreground_fraction", True,
         "background.method (rolling_median for drifting light) or detect.threshold_k"),
    Sign("persistent_foreground_fraction", "max_persistent_foreground_fraction", True,
         "background.n_frames (more frames, or a longer recording)"),
    Sign("background_frames", "min_background_frames", False,
         "background.n_frames (more frames, or a longer recording)"),
    Sign("kept_detection_fraction", "min_kept_detection_fraction", False,
         "detect.threshold_k or detect.min_area_um2"),
    Sign("too_short_fraction", "max_too_short_fraction", True,
         "detect.threshold_k or track.max_speed_mm_s"),
    Sign("blob_area_ratio", "min_blob_area_ratio", False,
         "detect.threshold_k (blobs smaller than cells), or the sheet's um_per_px"),
    Sign("blob_area_ratio", "max_blob_area_ratio", True,
         "detect.split_touching / detect.threshold_k (blobs larger than cells), or "
         "detect.cell_diameter_um and the sheet's um_per_px"),
)
#: Signs that need a continuous video: tracks of separate snapshots mean nothing.
TRACK_SIGNS = ("kept_detection_fraction", "too_short_fraction")


def qc_limits(section: Mapping[str, object] | None = None) -> dict[str, object]:
    """The ``qc`` section completed from the schema's defaults (unknown keys refused)."""
    from rbcflow.params import section_with_defaults

    return section_with_defaults("qc", section)


def measure_frames(video_path: str | Path, model: BackgroundModel, params: DetectParams,
                   n_frames: int) -> dict[str, object]:
    """Foreground figures of the first ``n_frames`` frames, streamed with the chain's rule.

    Returns
    -------
    dict
        ``frames_sampled``; ``foreground_fraction`` (mean share of pixels beyond the
        threshold), ``noise_foreground_fraction`` (of those, outside every blob),
        ``persistent_foreground_fraction`` (share of pixels beyond it in more than half
        the sampled frames; None for fewer than 3 frames); ``continuous`` (False when the
        reader says its frames are separate snapshots, as RT-DC events are).
    """
    segmenter = make_segmenter(model, params)
    sampled, foreground, noise = 0, 0, 0
    hits = np.zeros(model.shape, np.uint16)
    with open_video(video_path) as reader:
        continuous = bool(getattr(reader, "frames_consecutive", True))
        for index, frame in reader.frames(0, n_frames):
            raw = segmenter.raw_mask(frame, index)
            blobs = blobs_from_mask(raw, frame, segmenter.params)
            beyond = raw > 0
            foreground += int(np.count_nonzero(beyond))
            noise += int(np.count_nonzero(beyond & (blobs.mask_image(model.shape) == 0)))
            hits += beyond
            sampled += 1
    pixels = max(sampled, 1) * hits.size
    persistent = (float(np.count_nonzero(hits * 2 > sampled)) / hits.size
                  if sampled >= 3 else None)
    return {"frames_sampled": sampled, "foreground_fraction": foreground / pixels,
            "noise_foreground_fraction": noise / pixels,
            "persistent_foreground_fraction": persistent, "continuous": continuous}


def track_figures(table, summary, n_frames: int, expected_area_px: float) -> dict[str, object]:
    """Figures of the detections and tracks: per frame, kept, too short, blob sizes.

    ``table`` is the tracks table (one row per detection, ``track_id`` and ``area_px``),
    ``summary`` the track summary (``track_id``, ``status``); each a
    ``rbcflow.columns.Columns`` or a DataFrame.
    """
    n_detections = int(len(table))
    status = dict(zip(np.asarray(summary["track_id"]).tolist(),
                      np.asarray(summary["status"], dtype=object).tolist(), strict=True))
    kept_ids = [t for t, s in status.items() if s == "kept"]
    in_kept = int(np.isin(np.asarray(table["track_id"]), kept_ids).sum())
    n_tracks = len(status)
    areas = np.asarray(table["area_px"], dtype=np.float64)
    median_area = float(np.median(areas)) if len(areas) else None
    return {
        "detections_per_frame": n_detections / n_frames if n_frames else 0.0,
        "kept_tracks": len(kept_ids),
        "kept_detection_fraction": in_kept / n_detections if n_detections else None,
        "too_short_fraction": (sum(s == "too_short" for s in status.values()) / n_tracks
                               if n_tracks else None),
        "median_blob_area_px": median_area,
        "expected_cell_area_px": expected_area_px,
        "blob_area_ratio": (median_area / expected_area_px
                            if median_area is not None and expected_area_px > 0 else None),
    }


def _beyond(sign: Sign, value: float, limit: float) -> bool:
    return value > limit if sign.is_upper else value < limit


def judge(figures: Mapping[str, object], limits: Mapping[str, object]
          ) -> tuple[str, list[dict[str, object]]]:
    """The verdict and the signs beyond their limits (pure).

    ``figures`` holds the measured values of :data:`SIGNS` (None: not measured) and
    ``n_detections``, ``kept_tracks`` and ``continuous``.
    """
    flagged = []
    for sign in SIGNS:
        value = figures.get(sign.name)
        if value is None or (sign.name in TRACK_SIGNS and not figures.get("continuous", True)):
            continue
        limit = float(limits[sign.limit_key])
        if _beyond(sign, float(value), limit):
            flagged.append({"sign": sign.name, "value": _rounded(value),
                            "limit": f"{sign.limit_key} {limit:g}",
                            "parameter": sign.parameter})
    if not figures.get("n_detections"):
        return "failed", [{"sign": "n_detections", "value": 0, "limit": "at least 1",
                           "parameter": "detect.threshold_k (lower) or detect.min_area_um2, "
                                         "if the recording shows cells at all"},
                          *flagged]
    if figures.get("continuous", True) and not figures.get("kept_tracks"):
        return "failed", [{"sign": "kept_tracks", "value": 0, "limit": "at least 1",
                           "parameter": "detect.threshold_k, track.max_speed_mm_s or "
                                         "track.min_length"}, *flagged]
    return ("suspect" if flagged else "ok"), flagged


def _rounded(value):
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    return value


def warning_text(sample: str, verdict: str, flagged: list[Mapping[str, object]]) -> str:
    """The one warning of a recording whose verdict is not ``ok``."""
    signs = "; ".join(f"{f['sign']} {f['value']} (limit {f['limit']}): change {f['parameter']}"
                      for f in flagged)
    return f"{sample}: QC {verdict}: {signs}"


def assess_recording(record: Mapping[str, object], table, summary, model: BackgroundModel,
                     params, video_path: str | Path,
                     limits: Mapping[str, object] | None = None) -> dict:
    """The QC record with its verdict (``record["qc"]``); logs one warning unless ``ok``.

    Parameters
    ----------
    record : from :func:`recording_record`.
    table, summary : the recording's tracks table and track summary.
    model : its background; ``params`` : its calibrated ``ChainParams``.
    video_path : the recording (its first ``qc.sample_frames`` frames are read again).
    limits : the config's ``qc`` section (schema defaults for missing keys).
    """
    limits = qc_limits(limits)
    detect = params.detect
    expected_area = math.pi / 4 * float(detect.cell_diameter_px) ** 2
    frames = measure_frames(video_path, model, detect, int(limits["sample_frames"]))
    figures: dict[str, object] = {
        **frames, **track_figures(table, summary, int(record["n_frames"]), expected_area),
        "n_detections": int(record["n_detections"]),
        "background_frames": model.params.get("n_frames_used"),
        "threshold": detect.threshold, "polarity": detect.polarity,
        "noise_sigma": detect.noise_sigma,
    }
    verdict, flagged = judge(figures, limits)
    if verdict != "ok":
        log.warning(warning_text(str(record["sample"]), verdict, flagged))
    qc = {"verdict": verdict, "flagged": flagged,
          "figures": {k: _rounded(v) for k, v in sorted(figures.items())}}
    return {**dict(record), "qc": qc}
