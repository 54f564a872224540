"""Blob detection: foreground mask against a background, blobs and per-blob features.

Everything here works on one grey ``uint8`` frame at a time and is built for speed (the
per-frame chain must reach thousands of frames per second on one core): the foreground is
one ``cv2.inRange`` against a precomputed tolerance band around the background, blobs are
the external contours of the mask (filling a contour fills the blob's holes, such as a red
cell's lighter centre), and features are computed on each blob's bounding box only.

Conventions: ``x`` to the right, ``y`` down, pixels; ``orientation_deg`` is the angle of
the blob's long axis from +x towards +y, in (-90, 90]; ``deformation`` is
``1 - circularity`` with ``circularity = 2 * sqrt(pi * A) / P`` of the blob's convex hull
(area ``A``, perimeter ``P``), as real-time deformability cytometry (RT-DC) defines it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np

from rbcflow.params import POLARITIES, DetectParams

#: Features of one detection, in the order of :data:`DETECTION_DTYPE`'s fields.
DETECTION_COLUMNS = (
    "x", "y", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "area_px", "major_px",
    "minor_px", "orientation_deg", "deformation", "brightness",
)
#: One detection: a record of float64 fields named by :data:`DETECTION_COLUMNS`. Frames'
#: detections cross module boundaries as 1-D arrays of this dtype, read by field name.
DETECTION_DTYPE = np.dtype([(name, np.float64) for name in DETECTION_COLUMNS])
_N_COLUMNS = len(DETECTION_COLUMNS)
#: Position of each field in the lists :func:`detection_rows` returns.
FIELD_INDEX = {name: k for k, name in enumerate(DETECTION_COLUMNS)}


def detection_rows(detections: np.ndarray) -> list[list[float]]:
    """Detections as plain lists of floats, fields in ``DETECTION_COLUMNS`` order (index them
    with :data:`FIELD_INDEX`): for per-detection Python loops, where selecting fields of a
    structured array costs more than the loop itself."""
    table = np.ascontiguousarray(detections).view(np.float64)
    return table.reshape(len(detections), _N_COLUMNS).tolist()


def detections_from_rows(rows: list[list[float]]) -> np.ndarray:
    """Detections (:data:`DETECTION_DTYPE`) from feature lists in column order."""
    table = np.array(rows, dtype=np.float64).reshape(len(rows), _N_COLUMNS)
    return table.view(DETECTION_DTYPE).reshape(len(rows))


def no_detections() -> np.ndarray:
    """An empty detection array."""
    return np.zeros(0, dtype=DETECTION_DTYPE)


class BlobMask(NamedTuple):
    """One blob's filled mask (uint8 0/1) on its bounding box at (``x``, ``y``)."""

    x: int
    y: int
    mask: np.ndarray


class Blobs(NamedTuple):
    """A frame's blobs: their features and their filled masks, aligned."""

    detections: np.ndarray  # DETECTION_DTYPE, one record per blob
    masks: list[BlobMask]

    def __len__(self) -> int:
        return len(self.masks)

    def mask_image(self, shape: tuple[int, int]) -> np.ndarray:
        """All blobs painted into one uint8 0/1 image of ``shape`` (holes filled)."""
        out = np.zeros(shape, np.uint8)
        for blob in self.masks:
            h, w = blob.mask.shape
            out[blob.y:blob.y + h, blob.x:blob.x + w] |= blob.mask
        return out


class Band(NamedTuple):
    """Per-pixel grey levels ``lower <= f <= upper`` that count as background.

    ``span`` is ``upper - lower`` when ``lower <= upper`` everywhere (else None): then
    ``lower <= f <= upper`` exactly when ``(f - lower) mod 256 <= span``, one wrapping
    subtraction and one comparison that yields the foreground without an inversion.
    """

    lower: np.ndarray
    upper: np.ndarray
    span: np.ndarray | None = None
    #: For a one-sided band (polarity ``dark`` or ``bright``): the bound a frame is
    #: compared with and the ``cv2.CMP_*`` that marks the foreground, ``f < lower``
    #: (dark) or ``f > upper`` (bright): one pass over the frame, no subtraction.
    one_sided: tuple[np.ndarray, int] | None = None


def smooth(frame: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a uint8 frame (returned unchanged when ``sigma`` is 0)."""
    if sigma <= 0:
        return frame
    return cv2.GaussianBlur(frame, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)


def difference(frame: np.ndarray, background: np.ndarray, polarity: str) -> np.ndarray:
    """Foreground evidence as float32: ``b - f`` (dark), ``f - b`` (bright) or ``|f - b|``.

    A pixel is foreground when this exceeds the threshold, whatever the polarity.
    """
    if polarity not in POLARITIES:
        raise ValueError(f"polarity must be one of {POLARITIES}, not {polarity!r}")
    diff = frame.astype(np.float32) - np.asarray(background, dtype=np.float32)
    if polarity == "dark":
        return -diff
    if polarity == "bright":
        return diff
    return np.abs(diff)


def background_band(background: np.ndarray, params: DetectParams) -> Band:
    """Precompute the integer tolerance band so that one ``cv2.inRange`` masks a frame.

    For integer grey levels ``f`` and a real background ``b``: ``b - f > T`` exactly when
    ``f <= ceil(b - T) - 1``, and ``f - b > T`` exactly when ``f >= floor(b + T) + 1``;
    so the background band is ``[ceil(b - T), floor(b + T)]`` clipped to 0..255, with the
    side the polarity ignores opened up. For backgrounds within 0..255 (grey levels) the
    result equals thresholding :func:`difference` but costs one pass over the frame
    instead of four.
    """
    if params.threshold is None or params.polarity not in POLARITIES:
        raise ValueError("detect.threshold/polarity are auto: calibrate the parameters on "
                         "the recording's background first (DetectParams.calibrated)")
    t = float(params.threshold)
    if isinstance(background, np.ndarray) and background.dtype == np.uint8:
        # Integer background: the band is b -+ floor(T), saturating (a fast path).
        step = min(int(math.floor(t)), 255)
        lower = cv2.subtract(background, step)
        upper = cv2.add(background, step)
    else:
        b = np.clip(np.asarray(background, dtype=np.float64), 0, 255)
        lower = np.clip(np.ceil(b - t), 0, 255).astype(np.uint8)
        upper = np.clip(np.floor(b + t), 0, 255).astype(np.uint8)
    if params.polarity == "dark":
        upper[:] = 255
    elif params.polarity == "bright":
        lower[:] = 0
    # an empty band (possible for thresholds below 0.5) has no span: inRange handles it
    span = cv2.subtract(upper, lower) if bool(np.all(lower <= upper)) else None
    one_sided = {"dark": (lower, cv2.CMP_LT), "bright": (upper, cv2.CMP_GT)}.get(params.polarity)
    return Band(lower, upper, span, one_sided)


def band_mask(frame: np.ndarray, band: Band, blur_sigma: float = 0.0) -> np.ndarray:
    """Raw foreground mask (uint8 0/255, holes not filled) of a frame against a band."""
    frame = smooth(frame, blur_sigma)
    if band.one_sided is not None:
        bound, op = band.one_sided
        return cv2.compare(frame, bound, op)
    if band.span is None:
        return cv2.bitwise_not(cv2.inRange(frame, band.lower, band.upper))
    offset = np.subtract(frame, band.lower)  # uint8: wraps modulo 256
    return cv2.compare(offset, band.span, cv2.CMP_GT)


class _Fragment(NamedTuple):
    """A blob in the making: its box, outline, filled mask, pixel count and convex hull."""

    x: int
    y: int
    w: int
    h: int
    points: np.ndarray
    mask: np.ndarray
    area: int
    hull: np.ndarray
    hull_area: float


def _fragment_of(x: int, y: int, points: np.ndarray, mask: np.ndarray, area: int
                 ) -> _Fragment:
    # every fragment that survives needs its hull (roundness, solidity, deformation):
    # computed once here instead of looked up on each use
    hull = cv2.convexHull(points)
    return _Fragment(x, y, mask.shape[1], mask.shape[0], points, mask, area, hull,
                     cv2.contourArea(hull))


def _fragment(contour: np.ndarray, rect: tuple[int, int, int, int], floor: int = 0
              ) -> _Fragment | None:
    """The fragment of one external contour; None when it fills fewer than ``floor`` px."""
    x, y, w, h = rect
    mask = np.zeros((h, w), np.uint8)
    # Filling the external contour fills every hole of the blob at once.
    cv2.drawContours(mask, [contour], -1, 1, thickness=-1, offset=(-x, -y))
    area = cv2.countNonZero(mask)
    if area < floor:
        return None
    return _fragment_of(x, y, contour, mask, area)


def _circularity(f: _Fragment) -> float:
    perimeter = cv2.arcLength(f.hull, True)
    if perimeter <= 0:
        return 0.0
    return 2.0 * math.sqrt(math.pi * f.hull_area) / perimeter


def _features(f: _Fragment, frame: np.ndarray) -> list[float]:
    moments = cv2.moments(f.mask, binaryImage=True)
    area = moments["m00"]
    # Second central moments give the ellipse with the same inertia; for a filled disc
    # 4 * sqrt(variance along an axis) is its diameter.
    mu20, mu02, mu11 = moments["mu20"] / area, moments["mu02"] / area, moments["mu11"] / area
    half_sum, root = (mu20 + mu02) / 2.0, math.hypot((mu20 - mu02) / 2.0, mu11)
    orientation = math.degrees(0.5 * math.atan2(2.0 * mu11, mu20 - mu02))
    if orientation <= -90.0:
        orientation += 180.0
    brightness = cv2.mean(frame[f.y:f.y + f.h, f.x:f.x + f.w], mask=f.mask)[0]
    deformation = 1.0 - _circularity(f) if len(f.points) >= 3 else 0.0
    return [f.x + moments["m10"] / area, f.y + moments["m01"] / area, f.x, f.y, f.w, f.h,
            area, 4.0 * math.sqrt(max(half_sum + root, 0.0)),
            4.0 * math.sqrt(max(half_sum - root, 0.0)), orientation, deformation, brightness]


def _boxes_touch(a: _Fragment, b: _Fragment, gap: int) -> bool:
    # At most ``gap`` empty pixels between the boxes in x and in y.
    return (a.x - gap <= b.x + b.w and b.x - gap <= a.x + a.w
            and a.y - gap <= b.y + b.h and b.y - gap <= a.y + a.h)


def _merge(group: list[_Fragment], gap: int) -> _Fragment:
    x0 = min(f.x for f in group)
    y0 = min(f.y for f in group)
    x1 = max(f.x + f.w for f in group)
    y1 = max(f.y + f.h for f in group)
    pad = gap + 1
    canvas = np.zeros((y1 - y0 + 2 * pad, x1 - x0 + 2 * pad), np.uint8)
    for f in group:
        ox, oy = f.x - x0 + pad, f.y - y0 + pad
        canvas[oy:oy + f.h, ox:ox + f.w] |= f.mask
    # Bridge the gap between the pieces (the padding equals the kernel's radius, so
    # the closing stays inside the union's box), then refill: the merged outline encloses the
    # cell's centre that neither piece covered.
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * gap + 3, 2 * gap + 3))
    closed = cv2.morphologyEx(canvas, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_CONSTANT,
                              borderValue=0)
    contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(closed, contours, -1, 1, thickness=-1)
    ys, xs = np.nonzero(closed)
    bx, by = int(xs.min()), int(ys.min())
    mask = np.ascontiguousarray(closed[by:ys.max() + 1, bx:xs.max() + 1])
    points = np.concatenate(contours).reshape(-1, 1, 2)
    offset = np.array([[[x0 - pad, y0 - pad]]], dtype=points.dtype)
    return _fragment_of(x0 - pad + bx, y0 - pad + by, points + offset, mask,
                        cv2.countNonZero(mask))


def _rejoin(fragments: list[_Fragment], params: DetectParams) -> list[_Fragment]:
    gap = params.rejoin_max_gap_px
    # roundness only matters for fragments whose boxes touch: computed when first asked
    not_round: list[bool | None] = [None] * len(fragments)

    def is_not_round(i: int) -> bool:
        if not_round[i] is None:
            not_round[i] = _circularity(fragments[i]) < params.rejoin_max_circularity
        return not_round[i]

    parent = list(range(len(fragments)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(fragments)):
        for j in range(i + 1, len(fragments)):
            if (_boxes_touch(fragments[i], fragments[j], gap)
                    and (is_not_round(i) or is_not_round(j))):
                parent[root(i)] = root(j)
    groups: dict[int, list[_Fragment]] = {}
    for i, fragment in enumerate(fragments):
        groups.setdefault(root(i), []).append(fragment)
    return [g[0] if len(g) == 1 else _merge(g, gap) for g in groups.values()]


def _solidity(f: _Fragment) -> float:
    # both areas from outlines: a pixel count exceeds its outline's area by about half
    # the perimeter, which would make small thin shapes look solid
    return cv2.contourArea(f.points) / f.hull_area if f.hull_area > 0 else 1.0


def _pixel_solidity(f: _Fragment) -> float:
    # the cheap screen: pixel count over hull area (above 1 for most single cells, whose
    # pixel count exceeds their outline's area by about half the perimeter)
    return f.area / f.hull_area if f.hull_area > 0 else 1.0


def _part(f: _Fragment, part: np.ndarray) -> _Fragment | None:
    """The fragment of ``f`` covered by the 0/1 mask ``part`` (on f's box), largest piece."""
    contours, _ = cv2.findContours(part, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    contour = max(contours, key=cv2.contourArea)
    x, y, w, h = cv2.boundingRect(contour)
    mask = np.zeros((h, w), np.uint8)
    cv2.drawContours(mask, [contour], -1, 1, thickness=-1, offset=(-x, -y))
    offset = np.array([[[f.x, f.y]]], dtype=contour.dtype)
    return _fragment_of(f.x + x, f.y + y, contour + offset, mask, cv2.countNonZero(mask))


def _split(f: _Fragment, params: DetectParams) -> list[_Fragment]:
    """Cut a blob of two touching cells at its waist; ``[f]`` when it has none.

    The blob's width profile along its long axis (pixels per unit of length) is one hump
    for a cell, however deformed, and two humps with a waist between them for two cells
    touching end to end or side by side. The cut is the line across the long axis at the
    waist.
    """
    m = cv2.moments(f.mask, binaryImage=True)
    mu20, mu02, mu11 = m["mu20"], m["mu02"], m["mu11"]
    half_sum, root = (mu20 + mu02) / 2.0, math.hypot((mu20 - mu02) / 2.0, mu11)
    # two cells side by side or end to end make a blob at least ~1.7 times as long as
    # wide (second moments); a single cell, however ragged its outline, is rounder
    # unless stretched, and a stretched cell is convex
    if (half_sum - root <= 0
            or (half_sum + root) / (half_sum - root) < params.split_min_elongation**2):
        return [f]
    theta = 0.5 * math.atan2(2.0 * mu11, mu20 - mu02)
    yi, xi = np.nonzero(f.mask)
    along = ((xi - m["m10"] / m["m00"]) * math.cos(theta)
             + (yi - m["m01"] / m["m00"]) * math.sin(theta))
    lo = along.min()
    bins = (along - lo).astype(np.int64)
    profile = np.bincount(bins).astype(np.float64)
    if profile.size < 8:
        return [f]
    # a running mean: ragged outlines and spicules do not make a waist
    window = params.split_profile_smoothing_px
    smooth_profile = np.convolve(profile, np.ones(window) / window, mode="same")
    n = profile.size
    inner = slice(n // 5, n - n // 5)  # a waist lies between two cells, not at an end
    k = int(np.argmin(smooth_profile[inner])) + n // 5
    if k < 1 or k >= n - 1:
        return [f]
    i, j = int(np.argmax(smooth_profile[:k])), k + 1 + int(np.argmax(smooth_profile[k + 1:]))
    if smooth_profile[k] > (1.0 - params.split_min_waist) * min(smooth_profile[i],
                                                                 smooth_profile[j]):
        return [f]
    # two cells' humps lie about a cell apart (at least ~ the blob's width); a notch in
    # one cell's outline (a broken rim) makes a waist between humps much closer together
    if j - i < params.split_hump_separation * smooth_profile.max():
        return [f]
    first = bins < k
    part_a = np.zeros_like(f.mask)
    part_b = np.zeros_like(f.mask)
    part_a[yi[first], xi[first]] = 1
    part_b[yi[~first], xi[~first]] = 1
    parts = [_part(f, part_a), _part(f, part_b)]
    # each half must itself look like a cell (nearly convex): the halves of a thin arc
    # (a cell's broken rim) or of a cell with a dent are not
    if any(p is None or p.area < params.min_area_px
           or _solidity(p) < params.split_min_part_solidity for p in parts):
        return [f]
    return parts


def _split_touching(fragments: list[_Fragment], params: DetectParams,
                    shape: tuple[int, ...]) -> list[_Fragment]:
    height, width = shape[:2]
    out = []
    for f in fragments:
        # cheap tests first: too small to be two cells, cut by the frame edge (a partial
        # cell's outline says nothing about a waist), or convex
        if (f.area >= 2 * params.min_area_px and f.x > 0 and f.y > 0
                and f.x + f.w < width and f.y + f.h < height
                and _pixel_solidity(f) < params.split_max_solidity):
            parts = _split(f, params)
            # three cells in a row: each half may hold a waist of its own
            out.extend(q for part in parts for q in (_split(part, params) if len(parts) > 1
                                                     and part.area >= 2 * params.min_area_px
                                                     else [part]))
        else:
            out.append(f)
    return out


#: 3 x 3 neighbourhood without its centre: dilating by it marks pixels with a neighbour.
_RING = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], np.uint8)


def drop_lone_pixels(mask: np.ndarray) -> np.ndarray:
    """Copy of a mask without its lone pixels (nonzero, none of the 8 neighbours nonzero).

    Every other pixel keeps a nonzero value (not always its own: the minimum with its
    largest neighbour), so the outlines of all larger blobs are unchanged.
    """
    return cv2.min(mask, cv2.dilate(mask, _RING, borderType=cv2.BORDER_CONSTANT,
                                    borderValue=0))


def blobs_from_mask(mask: np.ndarray, frame: np.ndarray, params: DetectParams) -> Blobs:
    """Blobs of a raw foreground mask: fill holes, re-join split cells, drop small ones.

    Parameters
    ----------
    mask : uint8 HxW, nonzero = foreground (e.g. from :func:`band_mask` or MOG2).
    frame : the uint8 frame the mask belongs to (for the brightness feature).
    params : DetectParams

    Returns
    -------
    The blobs in order of their first contour: features and filled masks.
    """
    if params.close_px > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (params.close_px, params.close_px))
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    # Fragments of a split cell may each be smaller than a cell; keep them until re-joined.
    floor = max(1, params.min_area_px // 4) if params.rejoin_split_cells else params.min_area_px
    if floor > 1:
        # Lone pixels (pixel noise, nine in ten contours of a frame) would be dropped anyway;
        # clearing them first is one cheap pass and spares tracing each as a contour.
        mask = drop_lone_pixels(mask)
    # tracing costs about as much on an empty frame (common between cells) as on a busy one
    contours = (cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
                if cv2.hasNonZero(mask) else ())
    # w * h of the box bounds the pixel count: a cheap rejection of most noise outlines
    fragments = [f for c in contours if (r := cv2.boundingRect(c))[2] * r[3] >= floor
                 and (f := _fragment(c, r, floor)) is not None]
    if params.rejoin_split_cells and len(fragments) > 1:
        fragments = _rejoin(fragments, params)
    if params.split_touching and fragments:
        fragments = _split_touching(fragments, params, mask.shape)
    kept = [f for f in fragments if f.area >= params.min_area_px]
    return Blobs(detections_from_rows([_features(f, frame) for f in kept]),
                 [BlobMask(f.x, f.y, f.mask) for f in kept])


def detect_blobs(frame: np.ndarray, background: np.ndarray, params: DetectParams) -> Blobs:
    """Blobs of one frame against a background image (any real dtype, e.g. float32).

    The same rule as the pipeline's (``rbcflow.segment``) for a single image; the
    frame is blurred by ``params.blur_sigma`` first.
    """
    _check_shapes(frame, background)
    raw = band_mask(frame, background_band(background, params), params.blur_sigma)
    return blobs_from_mask(raw, frame, params)


def select_blob(blobs: Blobs, x: float, y: float) -> int | None:
    """Index of the blob whose mask contains (x, y), else of the nearest centroid."""
    if not blobs.masks:
        return None
    xi, yi = int(round(x)), int(round(y))
    for k, blob in enumerate(blobs.masks):
        h, w = blob.mask.shape
        if blob.x <= xi < blob.x + w and blob.y <= yi < blob.y + h:
            if blob.mask[yi - blob.y, xi - blob.x]:
                return k
    distances = np.hypot(blobs.detections["x"] - x, blobs.detections["y"] - y)
    return int(np.argmin(distances))


def _check_shapes(frame: np.ndarray, background: np.ndarray) -> None:
    if frame.dtype != np.uint8 or frame.ndim != 2:
        raise ValueError(f"frame must be a 2-D uint8 array, not {frame.dtype} {frame.shape}")
    if np.shape(background) != frame.shape:
        raise ValueError(f"background shape {np.shape(background)} != frame {frame.shape}")
