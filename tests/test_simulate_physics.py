"""Physics of the simulator against theory (no videos written)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rbcflow.simulate.geometry import constriction_channel, zigzag_channel
from rbcflow.simulate.mechanics import (
    CellParams,
    CellState,
    advance,
    jeffery_period,
    pose,
    step_jeffery,
)
from rbcflow.simulate.scenario import (
    CONDITION_PARAMS,
    CONDITIONS,
    condition_params,
    plan_dataset,
)


def _cell(**kw) -> CellParams:
    base = dict(radius_um=3.9, thickness_um=2.4, speed_um_s=4400.0, lateral=0.0,
                stiffness=1.0, tau_s=3e-3, tumbling=False, depth_shear_factor=3.0,
                crenation=0.0, n_spikes=12, wrinkle=0.02, phase0=0.0)  # fmt: skip
    base.update(kw)
    return CellParams(**base)


@pytest.mark.parametrize("aspect", [1.5, 3.25, 5.0])
def test_jeffery_period_matches_theory(aspect):
    shear, dt = 800.0, 1e-5
    phi, t, crossings = 0.0, 0.0, []
    while len(crossings) < 3 and t < 1.0:
        new = step_jeffery(phi, shear, aspect, dt)
        t += dt
        # The long axis passes the flow direction once per half period (phi = -k pi).
        if math.floor(-new / math.pi) > math.floor(-phi / math.pi):
            crossings.append(t)
        phi = new
    measured = 2 * (crossings[2] - crossings[1])
    assert measured == pytest.approx(jeffery_period(shear, aspect), rel=0.02)


def test_speed_follows_continuity_in_zigzag():
    channel = zigzag_channel()
    params = _cell()
    state = CellState(0.0, 0.0, 0.0, 0.0)
    dt = 1 / 20000
    xs = [state.x_um]
    for _ in range(1500):
        state = advance(state, params, channel, dt)
        xs.append(state.x_um)
    xs = np.array(xs)
    v = np.diff(xs) / dt
    mid = 0.5 * (xs[1:] + xs[:-1])
    w = channel.width_um(mid)
    narrow = v[w < 10.5].mean()
    wide = v[w > 19.5].mean()
    # v ~ 1 / width: the narrow (10 um) sections are twice as fast as the wide (20 um).
    assert narrow / wide == pytest.approx(np.mean(1 / w[w < 10.5]) / np.mean(1 / w[w > 19.5]),
                                          rel=0.03)  # fmt: skip
    assert narrow / wide == pytest.approx(2.0, rel=0.06)
    # Time-averaged speed over the field is the cell's nominal speed.
    fov = channel.fov_um[0]
    t_cross = np.interp(fov, xs, np.arange(len(xs)) * dt)
    assert fov / t_cross == pytest.approx(params.speed_um_s, rel=0.02)


def _max_elongation(channel, stiffness, n=2500, dt=1 / 20000):
    params = _cell(stiffness=stiffness, tau_s=3e-3 / math.sqrt(stiffness))
    state = CellState(0.0, 0.0, 0.0, 0.0)
    ratios = []
    for _ in range(n):
        state = advance(state, params, channel, dt)
        p = pose(state, params, channel)
        ratios.append(p.semi_along_um / p.semi_across_um)
    return max(ratios)


@pytest.mark.parametrize("factory", [zigzag_channel, constriction_channel])
def test_deformable_cells_elongate_more(factory):
    channel = factory()
    soft = _max_elongation(channel, 1.0)
    stiff = _max_elongation(channel, 10.0)
    assert soft > 1.15
    assert soft > stiff + 0.1


def test_effect_size_zero_makes_conditions_identical():
    ref = condition_params("native", 0.0)
    for c in CONDITIONS:
        assert condition_params(c, 0.0) == pytest.approx(ref)
    assert condition_params("DA", 1.0)["speed"] == pytest.approx(6.5)
    # stiffness is interpolated on a log scale: half the effect is the geometric mean
    full = CONDITION_PARAMS["GA"]["stiffness"] / CONDITION_PARAMS["native"]["stiffness"]
    assert condition_params("GA", 0.5)["stiffness"] == pytest.approx(math.sqrt(full))


def test_effect_size_zero_cell_distributions_match():
    from rbcflow.simulate.scenario import draw_cell

    specs = plan_dataset("tiny", seed=3, effect_size=0.0)
    channel = zigzag_channel()
    by_cond = {}
    for c in CONDITIONS:
        spec = next(s for s in specs if s.condition == c and s.donor.donor == "D01")
        rng = np.random.default_rng(11)
        cells = [draw_cell(rng, spec, channel)[0] for _ in range(50)]
        by_cond[c] = [(p.speed_um_s, p.stiffness, p.tumbling, p.crenation) for p in cells]
    # Same donor, same random stream, no condition effect: identical draws.
    assert all(by_cond[c] == by_cond["native"] for c in CONDITIONS)
    full = plan_dataset("tiny", seed=3, effect_size=1.0)
    spec_da = next(s for s in full if s.condition == "DA" and s.donor.donor == "D01")
    rng = np.random.default_rng(11)
    da = [draw_cell(rng, spec_da, channel)[0].speed_um_s for _ in range(50)]
    assert np.mean(da) > 1.3 * np.mean([row[0] for row in by_cond["native"]])


def test_designs_and_sample_ids():
    import re

    paired = plan_dataset("tiny", design="paired")
    nested = plan_dataset("tiny", design="nested")
    pattern = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    assert all(pattern.match(s.sample) for s in paired + nested)
    assert len({s.sample for s in paired}) == len(paired)
    donors_per_cond = {c: {s.donor.donor for s in nested if s.condition == c} for c in CONDITIONS}
    for c, ds in donors_per_cond.items():
        others = set().union(*(v for k, v in donors_per_cond.items() if k != c))
        assert ds and not ds & others
    assert {s.donor.donor for s in paired if s.condition == "GA"} == {s.donor.donor for s in paired}
