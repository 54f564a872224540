"""Cell mechanics: advection by the channel flow, elongation and relaxation, tank-treading
and Jeffery tumbling.

Flow model. With a constant channel depth, continuity makes the mean speed at position x
proportional to 1 / width(x). A cell keeps its relative lateral position (the flux
fraction of its streamline is conserved) and moves with the local speed of that streamline
(a parabolic profile across the width). Its speed is

    v(x) = K / width(x),   K = v_mean * mean(width)

so that ``v_mean`` is the time-averaged speed over the field of view (the quantity seed
000 reports per condition).

Shape. The Taylor deformation D = (a - b) / (a + b) relaxes towards an equilibrium set
by the local extension rate dv/dx and the cell's stiffness, with relaxation time
``tau``; the projected area is conserved (a * b = R^2). A passage narrower than the cell
squeezes it; a deformable cell keeps its area and elongates, a stiffened one cannot.

Rotation. Deformable cells tank-tread: orientation steady, membrane texture rotating.
Stiffened cells flip like rigid oblate spheroids in the shear across the channel depth,
following Jeffery's orbit dphi/dt = -G / (r^2 + 1) * (r^2 sin^2 phi + cos^2 phi), whose
period is T = 2 pi / G * (r + 1 / r).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from rbcflow.simulate.geometry import Channel


def jeffery_rate(phi: float, shear: float, aspect: float) -> float:
    """Angular velocity (rad/s) of a rigid spheroid of aspect ratio ``aspect`` in shear.

    ``phi`` is the angle of the long axis from the flow direction.
    """
    r2 = aspect * aspect
    return -shear / (r2 + 1.0) * (r2 * math.sin(phi) ** 2 + math.cos(phi) ** 2)


def jeffery_period(shear: float, aspect: float) -> float:
    """Jeffery's tumbling period T = 2 pi / shear * (r + 1/r) in seconds."""
    return 2.0 * math.pi / shear * (aspect + 1.0 / aspect)


def step_jeffery(phi: float, shear: float, aspect: float, dt: float) -> float:
    """Advance the Jeffery angle by ``dt`` with one classical Runge-Kutta step."""
    k1 = jeffery_rate(phi, shear, aspect)
    k2 = jeffery_rate(phi + 0.5 * dt * k1, shear, aspect)
    k3 = jeffery_rate(phi + 0.5 * dt * k2, shear, aspect)
    k4 = jeffery_rate(phi + dt * k3, shear, aspect)
    return phi + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


def relax(value: float, target: float, dt: float, tau: float) -> float:
    """Exact first-order relaxation of ``value`` towards ``target`` over ``dt``."""
    return target + (value - target) * math.exp(-dt / tau)


def taylor_axes(radius: float, deformation: float) -> tuple[float, float]:
    """Semi-axes (along, across) of an area-conserving ellipse with Taylor deformation D."""
    d = min(max(deformation, -0.9), 0.9)
    ratio = math.sqrt((1 + d) / (1 - d))
    return radius * ratio, radius / ratio


@dataclass(frozen=True)
class CellParams:
    """Fixed properties of one cell (drawn once by the scenario).

    Attributes
    ----------
    radius_um, thickness_um
        Rest radius and rim thickness of the disc.
    speed_um_s
        Time-averaged speed over the field of view.
    lateral
        Position across the free width, -0.5 (top) .. 0.5 (bottom).
    stiffness
        Relative membrane stiffness (native = 1).
    tau_s
        Shape relaxation time.
    tumbling
        Flips (Jeffery orbit) instead of tank-treading.
    depth_shear_factor
        Shear across the depth in units of speed / depth (depends on the depth position).
    crenation, n_spikes
        Echinocyte spike amplitude (fraction of the radius) and count.
    wrinkle
        Membrane texture contrast.
    phase0
        Initial Jeffery / membrane phase (rad).
    """

    radius_um: float
    thickness_um: float
    speed_um_s: float
    lateral: float
    stiffness: float
    tau_s: float
    tumbling: bool
    depth_shear_factor: float
    crenation: float
    n_spikes: int
    wrinkle: float
    phase0: float
    extension_gain: float = 0.8


@dataclass(frozen=True)
class CellState:
    """Time-varying state of a cell."""

    x_um: float
    deformation: float
    flip: float
    membrane: float


@dataclass(frozen=True)
class CellPose:
    """What the renderer needs: projected ellipse and appearance of a cell in one frame."""

    x_um: float
    y_um: float
    semi_along_um: float
    semi_across_um: float
    angle_rad: float
    edge_on: float
    membrane: float


def flux_constant(params: CellParams, channel: Channel) -> float:
    """K in v(x) = K / width(x) (um^2/s) for a cell of time-averaged speed ``speed_um_s``."""
    return params.speed_um_s * channel.mean_width_um()


def speed_at(x_um: float, k_flux: float, channel: Channel) -> float:
    """Cell speed (um/s) at ``x_um``: continuity, v = K / width."""
    return k_flux / float(channel.width_um(x_um))


def lateral_y(x_um: float, params: CellParams, channel: Channel) -> float:
    """y (um) of the cell centre: same relative position across the free width."""
    free = max(float(channel.width_um(x_um)) - 2.0 * params.radius_um * 0.9, 0.0)
    return float(channel.centre_um(x_um)) + params.lateral * free


def equilibrium_deformation(extension_rate: float, params: CellParams) -> float:
    """Taylor deformation a cell would reach under a steady extension rate (1/s).

    Linear in the capillary-like number (rate * 1 ms) and inversely proportional to
    stiffness; negative rates (a widening channel) stretch the cell across the flow.
    """
    return params.extension_gain * extension_rate * 1e-3 / params.stiffness


def advance(
    state: CellState, params: CellParams, channel: Channel, dt: float, substeps: int = 4
) -> CellState:
    """Advance a cell by ``dt`` seconds (advection, shape relaxation, rotation)."""
    k_flux = flux_constant(params, channel)
    h = dt / substeps
    x, d, flip, membrane = state.x_um, state.deformation, state.flip, state.membrane
    aspect = 2.0 * params.radius_um / params.thickness_um
    for _ in range(substeps):
        # Midpoint rule for x: the speed changes quickly in narrow sections.
        v0 = speed_at(x, k_flux, channel)
        v_mid = speed_at(x + 0.5 * h * v0, k_flux, channel)
        width = float(channel.width_um(x))
        extension = -k_flux * float(channel.width_slope(x)) / (width * width)
        d = relax(d, equilibrium_deformation(extension, params), h, params.tau_s)
        if params.tumbling:
            shear = params.depth_shear_factor * v0 / channel.depth_um
            flip = step_jeffery(flip, shear, aspect, h)
        else:
            # Tank-treading frequency scales with the local shear rate v / width.
            membrane += h * 0.35 * v0 / width * (0.4 + 3.0 * abs(params.lateral))
        x += h * v_mid
    return replace(state, x_um=x, deformation=d, flip=flip, membrane=membrane)


def pose(state: CellState, params: CellParams, channel: Channel) -> CellPose:
    """Projected shape and orientation of a cell in its current state."""
    a, b = taylor_axes(params.radius_um, state.deformation)
    # Confinement: the cell cannot be wider than the local channel. A deformable cell
    # keeps its area and lengthens; a stiff one barely lengthens.
    b_max = 0.46 * float(channel.width_um(state.x_um))
    if b > b_max:
        squeeze = b / b_max
        a *= squeeze ** (1.0 / params.stiffness**0.5)
        b = b_max
    angle = 0.0
    edge_on = 0.0
    if params.tumbling:
        c, s = math.cos(state.flip), math.sin(state.flip)
        half_t = 0.5 * params.thickness_um
        a = math.sqrt((a * c) ** 2 + (half_t * s) ** 2)
        edge_on = s * s
    else:
        # Tank-treading cells settle at a steady inclination set by the side of the
        # channel they travel on (the sign of the local shear).
        angle = -0.35 * math.tanh(params.lateral / 0.15) * (0.5 + abs(state.deformation))
    return CellPose(
        x_um=state.x_um,
        y_um=lateral_y(state.x_um, params, channel),
        semi_along_um=a,
        semi_across_um=b,
        angle_rad=angle,
        edge_on=edge_on,
        membrane=state.membrane + params.phase0,
    )
