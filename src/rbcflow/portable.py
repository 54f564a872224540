"""Elementwise exp, cos and arctan2 that give the same bits on every x86-64 (or other) CPU.

NumPy picks the loops of its transcendental ufuncs at run time from the CPU's features
(AVX2, AVX-512, SVML), and their results differ in the last bits between those loops, in
float32 and float64 alike; OpenCV's Gaussian blur likewise changes with its SIMD path. A
bit of difference becomes a grey level after rounding, so the simulator rendered other
bytes on another machine (``dvc status`` of a fresh clone reported ``data/demo``
modified). These functions use only operations IEEE 754 rounds exactly (+, -, *, /,
``rint``, ``ldexp``), which every SIMD path computes identically, in float64 and in a
fixed order. They are accurate to a few units in the last place of float64, far below
the float32 the images are stored in.
"""

from __future__ import annotations

import math

import numpy as np

_LN2_HI = 6.93147180369123816490e-01  # fdlibm's split of ln 2: k * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_PIO2_HI = 1.57079632673412561417e00  # fdlibm's split of pi / 2 (33 + 53 bits)
_PIO2_LO = 6.07710050650619224932e-11
# Taylor coefficients 1/n!; on |r| <= ln(2)/2 the 14th term is below 1e-17.
_EXP_COEFFS = tuple(1.0 / math.factorial(n) for n in range(14, -1, -1))


def _horner(x: np.ndarray, coefficients: tuple[float, ...]) -> np.ndarray:
    """Polynomial with ``coefficients`` (highest power first), evaluated left to right."""
    result = np.full_like(x, coefficients[0])
    for coefficient in coefficients[1:]:
        # in place: the same two roundings per step, without two new arrays each
        result *= x
        result += coefficient
    return result


def exp(x: np.ndarray) -> np.ndarray:
    """``e**x`` in float64 (``x`` below about -745 gives 0, as ``np.exp`` does)."""
    x = np.asarray(x, dtype=np.float64)
    clipped = np.clip(x, -746.0, 709.0)
    k = np.rint(clipped / _LN2_HI)
    r = (clipped - k * _LN2_HI) - k * _LN2_LO
    # two ldexp steps: 2**k alone underflows for k < -1022 although e**x does not yet
    half = np.trunc(k / 2)
    return np.ldexp(np.ldexp(_horner(r, _EXP_COEFFS), half.astype(np.int64)),
                    (k - half).astype(np.int64))


# sin and cos on |r| <= pi/4 (Taylor, the last terms below 1e-17)
_SIN_COEFFS = tuple((-1) ** n / math.factorial(2 * n + 1) for n in range(9, -1, -1))
_COS_COEFFS = tuple((-1) ** n / math.factorial(2 * n) for n in range(9, -1, -1))


def cos(x: np.ndarray) -> np.ndarray:
    """``cos(x)`` in float64, for the moderate arguments (|x| < 1e5) of the simulator."""
    x = np.asarray(x, dtype=np.float64)
    quadrant = np.rint(x / _PIO2_HI)
    r = (x - quadrant * _PIO2_HI) - quadrant * _PIO2_LO
    r2 = r * r
    sine = r * _horner(r2, _SIN_COEFFS)
    cosine = _horner(r2, _COS_COEFFS)
    q = np.mod(quadrant, 4).astype(np.int64)
    return np.select([q == 0, q == 1, q == 2], [cosine, -sine, -cosine], sine)


# atan on |t| <= tan(pi/16) after two halvings of the angle (Taylor to t**25: < 1e-20)
_ATAN_COEFFS = tuple((-1) ** n / (2 * n + 1) for n in range(12, -1, -1))


def arctan2(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The angle of ``(x, y)`` in ``[-pi, pi]``, float64 (0 for the origin)."""
    y, x = np.broadcast_arrays(np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64))
    ay, ax = np.abs(y), np.abs(x)
    big, small = np.maximum(ay, ax), np.minimum(ay, ax)
    t = np.divide(small, big, out=np.zeros_like(big), where=big > 0)
    # atan(t) = 2 atan(t / (1 + sqrt(1 + t*t))), twice: t <= tan(pi/16) ~ 0.199
    for _ in range(2):
        t = t / (1.0 + np.sqrt(1.0 + t * t))
    angle = 4.0 * (t * _horner(t * t, _ATAN_COEFFS))
    angle = np.where(ay > ax, math.pi / 2 - angle, angle)
    angle = np.where(x < 0, math.pi - angle, angle)
    return np.copysign(angle, y)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """OpenCV's Gaussian kernel for float images (size ``round(8 sigma + 1) | 1``), float64."""
    size = int(round(sigma * 8 + 1)) | 1
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    weights = exp(-(offsets * offsets) / (2.0 * sigma * sigma))
    return weights / math.fsum(weights)  # fsum: exact, no SIMD-dependent order


_BORDERS = {"reflect101": "reflect", "replicate": "edge"}  # OpenCV's name: numpy's


def gaussian_blur(image: np.ndarray, sigma: float, border: str = "reflect101") -> np.ndarray:
    """Separable Gaussian blur of a float image, as ``cv2.GaussianBlur(image, (0, 0), sigma)``.

    ``border`` is OpenCV's ``BORDER_REFLECT_101`` (its default) or ``BORDER_REPLICATE``.
    The taps are added one at a time in float64, rows then columns, and the result is
    returned in the image's dtype: the same bits on every CPU, unlike
    ``cv2.GaussianBlur``, whose SIMD paths round differently.
    """
    kernel = gaussian_kernel(sigma)
    radius = len(kernel) // 2
    out = np.asarray(image, dtype=np.float64)
    for axis in (1, 0):
        length = out.shape[axis]
        padded = np.take(out, _padded_positions(length, radius, border), axis=axis)
        total = np.zeros_like(out)
        for tap, weight in enumerate(kernel):
            window = [slice(None), slice(None)]
            window[axis] = slice(tap, tap + length)
            total += weight * padded[tuple(window)]
        out = total
    return out.astype(image.dtype)


def _padded_positions(length: int, radius: int, border: str) -> np.ndarray:
    """Source position of every pixel of a line padded by ``radius`` on each side, as
    ``np.pad`` with OpenCV's border (a gather: ``np.pad`` cost more than the blur of the
    simulator's small cell patches)."""
    if border not in _BORDERS:
        raise ValueError(f"unknown border {border!r}; use one of {sorted(_BORDERS)}")
    positions = np.arange(-radius, length + radius)
    if border == "replicate":
        return np.clip(positions, 0, length - 1)
    if length == 1:
        return np.zeros_like(positions)
    # reflect101: mirror about the first and last pixel, repeated for wide kernels
    period = 2 * (length - 1)
    folded = np.mod(positions, period)
    return np.where(folded < length, folded, period - folded)
