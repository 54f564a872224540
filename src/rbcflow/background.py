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
compressed video), and only the frames of one window are held at a time. Some of the
sampled frames are compared with the finished image on the way: the histogram of their
difference (``params["noise"]``) is what ``detect.threshold: auto`` and
``detect.polarity: auto`` are set from (``rbcflow.calibrate``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from rbcflow.calibrate import (
    CANDIDATE_BLURS,
    N_BINS,
    NOISE_FRAMES,
    added_blur,
    difference_histogram,
    noise_record,
)
from rbcflow.detect import smooth
from rbcflow.io.atomic import atomic_path
from rbcflow.io.video import VideoError, open_video
from rbcflow.params import BACKGROUND_METHODS, BackgroundParams
from rbcflow.portable import gaussian_blur

log = logging.getLogger(__name__)


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


def new_mog2(history: int, var_threshold: float) -> cv2.BackgroundSubtractorMOG2:
    """A fresh MOG2 model (one per recording and pass, never shared)."""
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
        if len(self.start_frames) == 1:  # one image: asked once per frame, answered at once
            return 0
        k = int(np.searchsorted(self.start_frames, frame_index, side="right")) - 1
        return max(k, 0)

    def image_at(self, frame_index: int) -> np.ndarray:
        """The float32 HxW background that applies to ``frame_index``."""
        return self.images[self.index_at(frame_index)]

    def image_u8(self, k: int) -> np.ndarray:
        """Image ``k`` rounded to grey levels (what clip windows are filled with)."""
        return np.clip(np.rint(self.images[k]), 0, 255).astype(np.uint8)


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
    params: BackgroundParams,
    n_frames_readable: int | None = None,
) -> BackgroundModel:
    """Build a recording's background model in one sequential pass.

    Parameters
    ----------
    video_path : the recording.
    params : method, frames sampled (per window for ``rolling_median``; fed to MOG2 for
        ``mog2``), blur of each sampled frame, MOG2 settings, window length and the seed
        of the frame sample (same seed, same model).
    n_frames_readable : frames to use (from the ingest JSON; excludes a truncated tail).
        Default: the count the file declares, else a counting pass.
    """
    if params.method not in BACKGROUND_METHODS:
        raise ValueError(f"method must be one of {BACKGROUND_METHODS}, not {params.method!r}")
    video_path = Path(video_path)
    n = int(n_frames_readable) if n_frames_readable is not None else _count_frames(video_path)
    if n <= 0:
        raise VideoError(f"{video_path}: zero frames")
    if params.use_instrument:
        model = instrument_background(video_path, params, n)
        if model is not None:
            return model
    rng = np.random.default_rng(params.seed)
    windows = _windows(n, params.method, params.rolling_window)
    picks = [np.sort(rng.choice(np.arange(a, b), size=min(params.n_frames, b - a),
                                replace=False)) for a, b in windows]
    wanted = {int(i): w for w, p in enumerate(picks) for i in p}
    last = max(wanted)

    images: list[np.ndarray] = []
    mog2 = (new_mog2(params.mog2_history, params.mog2_var_threshold)
            if params.method == "mog2" else None)
    held: list[np.ndarray] = []
    # the first few sampled frames of each window, for the noise histogram
    per_window = max(1, -(-NOISE_FRAMES // len(windows)))
    blurs = [b for b in CANDIDATE_BLURS if b > params.blur_sigma]
    noise = np.zeros((1 + len(blurs), N_BINS), np.int64)
    n_noise = 0
    current = 0
    read = 0
    with open_video(video_path) as reader:
        # frames between the sampled ones are passed over without building their arrays
        for index, frame in reader.frames(0, last + 1, only=wanted):
            read = index + 1
            w = wanted[index]
            if mog2 is not None:
                mog2.apply(frame)
                if len(held) < NOISE_FRAMES:
                    held.append(smooth(frame, params.blur_sigma).copy())
                continue
            if w != current:  # the previous window is complete: reduce it, free its frames
                images.append(uint8_median(np.stack(held)))
                noise += _noise_histograms(held[:per_window], images[-1], params.blur_sigma,
                                           blurs)
                n_noise += len(held[:per_window])
                held, current = [], w
            held.append(smooth(frame, params.blur_sigma).copy())
    if read <= last:
        # frames were passed over unread: count them again for the message (error path only)
        with open_video(video_path) as reader:
            read = sum(1 for _ in reader.frames())
        raise VideoError(f"{video_path}: only {read} frames readable, the sample needs "
                         f"frame {last} (pass n_frames_readable from the ingest JSON)")
    if mog2 is not None:
        images.append(mog2.getBackgroundImage())
        per_window = NOISE_FRAMES
    else:
        images.append(uint8_median(np.stack(held)))
    noise += _noise_histograms(held[:per_window], images[-1], params.blur_sigma, blurs)
    n_noise += len(held[:per_window])
    record = {**dataclasses.asdict(params), "n_frames_used": n,
              "noise": _noise_entry(noise, n_noise, blurs)}
    starts = [a for a, _ in windows]
    log.info("%s: %s background from %d sampled frames (%d image(s))", video_path,
             params.method, len(wanted), len(images))
    return BackgroundModel(params.method, record, np.stack(images), np.asarray(starts, np.int64))


#: At most this many of an instrument's background images are kept (evenly spread).
MAX_INSTRUMENT_IMAGES = 100


def instrument_background(video_path: Path, params: BackgroundParams, n: int
                          ) -> BackgroundModel | None:
    """The background the instrument recorded (``.rtdc``: ``events/image_bg``), or None.

    Image ``k`` is the instrument's background of frame ``start_frames[k]``, for up to
    :data:`MAX_INSTRUMENT_IMAGES` frames evenly spread over the ``n`` readable ones; the
    noise histogram compares up to :data:`NOISE_FRAMES` of those frames with their own
    background, as for the other methods.
    """
    with open_video(video_path) as reader:
        if not hasattr(reader, "instrument_background"):
            return None
        starts = np.unique(np.linspace(0, n - 1, min(n, MAX_INSTRUMENT_IMAGES)).astype(np.int64))
        images = []
        for start in starts:
            image = reader.instrument_background(int(start), int(start) + 1)
            if image is None:
                return None
            images.append(smooth(image[0], params.blur_sigma) if params.blur_sigma > 0
                          else image[0])
        checked = set(int(s) for s in starts[:: max(1, len(starts) // NOISE_FRAMES)])
        frames = {index: smooth(frame, params.blur_sigma).copy()
                  for index, frame in reader.frames(0, n, only=checked)}
    blurs = [b for b in CANDIDATE_BLURS if b > params.blur_sigma]
    noise = np.zeros((1 + len(blurs), N_BINS), np.int64)
    for k, start in enumerate(starts):
        if int(start) in frames:
            noise += _noise_histograms([frames[int(start)]], images[k], params.blur_sigma,
                                       blurs)
    record = {**dataclasses.asdict(params), "n_frames_used": n, "instrument": True,
              "noise": _noise_entry(noise, len(frames), blurs)}
    log.info("%s: the instrument's background (%d image(s))", video_path, len(images))
    return BackgroundModel(params.method, record, np.stack(images).astype(np.float32), starts)


def _noise_entry(noise: np.ndarray, n_frames: int, blurs: list[float]) -> dict:
    """The background record's ``noise``: histograms at its blur and at the candidates."""
    return {**noise_record(noise[0], n_frames),
            "blurred": [{"blur_sigma": b, **noise_record(noise[1 + k], n_frames)}
                        for k, b in enumerate(blurs)]}


def _noise_histograms(frames: list[np.ndarray], image: np.ndarray, base_blur: float,
                      blurs: list[float]) -> np.ndarray:
    """Difference histograms of sample frames at the background's blur and at ``blurs``."""
    rows = [difference_histogram(frames, image)]
    for blur in blurs:
        extra = added_blur(base_blur, blur)
        rows.append(difference_histogram([smooth(f, extra) for f in frames],
                                         smooth_float(image, extra)))
    return np.stack(rows)


def smooth_float(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a float background image, like :func:`rbcflow.detect.smooth`.

    The portable blur, not ``cv2.GaussianBlur``: OpenCV's SIMD paths round float32
    differently from one CPU to the next, and the noise histograms measured on this
    image are stored in the background file, whose bytes DVC compares across machines.
    """
    if sigma <= 0:
        return image
    return gaussian_blur(np.asarray(image, np.float32), sigma, "replicate")


def save_background(model: BackgroundModel, path: str | Path) -> None:
    """Write a model as ``.npz`` (atomically): images, start_frames, params (JSON string).

    The archive's members carry a fixed date (numpy's ``savez`` stamps the time of
    writing), so the same model always gives the same bytes and the same DVC hash.
    """
    params = json.dumps({"method": model.method, **model.params}, sort_keys=True)
    arrays = {"images": model.images.astype(np.float32),
              "start_frames": model.start_frames.astype(np.int64),
              "params": np.array([params])}
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            for name, array in arrays.items():
                member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with archive.open(member, "w", force_zip64=True) as handle:
                    np.lib.format.write_array(handle, np.asanyarray(array),
                                              allow_pickle=False)


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
