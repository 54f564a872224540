"""The channel's centre line, from where cells flow (or from the background image).

Its use: each track's mean lateral distance from the centre line (a confounder check of
seed 000, Fig. 5: where a cell flows should not tell the classes apart).
"""

from __future__ import annotations

import math
import warnings

import numpy as np


def estimate_centerline(
    table,
    frame_size: tuple[int, int],
    flow_direction: str = "+x",
    bin_px: int = 8,
    background: np.ndarray | None = None,
    min_per_bin: int = 20,
) -> np.ndarray:
    """Lateral position of the channel centre line at every position along the flow.

    Parameters
    ----------
    table : detections (``x``, ``y``, ``bbox_*``): ``rbcflow.columns.Columns`` or a
        DataFrame.
    frame_size : (width, height).
    flow_direction : the flow axis is x for ``+x``/``-x``/``any``, y for ``+y``/``-y``.
    bin_px : width of the bins along the flow.
    background : background image, used where detections are too few (a triggered
        recording holds a single cell, whose own path says nothing about the channel).
    min_per_bin : detections a bin needs for the data estimate.

    Returns
    -------
    (L,) float64 array: centre-line lateral coordinate for each pixel along the flow.

    Notes
    -----
    From detections: in each bin the midpoint between the 2nd percentile of box tops and
    the 98th percentile of box bottoms (the lateral extent the cells explore; the
    percentiles keep a stray blob from moving it). From the background: the channel
    interior is brighter and smoother than the walls, so per column the midpoint of the
    longest run of rows whose vertical gradient is small; this is a fallback.
    """
    axis = 1 if flow_direction in ("+y", "-y") else 0
    length = frame_size[1] if axis == 1 else frame_size[0]
    lateral = frame_size[0] if axis == 1 else frame_size[1]
    along_col, lat_col, lat_box, lat_size = (
        ("y", "x", "bbox_x", "bbox_w") if axis == 1 else ("x", "y", "bbox_y", "bbox_h")
    )
    n_bins = max(1, math.ceil(length / bin_px))
    centres = np.full(n_bins, np.nan)
    if len(table):
        along = np.asarray(table[along_col], dtype=np.float64)
        lo = np.asarray(table[lat_box], dtype=np.float64)
        hi = lo + np.asarray(table[lat_size], dtype=np.float64)
        b = np.clip((along // bin_px).astype(np.int64), 0, n_bins - 1)
        count = np.bincount(b, minlength=n_bins)
        full = count >= min_per_bin
        if full.any():
            centres[full] = 0.5 * (_binned_percentile(lo, b, count, 2.0)[full]
                                   + _binned_percentile(hi, b, count, 98.0)[full])
    if np.isnan(centres).all() and background is not None:
        centres = _centerline_from_background(background, axis, bin_px, n_bins)
    if np.isnan(centres).all():
        centres[:] = lateral / 2.0
    good = ~np.isnan(centres)
    bin_mid = (np.arange(n_bins) + 0.5) * bin_px
    return np.interp(np.arange(length, dtype=np.float64), bin_mid[good], centres[good])


def _binned_percentile(values: np.ndarray, bins: np.ndarray, count: np.ndarray, q: float
                       ) -> np.ndarray:
    """``np.percentile(values[bins == k], q)`` for every bin k at once (NaN when empty).

    The same arithmetic as numpy's default (linear) method, bin by bin: virtual index
    ``(n - 1) * q / 100`` between two order statistics, interpolated the way numpy's
    ``_lerp`` does (from the upper neighbour when the weight is 0.5 or more), so the
    results are bit for bit those of one ``np.percentile`` call per bin.
    """
    out = np.full(count.size, np.nan)
    used = count > 0
    if not used.any():
        return out
    ordered = values[np.lexsort((values, bins))]
    start = np.concatenate([[0], np.cumsum(count)[:-1]])[used]
    n = count[used]
    virtual = (n - 1) * (q / 100.0)
    below = np.floor(virtual)
    gamma = virtual - below
    below = below.astype(np.int64)
    above = np.minimum(below + 1, n - 1)
    a, c = ordered[start + below], ordered[start + above]
    diff = c - a
    result = a + diff * gamma
    upper = gamma >= 0.5
    result[upper] = (c - diff * (1 - gamma))[upper]
    out[used] = result
    return out


def _centerline_from_background(image: np.ndarray, axis: int, bin_px: int, n_bins: int
                                ) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    if axis == 1:
        img = img.T
    grad = np.abs(np.diff(img, axis=0))
    centres = np.full(n_bins, np.nan)
    n_rows = grad.shape[0]
    if n_rows == 0:
        return centres
    # one column of mean gradients per bin (a bin past the image's end is all NaN and
    # finds no channel)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean of an empty bin
        cols = np.stack([grad[:, k * bin_px:(k + 1) * bin_px].mean(axis=1)
                         for k in range(n_bins)], axis=1)
        # rows with a significant lateral gradient are walls; the channel is the longest
        # quiet run between them, preferring runs that do not touch the image edge
        med = np.median(cols, axis=0)
        mad = 1.4826 * np.median(np.abs(cols - med), axis=0) + 1e-9
        quiet = cols < med + 6 * mad
    edges = np.diff(np.pad(quiet, ((1, 1), (0, 0))).astype(np.int8), axis=0)
    for k in range(n_bins):
        starts = np.flatnonzero(edges[:, k] == 1)  # a run is rows [start, stop)
        if not starts.size:
            continue
        stops = np.flatnonzero(edges[:, k] == -1)
        inner = (starts > 0) & (stops < n_rows)
        if inner.any():
            starts, stops = starts[inner], stops[inner]
        longest = int(np.argmax(stops - starts))  # the first of the longest
        centres[k] = 0.5 * (starts[longest] + stops[longest])
    return centres
