"""A recording's noise and cell contrast, measured once, and the detection settings they imply.

``detect.threshold: auto`` and ``detect.polarity: auto`` (the defaults) are set per
recording from what its frames look like, so a noisier camera or another illumination
needs no retuning:

- while the background is built, the difference of some of its sample frames to the
  finished background image is collected as a histogram (:func:`difference_histogram`,
  quarter grey-level bins; no frame is read twice);
- the noise is a robust standard deviation of that histogram (:func:`noise_sigma`): a
  sigma-clipped estimate, because the cells crossing the sampled frames are outliers
  a plain standard deviation would count as noise, and a median absolute deviation is
  too coarse on whole grey levels;
- the threshold is ``threshold_k`` times the noise, never below ``threshold_min``;
- the polarity is the sign of the contrast of the pixels far beyond the threshold
  (:func:`contrast_shares`): mostly dark cells are segmented ``dark``, mostly bright ones
  ``bright``, cells with a dark rim and a bright centre or halo ``absolute``.

The functions here are pure (arrays and histograms in, numbers out); the background
builder collects the histogram and :func:`rbcflow.params.DetectParams.calibrated` applies
the result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

#: Histogram bins per grey level, and the span of differences binned; differences beyond
#: it fall in the two end bins (a cell is never part of the noise estimate anyway).
BINS_PER_LEVEL = 4
SPAN_LEVELS = 128
N_BINS = 2 * SPAN_LEVELS * BINS_PER_LEVEL + 1
#: Sample frames of the background whose difference is histogrammed: enough pixels
#: (millions) for a stable estimate, few enough to cost next to nothing.
NOISE_FRAMES = 20
#: Fewer strong-contrast pixels than this over the sampled frames: too few cells were
#: seen to tell their contrast, and the polarity stays ``absolute``.
MIN_CONTRAST_PIXELS = 200
_CLIP_SIGMAS = 3.0
# standard deviation of a unit normal truncated at +-3: a 3-sigma clipped estimate is
# this much too small
_CLIPPED_SD = 0.98657


def bin_centres() -> np.ndarray:
    """Grey-level difference at the centre of each histogram bin."""
    return (np.arange(N_BINS) - N_BINS // 2) / BINS_PER_LEVEL


def difference_histogram(frames: Iterable[np.ndarray], background: np.ndarray) -> np.ndarray:
    """Counts of ``frame - background`` over the frames, in quarter grey-level bins (int64)."""
    counts = np.zeros(N_BINS, np.int64)
    background = np.asarray(background, np.float32)
    for frame in frames:
        diff = np.asarray(frame, np.float32) - background
        index = np.rint(diff * BINS_PER_LEVEL).astype(np.int64) + N_BINS // 2
        np.clip(index, 0, N_BINS - 1, out=index)
        counts += np.bincount(index.ravel(), minlength=N_BINS)
    return counts


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    cumulative = np.cumsum(weights)
    return float(values[np.searchsorted(cumulative, q * cumulative[-1])])


def noise_sigma(counts: Sequence[int]) -> float:
    """Robust standard deviation (grey levels) of a difference histogram.

    Starts from the median absolute deviation (x 1.4826, at least one grey level), then
    re-estimates the standard deviation of the bins within 3 sigma of the centre until it
    settles, corrected for the clipping; cells, far out in the tails, do not count.
    """
    counts = np.asarray(counts, np.float64)
    if counts.shape != (N_BINS,) or counts.sum() <= 0:
        raise ValueError("noise_sigma needs a non-empty histogram of difference_histogram")
    centres = bin_centres()
    centre = _weighted_quantile(centres, counts, 0.5)
    deviation = np.abs(centres - centre)
    order = np.argsort(deviation, kind="stable")
    mad = _weighted_quantile(deviation[order], counts[order], 0.5)
    # whole grey levels can give a MAD of 0 (most differences 0): start no lower than one
    # level, so the first clip keeps the +-1..3 levels such noise spreads over
    sigma = max(1.4826 * mad, 1.0)
    for _ in range(20):
        inside = deviation <= _CLIP_SIGMAS * sigma
        weights = counts * inside
        mean = float(np.average(centres, weights=weights))
        variance = float(np.average((centres - mean) ** 2, weights=weights))
        # the quantisation of the bins adds 1/12 bin^2 to the variance
        variance = max(variance - 1.0 / (12 * BINS_PER_LEVEL**2), 0.0)
        updated = max(np.sqrt(variance) / _CLIPPED_SD, 1.0 / BINS_PER_LEVEL)
        if abs(updated - sigma) < 1e-4:
            break
        sigma, centre = updated, mean
        deviation = np.abs(centres - centre)
    return float(updated)


def contrast_shares(counts: Sequence[int], cut: float) -> tuple[float, float, int]:
    """Shares of pixels darker and brighter than ``-cut`` / ``+cut``, and their count."""
    counts = np.asarray(counts, np.int64)
    centres = bin_centres()
    dark = int(counts[centres < -cut].sum())
    bright = int(counts[centres > cut].sum())
    total = dark + bright
    if total == 0:
        return 0.0, 0.0, 0
    return dark / total, bright / total, total


def choose_threshold(sigma: float, k: float, minimum: float) -> float:
    """``k`` sigma, at least ``minimum``, rounded to a hundredth of a grey level."""
    return round(max(k * sigma, minimum), 2)


def choose_polarity(counts: Sequence[int], threshold: float, share: float) -> tuple[str, dict]:
    """The polarity the cells' contrast implies, and the figures it was chosen from.

    Pixels more than twice the threshold off the background are the cells' strong
    contrast (noise at 3 sigma reaches them with odds of about one in 10^9): ``dark`` when
    at least ``share`` of them are darker, ``bright`` when that share is brighter,
    ``absolute`` otherwise and when fewer than :data:`MIN_CONTRAST_PIXELS` were seen.
    """
    dark, bright, n = contrast_shares(counts, 2.0 * threshold)
    figures = {"dark_share": round(dark, 4), "bright_share": round(bright, 4),
               "contrast_pixels": n}
    if n < MIN_CONTRAST_PIXELS:
        return "absolute", figures
    if dark >= share:
        return "dark", figures
    if bright >= share:
        return "bright", figures
    return "absolute", figures


#: Blurs (pixels) the background builder also measures the noise at, for ``blur_sigma:
#: auto``; a red cell is 20-40 px across at the magnifications used, and keeps its shape.
CANDIDATE_BLURS = (1.0, 2.0)


def added_blur(base: float, total: float) -> float:
    """The Gaussian blur that, after one of ``base``, gives ``total`` (blurs add in squares)."""
    return float(np.sqrt(max(total**2 - base**2, 0.0)))


def choose_blur(noise: Mapping, base: float, noise_limit: float
                ) -> tuple[float, np.ndarray, float]:
    """The blur for a recording: ``base`` unless its noise exceeds ``noise_limit``.

    Then the smallest of :data:`CANDIDATE_BLURS` (above ``base``) whose measured noise is
    below the limit, or the largest. Returns the blur, its histogram and its noise.
    """
    counts = histogram_of(noise)
    sigma = noise_sigma(counts)
    if sigma <= noise_limit:
        return base, counts, sigma
    choice = (base, counts, sigma)
    for record in noise.get("blurred", []):
        counts = histogram_of(record)
        choice = (float(record["blur_sigma"]), counts, noise_sigma(counts))
        if choice[2] <= noise_limit:
            break
    return choice


def noise_record(counts: Sequence[int], n_frames: int) -> dict:
    """What the background file stores: the histogram (trimmed to its non-zero span)."""
    counts = np.asarray(counts, np.int64)
    nonzero = np.flatnonzero(counts)
    first = int(nonzero[0]) if len(nonzero) else N_BINS // 2
    last = int(nonzero[-1]) if len(nonzero) else N_BINS // 2
    return {"bins_per_level": BINS_PER_LEVEL, "first_bin": first - N_BINS // 2,
            "counts": [int(c) for c in counts[first:last + 1]], "n_frames": int(n_frames)}


def histogram_of(record: Mapping) -> np.ndarray:
    """The full histogram back from :func:`noise_record`."""
    if int(record.get("bins_per_level", 0)) != BINS_PER_LEVEL:
        raise ValueError(f"noise histogram with {record.get('bins_per_level')} bins per "
                         f"grey level; expected {BINS_PER_LEVEL}")
    counts = np.zeros(N_BINS, np.int64)
    start = int(record["first_bin"]) + N_BINS // 2
    values = np.asarray(record["counts"], np.int64)
    counts[start:start + len(values)] = values
    return counts
