"""Brightfield image formation: static background and the image of one cell.

A red cell is a nearly transparent phase object. In brightfield it shows (i) weak
absorption proportional to its thickness, so the thick rim of the biconcave disc is darker
than its thin centre; (ii) a dark refraction ring at its edge; and (iii) out of focus, a
phase-contrast halo whose sign follows the sign of the defocus: above focus a dark rim
with a bright halo outside, below focus a bright rim with a dark halo outside. Defocus also
blurs the cell and the walls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rbcflow import portable
from rbcflow.simulate.geometry import Channel, wall_distance_px

FOCUS_OFFSETS_UM = {"in": 0.0, "above": 2.0, "below": -2.0}


@dataclass(frozen=True)
class Optics:
    """Optical settings of one recording.

    Attributes
    ----------
    defocus_um
        Focus offset (positive: focal plane above the cells).
    blur_px
        Gaussian blur sigma of cells and walls.
    """

    defocus_um: float
    blur_px: float


def optics_for_focus(focus: str, um_per_px: float, jitter_um: float = 0.0) -> Optics:
    """Optical settings for a focus label (``in``, ``above``, ``below``)."""
    if focus not in FOCUS_OFFSETS_UM:
        raise ValueError(f"unknown focus {focus!r}; use one of {sorted(FOCUS_OFFSETS_UM)}")
    defocus = FOCUS_OFFSETS_UM[focus] + jitter_um
    blur_um = 0.12 + 0.22 * abs(defocus)
    return Optics(defocus_um=defocus, blur_px=blur_um / um_per_px)


def biconcave_thickness(rho: np.ndarray) -> np.ndarray:
    """Normalised thickness of the Evans-Fung biconcave disc at normalised radius ``rho``.

    Peak (the rim, rho ~ 0.8) is 1; the centre is about 0.3; zero outside rho = 1.
    """
    r2 = np.minimum(rho * rho, 1.0)
    h = np.sqrt(1.0 - r2) * (0.207 + 2.003 * r2 - 1.123 * r2 * r2)
    return h / 0.6926


def static_background(
    channel: Channel,
    rng: np.random.Generator,
    level: float,
    optics: Optics,
    n_dust: int,
    vignetting: float = 0.16,
) -> np.ndarray:
    """The static part of every frame: illumination, walls, vignetting, dust, pixel gain.

    Returns a float32 image in grey levels (0..255 scale), computed in float64 with
    :mod:`rbcflow.portable` so that every CPU gives the same bits.
    """
    h, w = channel.height_px, channel.width_px
    dist = wall_distance_px(channel).astype(np.float64)
    # PDMS outside the channel transmits a little less; the wall edge refracts light
    # into a dark line with a bright line just outside it.
    img = np.where(dist > 0, 1.0, 0.9)
    img -= 0.32 * portable.exp(-(((dist + 0.6) / 1.3) ** 2))
    img += 0.12 * portable.exp(-(((dist + 3.5) / 1.4) ** 2))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
    img *= 1.0 - vignetting * r2
    for _ in range(n_dust):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        sigma = rng.uniform(0.8, 3.0)
        depth = rng.uniform(0.04, 0.18)
        img *= 1.0 - depth * portable.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
    if optics.blur_px > 0.3:
        img = portable.gaussian_blur(img, optics.blur_px)
    img *= 1.0 + 0.004 * rng.standard_normal((h, w)).astype(np.float32)
    return (level * img).astype(np.float32)


@dataclass(frozen=True)
class Appearance:
    """Per-cell appearance that does not change over time."""

    crenation: float
    n_spikes: int
    wrinkle: float
    absorption: float
    texture_seed: float


def cell_patch(
    cx_px: float,
    cy_px: float,
    semi_along_px: float,
    semi_across_px: float,
    angle_rad: float,
    edge_on: float,
    membrane: float,
    look: Appearance,
    optics: Optics,
    px_per_um: float,
) -> tuple[np.ndarray, int, int]:
    """Relative transmission change (delta, 0 outside the cell) of one cell.

    Returns ``(delta, x0, y0)``: a small float32 patch and the frame position of its
    top-left pixel, to be composited as ``frame *= 1 + delta``. Computed in float64 with
    :mod:`rbcflow.portable` (the same bits on every CPU).
    """
    a = max(semi_along_px, 0.5)
    b = max(semi_across_px, 0.5)
    reach = max(a, b) * (1.0 + look.crenation) + 3.0 * optics.blur_px + 5.0
    x0, y0 = int(math.floor(cx_px - reach)), int(math.floor(cy_px - reach))
    size = int(math.ceil(2 * reach)) + 1
    coords = np.arange(size, dtype=np.float64)
    dx = (coords + x0 + 0.5 - cx_px)[None, :]
    dy = (coords + y0 + 0.5 - cy_px)[:, None]
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    u = (dx * c + dy * s) / a
    v = (-dx * s + dy * c) / b
    rho = np.sqrt(u * u + v * v)
    theta = portable.arctan2(v, u)
    if look.crenation > 0:
        lobe = np.maximum(portable.cos(look.n_spikes * (theta - 0.3 * membrane)), 0.0)
        lobe2 = lobe * lobe
        spikes = lobe2 * lobe2 * lobe2  # ** 6 would call pow, whose SIMD loops differ
        rho = rho / (1.0 + look.crenation * spikes)
    thick = biconcave_thickness(rho)
    if edge_on > 0:
        # Seen edge-on the disc is a rod of uniform thickness and looks darker.
        thick = (1 - edge_on) * thick + edge_on * 1.4 * np.sqrt(np.clip(1 - rho * rho, 0, 1))
    inside = (rho < 1.0).astype(np.float64)
    # The portable functions are evaluated once on the stacked arguments rather than
    # once per term: elementwise, so the same bits, with a third of NumPy's per-call
    # cost, which dominates on a patch of a few hundred pixels.
    wave, wave2 = portable.cos(np.stack([
        3.0 * (theta - membrane) + 6.0 * rho + look.texture_seed,
        5.0 * (theta - membrane) - 4.0 * rho + 2.0 * look.texture_seed,
    ]))  # fmt: skip
    texture = inside * look.wrinkle * (wave + 0.6 * wave2)
    edge_width = 1.1 / min(a, b) * max(1.0, 0.6 * optics.blur_px)
    halo_shift = 2.2 * edge_width
    ring, halo_out, halo_in = portable.exp(np.stack([
        -(((rho - 1.0) / edge_width) ** 2),
        -(((rho - 1.0 - halo_shift) / edge_width) ** 2),
        -(((rho - 1.0 + halo_shift) / edge_width) ** 2),
    ]))  # fmt: skip
    halo = halo_out - halo_in
    defocus = optics.defocus_um
    delta = (
        -look.absorption * thick
        - (0.22 - 0.05 * abs(defocus)) * ring
        + 0.16 * defocus * halo
        + texture
    )
    if optics.blur_px > 0.3:
        delta = portable.gaussian_blur(delta, optics.blur_px)
    return delta.astype(np.float32), x0, y0
