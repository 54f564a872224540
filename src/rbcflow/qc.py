"""Quality control of one recording: the background figure and the QC record.

The figure follows seed 000 Fig. 2A-C; the record (``qc/<sample>.json``) counts what the
chain found (frames, detections, tracks by verdict, clips) so the report reads one small
file per recording instead of re-reading the large ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from rbcflow.background import BackgroundModel
from rbcflow.detect import difference
from rbcflow.io.atomic import atomic_path, write_text_atomic
from rbcflow.io.video import VideoError, open_video
from rbcflow.params import DetectParams
from rbcflow.segment import make_segmenter

#: Frames searched for the busiest one shown by the background figure.
QC_SEARCH_FRAMES = 500
#: Frames on either side of the shown one that are superimposed (every 5th).
QC_OVERLAY_HALF_WIDTH = 20


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
    evidence = difference(shown, background, params.polarity)
    panels = [
        _label(np.clip(np.rint(background), 0, 255).astype(np.uint8),
               f"background ({model.method})"),
        _label(np.clip(np.rint(overlaid), 0, 255).astype(np.uint8),
               f"frames {min(overlay_at)}..{max(overlay_at)} overlaid"),
        _label(mask * 255, f"foreground mask, frame {frame_index}: {len(blobs)} blob(s), "
                           f"max |diff| {float(evidence.max()):.0f}"),
        _label(np.where(mask > 0, shown, 0).astype(np.uint8), "background subtracted"),
    ]
    with atomic_path(out_png) as tmp:
        if not cv2.imwrite(str(tmp), np.vstack(panels)):
            raise OSError(f"{out_png}: cannot write PNG")
    return int(frame_index)


def recording_record(sample: str, n_frames: int, n_detections: int, summary,
                     n_clips: int, pipeline_id: str, extra: Mapping[str, object] | None = None
                     ) -> dict:
    """The QC record of one recording (JSON-ready)."""
    statuses = summary["status"].value_counts().to_dict() if len(summary) else {}
    return {"sample": sample, "n_frames": int(n_frames), "n_detections": int(n_detections),
            "tracks": {str(k): int(v) for k, v in sorted(statuses.items())},
            "n_clips": int(n_clips), "pipeline_id": pipeline_id, **dict(extra or {})}


def write_record(record: Mapping[str, object], path: str | Path) -> None:
    """Write a QC record atomically."""
    write_text_atomic(path, json.dumps(dict(record), indent=2, sort_keys=True) + "\n")


def read_record(path: str | Path) -> dict:
    """A QC record written by :func:`write_record`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
