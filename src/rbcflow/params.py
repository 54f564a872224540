"""The parameters of the per-recording chain, resolved once per recording.

The configuration schema (``workflow/schemas/config.schema.yaml``) is the one source of
every default: the dataclasses below declare no defaults of their own, and
:func:`resolve_chain_params` fills a config section from the schema and turns it into the
values one recording's chain runs with. Converting what the config states into what the
code uses happens here and nowhere else, so two stages can never disagree about a
parameter (the detection blur that defaults to the background's, for instance).

Every output of the chain records :meth:`ChainParams.as_dict` and
:attr:`ChainParams.pipeline_id`, a short identifier built from the method names and every
resolved value (in the spirit of dcnum's pipeline identifier): two files made with
different settings never carry the same identifier.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

POLARITIES = ("dark", "bright", "absolute")
BACKGROUND_METHODS = ("median", "mog2", "rolling_median")
FLOW_DIRECTIONS = ("+x", "-x", "+y", "-y", "any")
CLIP_MODES = ("track", "frame")
CHAIN_SECTIONS = ("background", "detect", "track", "clips")


class ParameterError(ValueError):
    """A parameter is out of range or inconsistent; the message names the key."""


@functools.lru_cache(maxsize=1)
def _schema_sections() -> dict[str, dict]:
    from rbcflow.config import load_schema

    return load_schema("config")["properties"]


def schema_defaults(section: str) -> dict[str, Any]:
    """Default of every key of a config section, as the schema states it."""
    properties = _schema_sections()[section]["properties"]
    return {key: spec.get("default") for key, spec in properties.items()}


def section_with_defaults(section: str, values: Mapping[str, Any] | None) -> dict[str, Any]:
    """A config section completed from the schema; unknown keys are an error (typos)."""
    defaults = schema_defaults(section)
    values = dict(values or {})
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise ParameterError(f"unknown {section} parameter(s) {unknown}; known: {sorted(defaults)}")
    return {**defaults, **values}


def _finite_positive(name: str, value: object) -> float:
    if isinstance(value, bool):
        raise ParameterError(f"{name} must be a finite number > 0, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a finite number > 0, got {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise ParameterError(f"{name} must be a finite number > 0, got {value!r}")
    return number


@dataclass(frozen=True)
class BackgroundParams:
    """How a recording's background is modelled (``background:`` section)."""

    method: str
    n_frames: int
    blur_sigma: float
    mog2_history: int
    mog2_var_threshold: float
    rolling_window: int
    seed: int

    def __post_init__(self) -> None:
        if self.method not in BACKGROUND_METHODS:
            raise ParameterError(f"background.method must be one of {BACKGROUND_METHODS}, "
                                 f"not {self.method!r}")
        if self.n_frames < 1 or self.rolling_window < 1 or self.blur_sigma < 0:
            raise ParameterError("background.n_frames and rolling_window must be >= 1 and "
                                 "blur_sigma >= 0")


@dataclass(frozen=True)
class DetectParams:
    """Foreground mask and blob detection, in pixels of one recording (``detect:``).

    Attributes
    ----------
    polarity : which sign of ``frame - background`` counts as foreground.
    threshold : grey-level difference above which a pixel is foreground.
    min_area_px : blobs with fewer pixels (after hole filling and re-joining) are noise.
    rejoin_split_cells, rejoin_max_gap_px, rejoin_max_circularity : merge fragments of a
        cell whose rim and centre are both close to the background (seed 001, 3.6.1).
    close_px : side of a morphological closing of the mask (0: none).
    blur_sigma : Gaussian blur of every frame before the comparison (0: none); resolved to
        the background's blur unless the config sets it.
    split_touching, split_max_solidity, split_min_waist, split_min_elongation,
    split_min_part_solidity, split_hump_separation, split_profile_smoothing_px : the rule
        that cuts a blob of two touching cells at its waist (see ``rbcflow.detect``).
    """

    polarity: str
    threshold: float
    min_area_px: int
    rejoin_split_cells: bool
    rejoin_max_gap_px: int
    rejoin_max_circularity: float
    close_px: int
    blur_sigma: float
    split_touching: bool
    split_max_solidity: float
    split_min_waist: float
    split_min_elongation: float
    split_min_part_solidity: float
    split_hump_separation: float
    split_profile_smoothing_px: int

    def __post_init__(self) -> None:
        if self.polarity not in POLARITIES:
            raise ParameterError(f"detect.polarity must be one of {POLARITIES}, "
                                 f"not {self.polarity!r}")
        if not (math.isfinite(self.threshold) and self.threshold >= 0):
            raise ParameterError(f"detect.threshold must be >= 0, not {self.threshold}")
        if self.min_area_px < 1:
            raise ParameterError(f"detect.min_area_px must be >= 1, not {self.min_area_px}")
        if self.rejoin_max_gap_px < 0 or self.close_px < 0 or self.blur_sigma < 0:
            raise ParameterError("detect.rejoin_max_gap_px, close_px and blur_sigma must be >= 0")
        if not 0 < self.split_min_waist < 1 or not 0 < self.split_max_solidity <= 1:
            raise ParameterError("detect.split_min_waist must be in (0, 1) and "
                                 "split_max_solidity in (0, 1]")
        if self.split_min_elongation < 1 or self.split_profile_smoothing_px < 1:
            raise ParameterError("detect.split_min_elongation and split_profile_smoothing_px "
                                 "must be >= 1")


@dataclass(frozen=True)
class TrackParams:
    """Linking and rejection, in pixels and frames of one recording (``track:``).

    Attributes
    ----------
    max_displacement_px : gate on the distance between a track's predicted position and
        a detection.
    flow_direction : ``+x`` (left to right), ``-x``, ``+y``, ``-y`` or ``any``.
    max_backward_px : motion against the flow tolerated per frame (detection jitter).
    max_gap_frames : frames a track may go undetected and still be continued.
    min_length : tracks with fewer detections (or fewer detections wholly in view) are
        rejected.
    border_margin_px : a box closer than this to the frame edge touches the border.
    collision_distance_factor : two cells whose centres are closer than this many cell
        lengths (mean major axis) in one frame are a collision.
    merge_area_ratio : a detection larger than this times the track's typical area is two
        merged cells.
    satellite_area_ratio, satellite_gap_px : a blob smaller than this fraction of a
        neighbouring blob whose box lies within this gap is a satellite (a piece of the
        cell's halo); satellites are not linked.
    velocity_smoothing : weight of the newest step in a track's velocity estimate.
    """

    max_displacement_px: float
    flow_direction: str
    max_backward_px: float
    max_gap_frames: int
    min_length: int
    border_margin_px: int
    collision_distance_factor: float
    merge_area_ratio: float
    satellite_area_ratio: float
    satellite_gap_px: float
    velocity_smoothing: float

    def __post_init__(self) -> None:
        if self.flow_direction not in FLOW_DIRECTIONS:
            raise ParameterError(f"track.flow_direction must be one of {FLOW_DIRECTIONS}, "
                                 f"not {self.flow_direction!r}")
        if not self.max_displacement_px > 0 or self.max_backward_px < 0:
            raise ParameterError("track.max_displacement_px must be > 0 and "
                                 "max_backward_px >= 0")
        if self.max_gap_frames < 0 or self.min_length < 2:
            raise ParameterError("track.max_gap_frames must be >= 0 and min_length >= 2")
        if not 0 < self.velocity_smoothing <= 1:
            raise ParameterError("track.velocity_smoothing must be in (0, 1]")

    @property
    def flow_axis(self) -> int:
        """0 when cells flow along x (or in any direction), 1 along y."""
        return 1 if self.flow_direction in ("+y", "-y") else 0


@dataclass(frozen=True)
class ClipParams:
    """How clips are cut (``clips:``)."""

    mode: str
    crop_px: int
    size_px: int
    n_frames: int
    mask_outside_cell: bool
    mask_grow_px: int
    frame_start: int
    frame_stop: int
    frame_step: int
    frame_scale: float
    compression: str

    def __post_init__(self) -> None:
        if self.mode not in CLIP_MODES:
            raise ParameterError(f"clips.mode must be one of {CLIP_MODES}, not {self.mode!r}")
        for key in ("crop_px", "size_px", "n_frames", "frame_step"):
            if getattr(self, key) < 1:
                raise ParameterError(f"clips.{key} must be >= 1, got {getattr(self, key)}")
        if self.frame_stop <= self.frame_start:
            raise ParameterError("clips.frame_stop must be greater than clips.frame_start")
        if not 0 < self.frame_scale <= 1:
            raise ParameterError("clips.frame_scale must be in (0, 1]")
        if self.mask_grow_px < 0:
            raise ParameterError("clips.mask_grow_px must be >= 0")

    @property
    def frame_numbers(self) -> list[int]:
        """Frames of a ``frame``-mode clip."""
        return list(range(self.frame_start, self.frame_stop, self.frame_step))


@dataclass(frozen=True)
class ChainParams:
    """Everything one recording's chain runs with, resolved for its fps and pixel size."""

    fps: float
    um_per_px: float
    background: BackgroundParams
    detect: DetectParams
    track: TrackParams
    clips: ClipParams

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values, one mapping per section (and the recording's units)."""
        out: dict[str, Any] = {"units": {"fps": self.fps, "um_per_px": self.um_per_px}}
        for name in CHAIN_SECTIONS:
            out[name] = dataclasses.asdict(getattr(self, name))
        return out

    @property
    def pipeline_id(self) -> str:
        """``<method>:<detector>:<linker>:<clips>:<hash>``, the hash over every value."""
        values = self.as_dict()
        digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]
        return (f"bg-{self.background.method}:detect-{self.detect.polarity}:"
                f"link-{self.track.flow_direction}:clips-{self.clips.mode}:{digest}")

    def matches(self, recorded: Mapping[str, Any], sections: tuple[str, ...] = CHAIN_SECTIONS,
                ignore: tuple[str, ...] = ()) -> list[str]:
        """Keys whose recorded value (``as_dict`` layout) differs from this one's."""
        mine = self.as_dict()
        differences = []
        for section in sections:
            theirs = dict(recorded.get(section) or {})
            for key, value in mine[section].items():
                name = f"{section}.{key}"
                if name not in ignore and theirs.get(key) != value:
                    differences.append(f"{name}: {theirs.get(key)!r} here, {value!r} expected")
        return differences


def _background(section: Mapping[str, Any], seed: int) -> BackgroundParams:
    return BackgroundParams(
        method=str(section["method"]), n_frames=int(section["n_frames"]),
        blur_sigma=float(section["blur_sigma"]), mog2_history=int(section["mog2_history"]),
        mog2_var_threshold=float(section["mog2_var_threshold"]),
        rolling_window=int(section["rolling_window"]), seed=int(seed),
    )


def _detect(section: Mapping[str, Any], background: BackgroundParams) -> DetectParams:
    values = dict(section)
    # a blurred background needs equally blurred frames, or sharp walls become blobs
    if values["blur_sigma"] is None:
        values["blur_sigma"] = background.blur_sigma
    types = {f.name: f.type for f in dataclasses.fields(DetectParams)}
    cast = {"int": int, "float": float, "bool": bool, "str": str}
    return DetectParams(**{key: cast[types[key]](values[key]) for key in types})


def _track(section: Mapping[str, Any]) -> TrackParams:
    types = {f.name: f.type for f in dataclasses.fields(TrackParams)}
    cast = {"int": int, "float": float, "str": str}
    return TrackParams(**{key: cast[types[key]](section[key]) for key in types})


def _clips(section: Mapping[str, Any]) -> ClipParams:
    types = {f.name: f.type for f in dataclasses.fields(ClipParams)}
    cast = {"int": int, "float": float, "bool": bool, "str": str}
    return ClipParams(**{key: cast[types[key]](section[key]) for key in types})


def resolve_chain_params(
    config: Mapping[str, Any] | None,
    fps: float,
    um_per_px: float,
) -> ChainParams:
    """The chain's parameters for one recording.

    Parameters
    ----------
    config : a workflow configuration (or any mapping holding some of its ``background``,
        ``detect``, ``track``, ``clips`` sections and ``seed``); missing keys take the
        schema's defaults.
    fps, um_per_px : the recording's frame rate and pixel size (sample sheet).
    """
    config = dict(config or {})
    fps = _finite_positive("fps", fps)
    um_per_px = _finite_positive("um_per_px", um_per_px)
    sections = {name: section_with_defaults(name, config.get(name)) for name in CHAIN_SECTIONS}
    seed = int(config.get("seed", _schema_sections()["seed"]["default"]))
    background = _background(sections["background"], seed)
    return ChainParams(
        fps=fps, um_per_px=um_per_px, background=background,
        detect=_detect(sections["detect"], background), track=_track(sections["track"]),
        clips=_clips(sections["clips"]),
    )


def detect_params(**overrides: Any) -> DetectParams:
    """Detection parameters from the schema's defaults with ``overrides`` (for one-off use)."""
    background = _background(schema_defaults("background"), 0)
    return _detect(section_with_defaults("detect", overrides), background)


def track_params(**overrides: Any) -> TrackParams:
    """Tracking parameters from the schema's defaults with ``overrides``."""
    return _track(section_with_defaults("track", overrides))


def clip_params(**overrides: Any) -> ClipParams:
    """Clip parameters from the schema's defaults with ``overrides``."""
    return _clips(section_with_defaults("clips", overrides))


def background_params(seed: int = 0, **overrides: Any) -> BackgroundParams:
    """Background parameters from the schema's defaults with ``overrides``."""
    return _background(section_with_defaults("background", overrides), seed)
