"""Channel geometries: wall positions, local width and the static wall image.

Coordinates are in micrometres with x along the flow (left to right) and y down, the
origin at the top-left corner of the field of view.

* ``zigzag`` (seed 000): field of view 230 x 38 um rendered at 800 x 132 px
  (0.2875 um/px). Both walls are zig-zags of period 20 um; the width runs linearly
  between 10 um (narrow sections) and 20 um (widest sections), and the centreline
  meanders by +-3 um a quarter period out of phase, so cells are pushed sideways as
  well as squeezed.
* ``constriction`` (seed 001): field of view 200 x 37.5 um at 800 x 150 px (0.25 um/px,
  so a 7.8 um red cell is about 31 px across, as in seed 001); a 16 um wide channel
  narrows over 25 um to a 5 um passage 50 um long, then widens again.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Channel:
    """A channel in the field of view.

    Attributes
    ----------
    name
        ``zigzag`` or ``constriction``.
    width_px, height_px
        Frame size.
    um_per_px
        Pixel size.
    depth_um
        Channel depth (sets the shear rate across the depth that makes rigid cells flip).
    """

    name: str
    width_px: int
    height_px: int
    um_per_px: float
    depth_um: float = 10.0
    period_um: float = 20.0
    narrow_um: float = 10.0
    wide_um: float = 20.0
    meander_um: float = 3.0
    passage_um: float = 5.0
    passage_start_um: float = 75.0
    passage_length_um: float = 50.0
    taper_um: float = 25.0

    @property
    def fov_um(self) -> tuple[float, float]:
        """Field of view (width, height) in micrometres."""
        return self.width_px * self.um_per_px, self.height_px * self.um_per_px

    def width_um(self, x_um: np.ndarray | float) -> np.ndarray:
        """Local channel width at ``x_um``."""
        if isinstance(x_um, float):
            return self._width_at(x_um)
        x = np.asarray(x_um, dtype=float)
        if self.name == "zigzag":
            return self.narrow_um + (self.wide_um - self.narrow_um) * _triangle(x / self.period_um)
        start, length, taper = self.passage_start_um, self.passage_length_um, self.taper_um
        wide = self.wide_um
        into = np.clip((x - (start - taper)) / taper, 0.0, 1.0)
        out_of = np.clip(((start + length + taper) - x) / taper, 0.0, 1.0)
        closing = np.minimum(into, out_of)
        return wide - (wide - self.passage_um) * closing

    def _width_at(self, x: float) -> float:
        """``width_um`` of one position in Python floats: the simulator asks for one
        cell's width some thirty times per frame, and NumPy's per-call cost on a scalar
        was a fifth of the rendering time. The same IEEE operations in the same order
        (``%`` is ``np.mod``, ``min``/``max`` are ``np.clip``), so the same bits."""
        if self.name == "zigzag":
            triangle = _triangle_at(x / self.period_um)
            return self.narrow_um + (self.wide_um - self.narrow_um) * triangle
        start, length, taper = self.passage_start_um, self.passage_length_um, self.taper_um
        wide = self.wide_um
        into = min(max((x - (start - taper)) / taper, 0.0), 1.0)
        out_of = min(max(((start + length + taper) - x) / taper, 0.0), 1.0)
        closing = min(into, out_of)
        return wide - (wide - self.passage_um) * closing

    def width_slope(self, x_um: np.ndarray | float, h: float = 1e-3) -> np.ndarray:
        """d(width)/dx (central difference; the walls are piecewise linear)."""
        if isinstance(x_um, float):
            return (self._width_at(x_um + h) - self._width_at(x_um - h)) / (2 * h)
        return (self.width_um(np.asarray(x_um) + h) - self.width_um(np.asarray(x_um) - h)) / (2 * h)

    def centre_um(self, x_um: np.ndarray | float) -> np.ndarray:
        """y of the channel centreline at ``x_um``."""
        mid = 0.5 * self.fov_um[1]
        if isinstance(x_um, float):  # one position: Python floats, as in _width_at
            if self.name == "zigzag":
                return mid + self.meander_um * (2 * _triangle_at(x_um / self.period_um + 0.25) - 1)
            return mid
        x = np.asarray(x_um, dtype=float)
        if self.name == "zigzag":
            return mid + self.meander_um * (2 * _triangle(x / self.period_um + 0.25) - 1)
        return np.full_like(x, mid)

    def mean_width_um(self, x0: float | None = None, x1: float | None = None) -> float:
        """Mean width over [x0, x1] (default: the field of view)."""
        if x0 is None and x1 is None:
            return _field_mean_width(self)
        return self._mean_width(x0, x1)

    def _mean_width(self, x0: float | None, x1: float | None) -> float:
        x0 = 0.0 if x0 is None else x0
        x1 = self.fov_um[0] if x1 is None else x1
        xs = np.linspace(x0, x1, 4001)
        return float(np.mean(self.width_um(xs)))


@functools.cache
def _field_mean_width(channel: Channel) -> float:
    """The field of view's mean width, once per channel: every cell's every step of
    ``mechanics.advance`` asks for it (4001 widths each time)."""
    return channel._mean_width(None, None)


def _triangle(phase: np.ndarray) -> np.ndarray:
    """Triangle wave in [0, 1] with period 1; 1 at integer phase (widest section)."""
    frac = np.mod(phase, 1.0)
    return np.abs(1.0 - 2.0 * frac)


def _triangle_at(phase: float) -> float:
    """:func:`_triangle` of one phase in Python floats (``%`` is ``np.mod``: the same bits)."""
    return abs(1.0 - 2.0 * (phase % 1.0))


def zigzag_channel() -> Channel:
    """The zig-zag channel of seed 000 (800 x 132 px, 230 um wide field of view)."""
    return Channel("zigzag", 800, 132, 230.0 / 800.0, wide_um=20.0)


def constriction_channel() -> Channel:
    """The straight constriction of seed 001 (800 x 150 px, 5 um passage)."""
    return Channel("constriction", 800, 150, 0.25, wide_um=16.0)


def magnified(channel: Channel, factor: float) -> Channel:
    """The same channel filmed at ``factor`` times the magnification.

    The pixels shrink by ``factor``; the frame keeps the channel's full height and its
    field of view along the flow, so it has ``factor`` times the pixels both ways.
    """
    if not factor > 0:
        raise ValueError(f"magnification must be > 0, got {factor}")
    return dataclasses.replace(channel, um_per_px=channel.um_per_px / factor,
                               width_px=int(round(channel.width_px * factor)),
                               height_px=int(round(channel.height_px * factor)))


def channel_by_name(name: str) -> Channel:
    """Look up a geometry by name; ``<name>@<factor>x`` is it at another magnification."""
    base, _, zoom = name.partition("@")
    if zoom:
        try:
            factor = float(zoom.removesuffix("x"))
        except ValueError:
            raise ValueError(f"geometry {name!r}: write a magnification as @2x") from None
        return magnified(channel_by_name(base), factor)
    if name == "zigzag":
        return zigzag_channel()
    if name == "constriction":
        return constriction_channel()
    raise ValueError(f"unknown geometry {name!r}; use zigzag or constriction")


def wall_distance_px(channel: Channel) -> np.ndarray:
    """Signed distance (px) of every pixel to the nearest wall; positive inside the channel.

    The vertical distance is divided by sqrt(1 + slope^2) so inclined walls keep their
    thickness.
    """
    xs_um = (np.arange(channel.width_px) + 0.5) * channel.um_per_px
    ys_um = (np.arange(channel.height_px) + 0.5) * channel.um_per_px
    half = 0.5 * channel.width_um(xs_um)
    centre = channel.centre_um(xs_um)
    top, bottom = centre - half, centre + half
    slope_top = np.gradient(top, xs_um)
    slope_bottom = np.gradient(bottom, xs_um)
    d_top = (ys_um[:, None] - top[None, :]) / np.sqrt(1 + slope_top[None, :] ** 2)
    d_bottom = (bottom[None, :] - ys_um[:, None]) / np.sqrt(1 + slope_bottom[None, :] ** 2)
    return (np.minimum(d_top, d_bottom) / channel.um_per_px).astype(np.float32)
