"""Frame composition: static background x flicker x cells + sensor noise -> uint8."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rbcflow.simulate.geometry import Channel
from rbcflow.simulate.mechanics import CellPose
from rbcflow.simulate.optics import Appearance, Optics, cell_patch


@dataclass(frozen=True)
class Flicker:
    """Illumination modulation: mains ripple of the lamp plus a slow drift."""

    ripple_amp: float
    ripple_hz: float
    drift_amp: float
    drift_hz: float
    phase: float

    def gain(self, t_s: float) -> float:
        """Relative illumination at time ``t_s``."""
        return (
            1.0
            + self.ripple_amp * math.sin(2 * math.pi * self.ripple_hz * t_s + self.phase)
            + self.drift_amp * math.sin(2 * math.pi * self.drift_hz * t_s + 2.0 * self.phase)
        )


def ellipse_extent(semi_a: float, semi_b: float, angle_rad: float) -> tuple[float, float]:
    """Half-extents (x, y) of an ellipse with semi-axes a, b rotated by ``angle_rad``."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return math.hypot(semi_a * c, semi_b * s), math.hypot(semi_a * s, semi_b * c)


@dataclass(frozen=True)
class TruthRow:
    """One row of the truth table (see docs/architecture.md, "Simulator truth")."""

    cell_id: int
    x: float
    y: float
    bbox_x: int
    bbox_y: int
    bbox_w: int
    bbox_h: int
    angle: float
    major_px: float
    minor_px: float


def truth_row(cell_id: int, p: CellPose, crenation: float, channel: Channel) -> TruthRow | None:
    """Truth for a cell in a frame, or None when no part of it is inside the frame."""
    scale = 1.0 / channel.um_per_px
    cx, cy = p.x_um * scale, p.y_um * scale
    a, b = p.semi_along_um * scale, p.semi_across_um * scale
    ex, ey = ellipse_extent(a * (1 + crenation), b * (1 + crenation), p.angle_rad)
    x0, x1 = max(0, math.floor(cx - ex)), min(channel.width_px, math.ceil(cx + ex))
    y0, y1 = max(0, math.floor(cy - ey)), min(channel.height_px, math.ceil(cy + ey))
    if x1 <= x0 or y1 <= y0:
        return None
    angle = p.angle_rad if a >= b else p.angle_rad + math.pi / 2
    angle_deg = (math.degrees(angle) + 90.0) % 180.0 - 90.0
    return TruthRow(
        cell_id, cx, cy, x0, y0, x1 - x0, y1 - y0, angle_deg, 2 * max(a, b), 2 * min(a, b)
    )


def composite(
    background: np.ndarray,
    gain: float,
    poses: list[tuple[CellPose, Appearance]],
    optics: Optics,
    channel: Channel,
    noise_sigma: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Render one frame: background * gain, cells multiplied in, noise, 8-bit rounding."""
    frame = background * np.float32(gain)
    height, width = frame.shape
    scale = 1.0 / channel.um_per_px
    for p, look in poses:
        delta, x0, y0 = cell_patch(
            p.x_um * scale,
            p.y_um * scale,
            p.semi_along_um * scale,
            p.semi_across_um * scale,
            p.angle_rad,
            p.edge_on,
            p.membrane,
            look,
            optics,
            scale,
        )
        ph, pw = delta.shape
        fx0, fy0 = max(x0, 0), max(y0, 0)
        fx1, fy1 = min(x0 + pw, width), min(y0 + ph, height)
        if fx1 <= fx0 or fy1 <= fy0:
            continue
        sub = delta[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
        frame[fy0:fy1, fx0:fx1] *= 1.0 + sub
    # in place (the same float32 operations): a frame is 120k pixels, and a new array per
    # step cost as much as the arithmetic
    noise = rng.standard_normal(frame.shape, dtype=np.float32)
    noise *= np.float32(noise_sigma)
    frame += noise
    np.clip(frame, 0, 255, out=frame)
    return np.rint(frame, out=frame).astype(np.uint8)
