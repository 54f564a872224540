"""Background models of a recording and the per-video detector built on them.

Methods
-------
``median`` (seed 001)
    Per-pixel median of ``n_frames`` frames sampled at random (seeded) over the whole
    recording, each smoothed by a Gaussian blur first. Cells crossing some of the sampled
    frames do not bias a median as long as each pixel is free in most of them.
``rolling_median``
    The same in consecutive windows of ``rolling_window`` frames, for recordings whose
    illumination drifts; image ``k`` applies from ``start_frames[k]`` on.
``mog2`` (seed 000)
    OpenCV's Gaussian-mixture subtractor (history 100, varThreshold 10). Its foreground
    mask is used directly; the stored image is its background estimate after the sampled
    frames. Every video gets a fresh model, never one shared across videos.

Frames are sampled in one sequential pass (no seeking, which is slow and inexact for
compressed video), and only the frames of one window are held at a time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from rbcflow.detect import (
    DetectParams,
    background_band,
    band_mask,
    blobs_from_mask,
    difference,
    smooth,
)
from rbcflow.io.atomic import atomic_path
from rbcflow.io.video import VideoError, open_video

log = logging.getLogger(__name__)

METHODS = ("median", "mog2", "rolling_median")


def _kth_smallest(stack: np.ndarray, k: int) -> np.ndarray:
    """Per-pixel k-th smallest (0-based) of a (N, H, W) uint8 stack, exactly.

    Bitwise binary search: the answer is the largest ``v`` with ``#(stack < v) <= k``,
    found one bit at a time from the top; 8 counting passes instead of a sort.
    """
    n = stack.shape[0]
    count_dtype = np.uint8 if n < 256 else np.uint32
    value = np.zeros(stack.shape[1:], np.uint8)
    below = np.empty(stack.shape[1:], count_dtype)
    is_below = np.empty(stack.shape[1:], np.bool_)
    for bit in range(7, -1, -1):
        candidate = value | np.uint8(1 << bit)
        below[:] = 0
        for layer in stack:  # frame by frame keeps the temporaries small (cache-friendly)
            np.less(layer, candidate, out=is_below)
            below += is_below
        np.copyto(value, candidate, where=below <= k)
    return value


def uint8_median(stack: np.ndarray) -> np.ndarray:
    """Exact per-pixel median of a (N, H, W) uint8 stack as float32.

    Equal to ``np.median(stack, axis=0)`` (the mean of the two middle values for even N)
    at a fraction of its cost.
    """
    stack = np.asarray(stack)
    if stack.dtype != np.uint8 or stack.ndim != 3 or stack.shape[0] == 0:
        raise ValueError(f"need a non-empty (N, H, W) uint8 stack, not {stack.dtype} {stack.shape}")
    n = stack.shape[0]
    lower = _kth_smallest(stack, (n - 1) // 2)
    if n % 2:
        return lower.astype(np.float32)
    upper = _kth_smallest(stack, n // 2)
    return (lower.astype(np.float32) + upper.astype(np.float32)) / 2


def _new_mog2(history: int, var_threshold: float) -> cv2.BackgroundSubtractorMOG2:
    # Shadows off: a shadow label (127) has no meaning for transmitted-light cells.
    return cv2.createBackgroundSubtractorMOG2(
        history=int(history), varThreshold=float(var_threshold), detectShadows=False
    )


@dataclass
class BackgroundModel:
    """A recording's background: K images, image k valid from ``start_frames[k]`` on.

    Attributes
    ----------
    method : str
    params : dict
        Every parameter the model was built with (JSON-serialisable).
    images : ndarray
        (K, H, W) float32.
    start_frames : ndarray
        (K,) int64, increasing, ``start_frames[0] == 0``.
    """

    method: str
    params: dict
    images: np.ndarray
    start_frames: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))

    def __post_init__(self) -> None:
        self.images = np.asarray(self.images, dtype=np.float32)
        self.start_frames = np.asarray(self.start_frames, dtype=np.int64)
        if self.images.ndim != 3 or len(self.images) != len(self.start_frames):
            raise ValueError("images must be (K, H, W) with one start frame per image")

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    def index_at(self, frame_index: int) -> int:
        """Which image applies to ``frame_index``."""
        k = int(np.searchsorted(self.start_frames, frame_index, side="right")) - 1
        return max(k, 0)

    def image_at(self, frame_index: int) -> np.ndarray:
        """The float32 HxW background that applies to ``frame_index``."""
        return self.images[self.index_at(frame_index)]

    def detector(self, params: DetectParams) -> Callable[[np.ndarray, int], np.ndarray]:
        """A stateful detector for ONE pass over ONE video, frames in increasing order.

        ``median``/``rolling_median``: compares each frame with ``image_at(index)``;
        frames are smoothed with the blur the background was built with (so both sides
        of the difference are alike, as in seed 001) unless ``params.blur_sigma`` sets
        another. ``mog2``: feeds a fresh MOG2 model frame by frame (started from the
        stored background) and takes its foreground mask; ``threshold`` and ``polarity``
        do not apply. Returns rows like :func:`rbcflow.detect.detect_blobs`.
        """
        if self.method == "mog2":
            return _Mog2Detector(self, params)
        return _BandDetector(self, params)


class _BandDetector:
    def __init__(self, model: BackgroundModel, params: DetectParams) -> None:
        self.model = model
        self.params = params
        self.sigma = params.blur_sigma or float(model.params.get("blur_sigma", 0.0))
        self._bands: dict[int, object] = {}

    def __call__(self, frame: np.ndarray, index: int) -> np.ndarray:
        k = self.model.index_at(index)
        band = self._bands.get(k)
        if band is None:
            band = self._bands[k] = background_band(self.model.images[k], self.params)
        raw = band_mask(frame, band, self.sigma)
        return blobs_from_mask(raw, frame, self.params)


class _Mog2Detector:
    def __init__(self, model: BackgroundModel, params: DetectParams) -> None:
        self.params = params
        self.mog2 = _new_mog2(model.params["mog2_history"], model.params["mog2_var_threshold"])
        start = np.clip(np.rint(model.images[0]), 0, 255).astype(np.uint8)
        self.mog2.apply(start, learningRate=1.0)
        self.last = -1
        self.last_mask: np.ndarray | None = None

    def __call__(self, frame: np.ndarray, index: int) -> np.ndarray:
        if index <= self.last:
            raise ValueError(f"MOG2 detector needs frames in increasing order ({index} after "
                             f"{self.last}); make a new detector for a new pass")
        self.last = index
        self.last_mask = self.mog2.apply(frame)
        return blobs_from_mask(self.last_mask, frame, self.params)


def _windows(n: int, method: str, rolling_window: int) -> list[tuple[int, int]]:
    if method != "rolling_median" or n <= rolling_window:
        return [(0, n)]
    starts = list(range(0, n, rolling_window))
    # A short tail window would give a noisy median: fold it into the previous one.
    if len(starts) > 1 and n - starts[-1] < rolling_window // 2:
        starts.pop()
    return [(s, starts[i + 1] if i + 1 < len(starts) else n) for i, s in enumerate(starts)]


def _count_frames(video_path: Path) -> int:
    with open_video(video_path) as reader:
        if reader.n_frames_header:
            return reader.n_frames_header
        return sum(1 for _ in reader.frames())


def build_background(
    video_path: str | Path,
    method: str = "median",
    n_frames: int = 100,
    blur_sigma: float = 4.0,
    mog2_history: int = 100,
    mog2_var_threshold: float = 10.0,
    rolling_window: int = 500,
    seed: int = 0,
    n_frames_readable: int | None = None,
) -> BackgroundModel:
    """Build a recording's background model in one sequential pass.

    Parameters
    ----------
    video_path : path
    method : {"median", "mog2", "rolling_median"}
    n_frames : int
        Frames sampled (per window for ``rolling_median``; fed to MOG2 for ``mog2``).
    blur_sigma : float
        Gaussian blur of each sampled frame (seed 001: 4); 0 for none.
    mog2_history, mog2_var_threshold
        MOG2 parameters (seed 000: 100 and 10).
    rolling_window : int
        Frames per window of ``rolling_median``.
    seed : int
        Seed of the frame sample; same seed, same model.
    n_frames_readable : int, optional
        Frames to use (from the ingest JSON; excludes a truncated tail). Default: the
        count the file declares, else a counting pass.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, not {n_frames}")
    video_path = Path(video_path)
    n = int(n_frames_readable) if n_frames_readable is not None else _count_frames(video_path)
    if n <= 0:
        raise VideoError(f"{video_path}: zero frames")
    rng = np.random.default_rng(seed)
    windows = _windows(n, method, rolling_window)
    picks = [np.sort(rng.choice(np.arange(a, b), size=min(n_frames, b - a), replace=False))
             for a, b in windows]
    wanted = {int(i): w for w, p in enumerate(picks) for i in p}
    last = max(wanted)

    images: list[np.ndarray] = []
    mog2 = _new_mog2(mog2_history, mog2_var_threshold) if method == "mog2" else None
    held: list[np.ndarray] = []
    current = 0
    read = 0
    with open_video(video_path) as reader:
        # frames between the sampled ones are passed over without building their arrays
        for index, frame in reader.frames(0, last + 1, only=wanted):
            read = index + 1
            w = wanted[index]
            if mog2 is not None:
                mog2.apply(frame)
                continue
            if w != current:  # the previous window is complete: reduce it, free its frames
                images.append(uint8_median(np.stack(held)))
                held, current = [], w
            held.append(smooth(frame, blur_sigma).copy())
    if read <= last:
        # frames were passed over unread: count them again for the message (error path only)
        with open_video(video_path) as reader:
            read = sum(1 for _ in reader.frames())
        raise VideoError(f"{video_path}: only {read} frames readable, the sample needs "
                         f"frame {last} (pass n_frames_readable from the ingest JSON)")
    if mog2 is not None:
        images.append(mog2.getBackgroundImage())
    else:
        images.append(uint8_median(np.stack(held)))
    params = {
        "method": method, "n_frames": int(n_frames), "blur_sigma": float(blur_sigma),
        "mog2_history": int(mog2_history), "mog2_var_threshold": float(mog2_var_threshold),
        "rolling_window": int(rolling_window), "seed": int(seed), "n_frames_used": n,
    }
    starts = [a for a, _ in windows]
    log.info("%s: %s background from %d sampled frames (%d image(s))", video_path, method,
             len(wanted), len(images))
    return BackgroundModel(method, params, np.stack(images), np.asarray(starts, np.int64))


def save_background(model: BackgroundModel, path: str | Path) -> None:
    """Write a model as ``.npz`` (atomically): images, start_frames, params (JSON string)."""
    params = json.dumps({"method": model.method, **model.params}, sort_keys=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, images=model.images.astype(np.float32),
                     start_frames=model.start_frames.astype(np.int64),
                     params=np.array([params]))


def load_background(path: str | Path) -> BackgroundModel:
    """Read a model written by :func:`save_background` (no pickle)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            params = json.loads(str(data["params"][0]))
            images = data["images"]
            start_frames = data["start_frames"]
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not a background file ({exc})") from exc
    return BackgroundModel(params["method"], params, images, start_frames)


def _label(panel: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((18, panel.shape[1]), 255, np.uint8)
    cv2.putText(bar, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 0, 1, cv2.LINE_AA)
    return np.vstack([bar, panel])


def write_background_qc(
    video_path: str | Path,
    model: BackgroundModel,
    params: DetectParams,
    out_png: str | Path,
    frame_index: int | None = None,
    search_frames: int = 500,
) -> int:
    """QC figure in the style of seed 000 Fig. 2A-C, written atomically as PNG.

    Panels, top to bottom: the background; frames overlaid (the frame +- 20 frames,
    every 5th; per pixel the value farthest from the background), showing the cells'
    paths; the
    foreground mask of the frame; the background-subtracted frame (the frame where the
    mask is set, black elsewhere). Without ``frame_index`` the frame with the largest
    foreground area among the first ``search_frames`` is shown. Returns the frame shown.
    """
    video_path = Path(video_path)
    if frame_index is None:
        detect = model.detector(params)
        best, best_area = 0, -1.0
        with open_video(video_path) as reader:
            for index, frame in reader.frames(0, search_frames):
                area = float(detect(frame, index)[:, 6].sum())
                if area > best_area:
                    best, best_area = index, area
        frame_index = best
    overlay_at = set(range(max(frame_index - 20, 0), frame_index + 21, 5))
    detect = model.detector(params)
    shown = None
    raw = None
    overlaid = None
    with open_video(video_path) as reader:
        for index, frame in reader.frames(0, frame_index + 21):
            if index <= frame_index and model.method == "mog2":
                detect(frame, index)  # MOG2 must see every frame up to the shown one
                if index == frame_index:
                    raw = detect.last_mask
            if index in overlay_at:
                # Keep, per pixel, the frame value farthest from the background: every
                # cell's position shows, the static scene stays as it is.
                current = frame.astype(np.float32)
                if overlaid is None:
                    overlaid = current
                else:
                    bg = model.image_at(index)
                    farther = np.abs(current - bg) > np.abs(overlaid - bg)
                    overlaid = np.where(farther, current, overlaid)
            if index == frame_index:
                shown = frame.copy()
    if shown is None:
        raise VideoError(f"{video_path}: frame {frame_index} cannot be read for the QC figure")
    background = model.image_at(frame_index)
    if raw is None:
        sigma = params.blur_sigma or float(model.params.get("blur_sigma", 0.0))
        raw = band_mask(shown, background_band(background, params), sigma)
    rows, blobs = blobs_from_mask(raw, shown, params, with_masks=True)
    mask = np.zeros(model.shape, np.uint8)
    for blob in blobs:
        h, w = blob.mask.shape
        mask[blob.y:blob.y + h, blob.x:blob.x + w] |= blob.mask
    overlaid = np.clip(np.rint(overlaid), 0, 255).astype(np.uint8)
    subtracted = np.where(mask > 0, shown, 0).astype(np.uint8)
    evidence = difference(shown, background, params.polarity)
    panels = [
        _label(np.clip(np.rint(background), 0, 255).astype(np.uint8),
               f"background ({model.method})"),
        _label(overlaid, f"frames {min(overlay_at)}..{max(overlay_at)} overlaid"),
        _label(mask * 255, f"foreground mask, frame {frame_index}: {len(rows)} blob(s), "
                           f"max |diff| {float(evidence.max()):.0f}"),
        _label(subtracted, "background subtracted"),
    ]
    figure = np.vstack(panels)
    with atomic_path(out_png) as tmp:
        if not cv2.imwrite(str(tmp), figure):
            raise OSError(f"{out_png}: cannot write PNG")
    return int(frame_index)
