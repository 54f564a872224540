"""Conditions, donors, recording plans and the dataset generator.

Frame rates. Zig-zag (triggered) clips are recorded at 1800 fps: a native cell
(4.4 mm/s) crosses the 230 um field of view in 52 ms = 94 frames, the ~90 frames that
seed 000 analyses (frames 50..140 of 250). Constriction (continuous) recordings run at
1000 fps; that device is driven more gently (mean speeds x 0.5, seed 001 uses 6 mbar),
so a native cell crosses the 200 um field in ~90 frames (seed 001: 50-100 frames).

Random effects. Each donor has its own cell size, stiffness and speed factors and is
recorded in its own session (day) with its own lamp level, dust and sensor noise, so
donor identity is learnable from the videos. Every video draws its cells from
``SeedSequence([seed, video_index])``, so a video does not depend on which others are
generated or in which order.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rbcflow.simulate.geometry import Channel, channel_by_name
from rbcflow.simulate.mechanics import CellParams, CellState, advance, pose
from rbcflow.simulate.optics import Appearance, optics_for_focus, static_background
from rbcflow.simulate.render import Flicker, composite, truth_row

log = logging.getLogger(__name__)

CONDITIONS = ("native", "DA", "FA", "GA")
FOCI = ("in", "above", "below")
TRUTH_COLUMNS = [
    "frame", "cell_id", "x", "y", "bbox_x", "bbox_y", "bbox_w", "bbox_h",
    "angle", "major_px", "minor_px", "condition", "donor",
]  # fmt: skip

#: Full-strength condition parameters. Speeds (mean, sd in mm/s) are seed 000's Fig. 4;
#: the rest follows its observations. DA: spiked echinocytes, most of them, and the
#: most uniform treatment (its best test accuracy). FA: the same kind of change, but
#: "a slightly larger variability than DA" - a good share of FA cells keep a native
#: look. GA: "visually very little difference" from native in static shape (a faint
#: wrinkle); it differs in dynamics: stiff (no elongation in the narrow sections) and
#: more often tumbling. Modified cells tumble more often than native ones. With these
#: the difficulty order of seed 000's Table 1 (DA easiest, the mix of all three the
#: hardest) can emerge from what the cells look like and do; speed is hidden by
#: track-mode clips.
CONDITION_PARAMS: dict[str, dict[str, float]] = {
    "native": dict(speed=4.4, speed_sd=0.8, stiffness=1.0, viscosity=1.0, p_tumble=0.05,
                   p_crenated=0.02, crenation=0.08, wrinkle=0.02, size=1.0),
    "DA": dict(speed=6.5, speed_sd=0.4, stiffness=12.0, viscosity=2.0, p_tumble=0.92,
               p_crenated=0.98, crenation=0.3, wrinkle=0.03, size=0.88),
    "FA": dict(speed=4.2, speed_sd=0.4, stiffness=4.0, viscosity=1.5, p_tumble=0.5,
               p_crenated=0.6, crenation=0.16, wrinkle=0.04, size=0.97),
    "GA": dict(speed=3.9, speed_sd=0.3, stiffness=3.5, viscosity=1.0, p_tumble=0.4,
               p_crenated=0.05, crenation=0.06, wrinkle=0.05, size=1.0),
}  # fmt: skip
_LOG_SCALED = ("stiffness", "viscosity")


def condition_params(condition: str, effect_size: float) -> dict[str, float]:
    """Parameters of a condition with its difference from native scaled by ``effect_size``.

    Stiffness and viscosity are interpolated on a log scale; 0 gives native for every
    condition, 1 the full difference.
    """
    if condition not in CONDITION_PARAMS:
        raise ValueError(f"unknown condition {condition!r}; known: {sorted(CONDITION_PARAMS)}")
    if effect_size < 0:
        raise ValueError(f"effect_size must be >= 0, got {effect_size}")
    base, full = CONDITION_PARAMS["native"], CONDITION_PARAMS[condition]
    out = {}
    for key, value in base.items():
        if key in _LOG_SCALED:
            out[key] = math.exp(
                math.log(value) + effect_size * (math.log(full[key]) - math.log(value))
            )
        else:
            out[key] = value + effect_size * (full[key] - value)
    out["p_tumble"] = min(max(out["p_tumble"], 0.0), 1.0)
    out["p_crenated"] = min(max(out["p_crenated"], 0.0), 1.0)
    out["speed_sd"] = max(out["speed_sd"], 0.05)
    return out


@dataclass(frozen=True)
class Donor:
    """Donor random effects and the recording session."""

    donor: str
    session: str
    size: float
    stiffness: float
    speed: float
    lamp: float
    noise: float
    dust_seed: int


@dataclass(frozen=True)
class Mixture:
    """A suspension whose cells come from several conditions in known shares.

    ``shares``: (condition, probability) pairs adding up to 1; each cell's condition is
    drawn independently with these probabilities. ``params``: each condition's
    parameters (:func:`condition_params`).
    """

    shares: tuple[tuple[str, float], ...]
    params: dict = field(hash=False, compare=False)

    def __post_init__(self) -> None:
        if not self.shares or any(p < 0 for _, p in self.shares):
            raise ValueError(f"mixture shares must be >= 0, got {self.shares}")
        if not math.isclose(sum(p for _, p in self.shares), 1.0, abs_tol=1e-9):
            raise ValueError(f"mixture shares must add up to 1, got {self.shares}")
        missing = [c for c, _ in self.shares if c not in self.params]
        if missing:
            raise ValueError(f"mixture conditions without parameters: {missing}")


@dataclass(frozen=True)
class VideoSpec:
    """Everything needed to render one recording."""

    index: int
    sample: str
    donor: Donor
    condition: str
    focus: str
    geometry: str
    mode: str
    n_frames: int
    fps: float
    params: dict = field(hash=False)
    arrival_gap_frames: float = 30.0
    #: Cells drawn from several conditions in known shares (see :func:`plan_mixture`);
    #: None: every cell is of ``condition``.
    mixture: Mixture | None = None


@dataclass(frozen=True)
class Preset:
    """Dataset size."""

    n_donors: int
    clips_per_combination: int
    clip_frames: int
    continuous: str  # "per_condition" (one per condition) or "per_donor_condition"
    continuous_frames: int
    arrival_gap_frames: float
    # "all": a triggered clip at every focus for every donor and condition; "rotate": one
    # focus per donor and condition, rotating over donors (fewer files, every focus kept).
    triggered_focus: str = "all"
    # Focus of continuous recordings: "in" for all (seed 001's protocol) or "rotate".
    # Rotating one recording per donor and condition ties focus to condition within a
    # donor, a confound a model learns instead of the cells (seed 000 films every
    # suspension at every focus for that reason).
    continuous_focus: str = "in"


PRESETS = {
    # tiny feeds the end-to-end workflow tests, where every recording costs four jobs:
    # few files, most cells from in-focus continuous recordings.
    "tiny": Preset(6, 1, 110, "per_donor_condition", 360, 36.0, triggered_focus="rotate"),
    # demo: 12 donors, each giving every condition, filmed as one triggered clip (seed
    # 000; focus rotating over donors, so every condition is seen at every focus) and one
    # in-focus continuous recording (seed 001) that yields most of the cells: 96
    # recordings, enough for a 6 / 3 / 3 donor split. Every recording costs four short
    # jobs (Python start-up dominates them), so fewer, longer recordings keep `make
    # demo` within its budget.
    "demo": Preset(12, 1, 110, "per_donor_condition", 500, 36.0, triggered_focus="rotate"),
}
TRIGGERED_FPS = 1800.0
CONTINUOUS_FPS = 1000.0
CONTINUOUS_SPEED_SCALE = 0.5
P_EMPTY_CLIP = 0.05
P_SECOND_CELL = 0.18
#: Continuous recordings of a dilute suspension (Ht 0.5 %, seed 000): a cell enters the
#: field only when the previous one has moved this many of its diameters past the
#: inlet (centre to centre). Arrivals stay Poisson otherwise; without it, two cells
#: drawn a frame apart enter overlapping and travel as one.
ENTRY_HEADWAY_DIAMETERS = 2.0
#: In single file a faster cell that catches up with a slower one cannot pass it. In a
#: confined channel the flow a cell disturbs reaches about one channel width around it,
#: so the follower is slowed to the leader's speed once the gap between their outlines
#: is down to INTERACTION_WIDTHS local channel widths (8 um in the 16 um channel, 2.5 um
#: in the 5 um passage), and never closer than the lubrication film CONTACT_FILM_UM:
#: near collisions happen where the channel narrows, cells never overlap.
CONTACT_FILM_UM = 1.5
INTERACTION_WIDTHS = 0.5


def make_donors(n_donors: int, seed: int) -> list[Donor]:
    """Draw donor random effects (one session per donor)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7_000_001]))
    donors = []
    for i in range(n_donors):
        donors.append(
            Donor(
                donor=f"D{i + 1:02d}",
                session=f"S{i + 1:02d}",
                size=float(rng.normal(1.0, 0.04)),
                stiffness=float(rng.lognormal(0.0, 0.2)),
                speed=float(rng.normal(1.0, 0.05)),
                lamp=float(rng.uniform(135, 170)),
                noise=float(rng.uniform(1.3, 2.4)),
                dust_seed=int(rng.integers(2**31)),
            )
        )
    return donors


def plan_dataset(
    preset: str = "demo",
    seed: int = 2024,
    effect_size: float = 1.0,
    design: str = "paired",
    conditions: tuple[str, ...] = CONDITIONS,
) -> list[VideoSpec]:
    """List every recording of a preset.

    ``design``: ``paired`` (every donor gives every condition) or ``nested`` (donor i
    gives condition i mod n_conditions only).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; use one of {sorted(PRESETS)}")
    if design not in ("paired", "nested"):
        raise ValueError(f"unknown donor design {design!r}; use paired or nested")
    p = PRESETS[preset]
    donors = make_donors(p.n_donors, seed)
    params = {c: condition_params(c, effect_size) for c in conditions}
    pairs = [
        (d, c)
        for i, d in enumerate(donors)
        for j, c in enumerate(conditions)
        if design == "paired" or i % len(conditions) == j
    ]
    specs: list[VideoSpec] = []
    for d, c in pairs:
        foci = FOCI
        if p.triggered_focus == "rotate":
            foci = (FOCI[(int(d.donor[1:]) + conditions.index(c)) % len(FOCI)],)
        for focus in foci:
            for k in range(p.clips_per_combination):
                specs.append(
                    VideoSpec(len(specs), f"{d.donor}_{c}_{focus}_t{k + 1}", d, c, focus,
                              "zigzag", "triggered", p.clip_frames, TRIGGERED_FPS, params[c])
                )  # fmt: skip
    if p.continuous == "per_condition":
        chosen = [next(((d, c) for d, c2 in pairs if c2 == c), None) for c in conditions]
        continuous_pairs = [pair for pair in chosen if pair is not None]
    else:
        continuous_pairs = pairs
    for n, (d, c) in enumerate(continuous_pairs):
        focus = "in"
        if p.continuous_focus == "rotate":
            focus = FOCI[(int(d.donor[1:]) + n) % len(FOCI)]
        specs.append(
            VideoSpec(len(specs), f"{d.donor}_{c}_{focus}_c1", d, c, focus, "constriction",
                      "continuous", p.continuous_frames, CONTINUOUS_FPS, params[c],
                      p.arrival_gap_frames)
        )  # fmt: skip
    return specs


def draw_cell(
    rng: np.random.Generator, spec: VideoSpec, channel: Channel, params: dict | None = None
) -> tuple[CellParams, Appearance]:
    """Draw one cell of a recording's condition (or of ``params``' condition) and donor."""
    cp, donor = spec.params if params is None else params, spec.donor
    speed_scale = CONTINUOUS_SPEED_SCALE if spec.geometry == "constriction" else 1.0
    # Donor and lateral-position effects take part of the reported spread.
    rel_sd = math.sqrt(max((cp["speed_sd"] / cp["speed"]) ** 2 - 0.05**2 - 0.03**2, 0.02**2))
    lateral = float(np.clip(rng.normal(0.0, 0.18), -0.45, 0.45))
    profile = (1.0 - 0.6 * lateral**2) / (1.0 - 0.6 * 0.18**2)
    speed = cp["speed"] * donor.speed * profile * rng.normal(1.0, rel_sd)
    stiffness = cp["stiffness"] * donor.stiffness * rng.lognormal(0.0, 0.15)
    crenated = rng.random() < cp["p_crenated"]
    params = CellParams(
        radius_um=3.9 * cp["size"] * donor.size * rng.normal(1.0, 0.03),
        thickness_um=2.4 * rng.normal(1.0, 0.05),
        speed_um_s=max(speed, 0.5) * speed_scale * 1000.0,
        lateral=lateral,
        stiffness=stiffness,
        tau_s=3e-3 * cp["viscosity"] / math.sqrt(stiffness),
        tumbling=bool(rng.random() < cp["p_tumble"]),
        depth_shear_factor=float(rng.uniform(1.5, 4.5)),
        crenation=cp["crenation"] * rng.uniform(0.7, 1.3) if crenated else 0.0,
        n_spikes=int(rng.integers(9, 15)),
        wrinkle=cp["wrinkle"] * rng.uniform(0.6, 1.4),
        phase0=float(rng.uniform(0, 2 * math.pi)),
    )
    look = Appearance(
        crenation=params.crenation,
        n_spikes=params.n_spikes,
        wrinkle=params.wrinkle,
        absorption=float(rng.uniform(0.16, 0.24)),
        texture_seed=float(rng.uniform(0, 2 * math.pi)),
    )
    return params, look


@dataclass
class _Cell:
    cell_id: int
    params: CellParams
    look: Appearance
    state: CellState
    condition: str = ""


def _arrival_frames(rng: np.random.Generator, spec: VideoSpec) -> list[int]:
    """Frames at which cells enter (triggered clips; continuous arrivals are drawn lazily)."""
    u = rng.random()
    if u < P_EMPTY_CLIP:
        return []  # a false trigger: the clip never shows a cell
    arrivals = [int(rng.integers(6, 24))]
    if u < P_EMPTY_CLIP + P_SECOND_CELL:
        arrivals.append(int(rng.integers(-60, spec.n_frames - 30)))
    return sorted(arrivals)


def _new_cell(rng, spec, channel, cell_id, mixture_rng=None) -> _Cell:
    condition, condition_params_ = spec.condition, None
    if spec.mixture is not None:
        # the condition comes from its own stream: the cell's draws keep their order
        names = [c for c, _ in spec.mixture.shares]
        shares = np.array([p for _, p in spec.mixture.shares])
        condition = names[int(mixture_rng.choice(len(names), p=shares))]
        condition_params_ = spec.mixture.params[condition]
    params, look = draw_cell(rng, spec, channel, condition_params_)
    a = params.radius_um * (1 + params.crenation) * 1.6
    phase = params.phase0 if params.tumbling else 0.0
    return _Cell(cell_id, params, look, CellState(-a, 0.0, phase, 0.0), condition)


def _half_length_um(cell: _Cell, channel: Channel) -> float:
    """Half the cell's extent along the flow in its current pose, spicules included (um)."""
    p = pose(cell.state, cell.params, channel)
    c, s = math.cos(p.angle_rad), math.sin(p.angle_rad)
    return math.hypot(p.semi_along_um * c, p.semi_across_um * s) * (1 + cell.params.crenation)


def _inlet_clear(last: _Cell) -> bool:
    """Whether the last cell to enter is far enough in for the next one to enter."""
    entry = -last.params.radius_um * (1 + last.params.crenation) * 1.6
    return last.state.x_um - entry >= ENTRY_HEADWAY_DIAMETERS * 2.0 * last.params.radius_um


def render_video(spec: VideoSpec, seed: int, sink, truth_handle) -> dict:
    """Render one recording frame by frame into ``sink`` and its truth into ``truth_handle``.

    Returns a summary: ``n_cells`` (cells seen), ``n_frames`` and ``preview`` (the frame
    whose cell is nearest the centre of the field, for contact sheets).
    """
    channel = channel_by_name(spec.geometry)
    rng = np.random.default_rng(np.random.SeedSequence([seed, spec.index]))
    session_rng = np.random.default_rng(spec.donor.dust_seed)
    optics = optics_for_focus(spec.focus, channel.um_per_px, float(rng.normal(0, 0.25)))
    background = static_background(
        channel, session_rng, spec.donor.lamp, optics, n_dust=int(session_rng.integers(6, 16))
    )
    flicker = Flicker(
        ripple_amp=float(rng.uniform(0.002, 0.008)), ripple_hz=100.0,
        drift_amp=float(rng.uniform(0.005, 0.015)), drift_hz=float(rng.uniform(0.5, 3.0)),
        phase=float(rng.uniform(0, 2 * math.pi)),
    )  # fmt: skip
    cell_rng = np.random.default_rng(np.random.SeedSequence([seed, spec.index, 1]))
    noise_rng = np.random.default_rng(np.random.SeedSequence([seed, spec.index, 2]))
    mixture_rng = (np.random.default_rng(np.random.SeedSequence([seed, spec.index, 3]))
                   if spec.mixture is not None else None)
    dt = 1.0 / spec.fps
    fov_w = channel.fov_um[0]
    continuous = spec.mode == "continuous"
    pending = [] if continuous else _arrival_frames(rng, spec)
    next_arrival = rng.exponential(spec.arrival_gap_frames) if continuous else math.inf
    waiting = False
    active: list[_Cell] = []
    seen: set[int] = set()
    next_id = 0
    best = (math.inf, None)
    start = min([0, *pending])
    for frame_no in range(start, spec.n_frames):
        while pending and pending[0] <= frame_no:
            pending.pop(0)
            active.append(_new_cell(cell_rng, spec, channel, next_id, mixture_rng))
            next_id += 1
        while continuous and next_arrival <= frame_no:
            if active and not _inlet_clear(active[-1]):
                # the inlet is still occupied: this cell enters when it clears, and the
                # Poisson clock restarts then (no backlog queues up behind the inlet)
                next_arrival = frame_no + 1
                waiting = True
                break
            active.append(_new_cell(cell_rng, spec, channel, next_id, mixture_rng))
            next_id += 1
            if waiting:
                next_arrival = frame_no
                waiting = False
            next_arrival += rng.exponential(spec.arrival_gap_frames)
        poses = []
        if frame_no >= 0:
            for cell in active:
                p = pose(cell.state, cell.params, channel)
                row = truth_row(cell.cell_id, p, cell.params.crenation, channel)
                if row is None:
                    continue
                poses.append((p, cell.look))
                seen.add(cell.cell_id)
                truth_handle.write(
                    f"{frame_no}\t{row.cell_id}\t{row.x:.2f}\t{row.y:.2f}\t{row.bbox_x}\t"
                    f"{row.bbox_y}\t{row.bbox_w}\t{row.bbox_h}\t{row.angle:.1f}\t"
                    f"{row.major_px:.2f}\t{row.minor_px:.2f}\t{cell.condition}\t"
                    f"{spec.donor.donor}\n"
                )
            img = composite(background, flicker.gain(frame_no * dt), poses, optics, channel,
                            spec.donor.noise, noise_rng)  # fmt: skip
            sink.write(img)
            for p, _ in poses:
                off = abs(p.x_um - 0.5 * fov_w)
                if off < best[0]:
                    best = (off, img)
        # Advance; in single file (the constriction) a cell cannot pass the one ahead and
        # keeps the interaction gap to it (half lengths along the flow plus the gap).
        lead_x, lead_half = math.inf, 0.0
        for cell in active:
            cell.state = advance(cell.state, cell.params, channel, dt)
            if continuous:
                half = _half_length_um(cell, channel)
                gap = max(CONTACT_FILM_UM,
                          INTERACTION_WIDTHS * float(channel.width_um(cell.state.x_um)))
                limit = lead_x - lead_half - half - gap
                if cell.state.x_um > limit:
                    cell.state = CellState(limit, cell.state.deformation,
                                           cell.state.flip, cell.state.membrane)  # fmt: skip
                    half = _half_length_um(cell, channel)
                lead_x, lead_half = cell.state.x_um, half
        active = [c for c in active if c.state.x_um - 2.5 * c.params.radius_um < fov_w]
    return {"n_cells": len(seen), "n_frames": spec.n_frames, "preview": best[1]}


def sample_sheet_row(spec: VideoSpec, video_rel: str, truth_rel: str) -> dict:
    """The sample-sheet row of a recording."""
    channel = channel_by_name(spec.geometry)
    return {
        "sample": spec.sample, "path": video_rel, "donor": spec.donor.donor,
        "condition": spec.condition, "focus": spec.focus, "session": spec.donor.session,
        "fps": spec.fps, "um_per_px": channel.um_per_px, "geometry": spec.geometry,
        "mode": spec.mode, "truth": truth_rel,
    }  # fmt: skip


def write_video(spec: VideoSpec, seed: int, outdir: Path, video_format: str) -> dict:
    """Write one recording (video + truth table) under ``outdir``; return its summary."""
    from rbcflow.io.atomic import atomic_path
    from rbcflow.simulate.writer import VideoSink, video_extension

    channel = channel_by_name(spec.geometry)
    video_rel = f"videos/{spec.sample}.{video_extension(video_format)}"
    truth_rel = f"truth/{spec.sample}.tsv"
    (outdir / "truth").mkdir(parents=True, exist_ok=True)
    with (
        atomic_path(outdir / truth_rel) as truth_tmp,
        open(truth_tmp, "w", encoding="utf-8", newline="\n") as truth_handle,
        VideoSink(outdir / video_rel, video_format, channel.width_px, channel.height_px,
                  spec.fps) as sink,
    ):  # fmt: skip
        truth_handle.write("\t".join(TRUTH_COLUMNS) + "\n")
        summary = render_video(spec, seed, sink, truth_handle)
    summary["row"] = sample_sheet_row(spec, video_rel, truth_rel)
    return summary


#: Mixture recordings take spec indices from here on, so their random streams never
#: coincide with those of a dataset's recordings (indices 0, 1, ...).
MIXTURE_INDEX_BASE = 1_000_000


def plan_mixture(
    shares: dict[str, float],
    index: int = 0,
    preset: str = "tiny",
    seed: int = 2024,
    n_frames: int = 3000,
    donor_number: int | None = None,
    effect_size: float = 1.0,
    sample: str | None = None,
    arrival_gap_frames: float | None = None,
) -> VideoSpec:
    """A continuous, in-focus recording whose cells are a known mixture of conditions.

    Parameters
    ----------
    shares : condition -> probability that a cell is of it (adding up to 1).
    index : number of this mixture recording (seeds its random streams).
    preset, seed : the dataset whose donors and arrival rate it shares; by default the
        donor is one the preset does not have (number ``n_donors + 1 + index``), so a
        model trained on the preset has never seen it.
    n_frames : length of the recording (about one cell per 50 frames at the tiny
        preset's arrival rate).
    donor_number : the donor (1-based) to use instead.
    effect_size : as for :func:`plan_dataset`.
    sample : sample name (default ``<donor>_mix<index+1>_c1``).
    arrival_gap_frames : mean frames between arrivals (default: the preset's).
    """
    p = PRESETS[preset]
    number = donor_number or p.n_donors + 1 + index
    donor = make_donors(max(number, p.n_donors), seed)[number - 1]
    conditions = tuple(shares)
    params = {c: condition_params(c, effect_size) for c in conditions}
    mixture = Mixture(tuple((c, float(shares[c])) for c in conditions), params)
    return VideoSpec(
        MIXTURE_INDEX_BASE + index, sample or f"{donor.donor}_mix{index + 1}_c1", donor,
        "", "in", "constriction", "continuous", n_frames, CONTINUOUS_FPS,
        params[conditions[0]],
        p.arrival_gap_frames if arrival_gap_frames is None else arrival_gap_frames,
        mixture,
    )


def truth_composition(truth_path: str | Path) -> dict[str, int]:
    """Cells per condition in a truth table (each cell counted once)."""
    import pandas as pd

    truth = pd.read_csv(truth_path, sep="\t", usecols=["cell_id", "condition"])
    cells = truth.drop_duplicates("cell_id")
    return {str(k): int(v) for k, v in cells["condition"].value_counts().sort_index().items()}


def simulate_mixtures(
    outdir: str | Path, specs: list[VideoSpec], seed: int = 2024,
    video_format: str = "avi_raw",
) -> Path:
    """Write mixture recordings, an unlabelled sample sheet and their true composition.

    Writes ``videos/``, ``truth/``, ``samples.tsv`` (the ``condition`` column empty: the
    sheet ``rbcflow predict`` takes) and ``composition.tsv`` (``sample``, ``condition``,
    ``share`` as planned, ``n_cells`` in the truth table). Returns the sample sheet.
    """
    import pandas as pd

    from rbcflow.io.atomic import write_text_atomic

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rows, composition = [], []
    for spec in specs:
        if spec.mixture is None:
            raise ValueError(f"{spec.sample}: not a mixture recording (see plan_mixture)")
        summary = write_video(spec, seed, outdir, video_format)
        rows.append(summary["row"])
        counts = truth_composition(outdir / summary["row"]["truth"])
        for condition, share in spec.mixture.shares:
            composition.append({"sample": spec.sample, "condition": condition,
                                "share": share, "n_cells": counts.get(condition, 0)})
    write_text_atomic(outdir / "composition.tsv", pd.DataFrame(composition).to_csv(
        sep="\t", index=False, lineterminator="\n"))
    sheet_path = outdir / "samples.tsv"
    write_text_atomic(sheet_path, pd.DataFrame(rows).to_csv(sep="\t", index=False,
                                                            lineterminator="\n"))
    return sheet_path
