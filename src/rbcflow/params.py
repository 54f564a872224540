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
AUTO = "auto"
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
    use_instrument: bool
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
    polarity : which sign of ``frame - background`` counts as foreground; ``auto`` until
        :meth:`calibrated` has seen the recording's background.
    threshold : grey-level difference above which a pixel is foreground; ``None`` until
        calibrated when the config says ``auto``.
    auto_threshold, auto_polarity : whether the two are set per recording.
    threshold_k, threshold_min, polarity_share : the rules of ``auto`` (see
        ``rbcflow.calibrate``).
    noise_sigma : the recording's noise (grey levels) the calibration measured.
    contrast : the figures the polarity was chosen from (dark and bright shares).
    cell_diameter_px : the expected cell diameter on this recording (QC, inspection).
    min_area_px : blobs with fewer pixels (after hole filling and re-joining) are noise.
    rejoin_split_cells, rejoin_max_gap_px, rejoin_max_circularity : merge fragments of a
        cell whose rim and centre are both close to the background (seed 001, 3.6.1).
    close_px : side of a morphological closing of the mask (0: none).
    blur_sigma : Gaussian blur of every frame before the comparison (0: none); resolved to
        the background's blur unless the config sets it (``auto``: chosen by
        :meth:`calibrated` from the noise, at least the background's).
    auto_blur, blur_when_noise_above : whether the blur follows the noise, and above
        which noise it blurs more than the background.
    split_touching, split_max_solidity, split_min_waist, split_min_elongation,
    split_min_part_solidity, split_hump_separation, split_profile_smoothing_px : the rule
        that cuts a blob of two touching cells at its waist (see ``rbcflow.detect``).
    """

    polarity: str
    threshold: float | None
    auto_threshold: bool
    auto_polarity: bool
    threshold_k: float
    threshold_min: float
    polarity_share: float
    noise_sigma: float | None
    contrast: tuple[tuple[str, float], ...] | None
    cell_diameter_px: float
    min_area_px: int
    rejoin_split_cells: bool
    rejoin_max_gap_px: int
    rejoin_max_circularity: float
    close_px: int
    blur_sigma: float
    auto_blur: bool
    blur_when_noise_above: float
    split_touching: bool
    split_max_solidity: float
    split_min_waist: float
    split_min_elongation: float
    split_min_part_solidity: float
    split_hump_separation: float
    split_profile_smoothing_px: int

    def __post_init__(self) -> None:
        if self.polarity not in (*POLARITIES, AUTO):
            raise ParameterError(f"detect.polarity must be one of {(*POLARITIES, AUTO)}, "
                                 f"not {self.polarity!r}")
        if self.threshold is not None and not (math.isfinite(self.threshold)
                                               and self.threshold >= 0):
            raise ParameterError(f"detect.threshold must be >= 0, not {self.threshold}")
        if not (self.threshold_k > 0 and self.threshold_min >= 0
                and 0.5 < self.polarity_share <= 1):
            raise ParameterError("detect.threshold_k must be > 0, threshold_min >= 0 and "
                                 "polarity_share in (0.5, 1]")
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

    @property
    def calibrated_already(self) -> bool:
        """Whether threshold and polarity are known (fixed, or set from a background)."""
        return (self.threshold is not None and self.polarity != AUTO
                and not (self.auto_blur and self.noise_sigma is None))

    def calibrated(self, noise: Mapping[str, Any] | None, source: object = "") -> DetectParams:
        """Threshold and polarity set from a background's noise record (if ``auto``).

        ``noise`` is ``BackgroundModel.params["noise"]`` (``rbcflow.calibrate``). Fixed
        values are kept; calibrating twice gives the same result.
        """
        if self.calibrated_already:
            return self
        from rbcflow import calibrate

        if not noise:
            raise ParameterError(
                f"{source}: detect.threshold, polarity or blur_sigma is auto, but the "
                "background holds no noise measurement (a file from an older version: "
                "rebuild it, or give all three fixed values)")
        blur, counts, sigma = self.blur_sigma, calibrate.histogram_of(noise), None
        sigma = calibrate.noise_sigma(counts)
        if self.auto_blur:
            blur, counts, sigma = calibrate.choose_blur(noise, self.blur_sigma,
                                                        self.blur_when_noise_above)
        threshold = self.threshold
        if threshold is None:
            threshold = calibrate.choose_threshold(sigma, self.threshold_k, self.threshold_min)
        polarity, figures = self.polarity, None
        if polarity == AUTO:
            polarity, figures = calibrate.choose_polarity(counts, threshold,
                                                          self.polarity_share)
        contrast = None if figures is None else tuple(sorted(figures.items()))
        return dataclasses.replace(self, threshold=threshold, polarity=polarity,
                                   noise_sigma=round(sigma, 4), contrast=contrast,
                                   blur_sigma=blur)


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
    #: the ``qc`` section (limits of the QC verdict): judges the outputs, changes none of
    #: the chain's results, so it is not part of :meth:`as_dict` or the pipeline id
    qc: Mapping[str, Any] = dataclasses.field(compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values, one mapping per section (and the recording's units)."""
        out: dict[str, Any] = {"units": {"fps": self.fps, "um_per_px": self.um_per_px}}
        for name in CHAIN_SECTIONS:
            out[name] = dataclasses.asdict(getattr(self, name))
        contrast = out["detect"]["contrast"]
        out["detect"]["contrast"] = None if contrast is None else dict(contrast)
        return out

    def calibrated(self, background) -> ChainParams:
        """These parameters with ``auto`` detection settings set from ``background``.

        ``background`` is the recording's ``BackgroundModel``; its ``params["noise"]``
        holds the difference histogram measured while it was built.
        """
        detect = self.detect.calibrated(background.params.get("noise"),
                                        background.params.get("source", "background"))
        return self if detect is self.detect else dataclasses.replace(self, detect=detect)

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
        # values measured per recording differ between recordings by design
        if self.detect.auto_threshold:
            ignore = (*ignore, "detect.threshold")
        if self.detect.auto_polarity:
            ignore = (*ignore, "detect.polarity")
        if self.detect.auto_blur:
            ignore = (*ignore, "detect.blur_sigma")
        ignore = (*ignore, "detect.noise_sigma", "detect.contrast")
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
        use_instrument=bool(section["use_instrument"]),
        blur_sigma=float(section["blur_sigma"]), mog2_history=int(section["mog2_history"]),
        mog2_var_threshold=float(section["mog2_var_threshold"]),
        rolling_window=int(section["rolling_window"]), seed=int(seed),
    )


@dataclass(frozen=True)
class Units:
    """One recording's frame rate and pixel size: the only place units are converted."""

    fps: float
    um_per_px: float

    def px(self, um: float) -> float:
        """Micrometres as pixels."""
        return um / self.um_per_px

    def px2(self, um2: float) -> float:
        """Square micrometres as pixels."""
        return um2 / self.um_per_px**2

    def px_per_frame(self, mm_s: float) -> float:
        """A speed (mm/s) as pixels per frame."""
        return mm_s * 1000.0 / (self.fps * self.um_per_px)

    def frames(self, ms: float) -> float:
        """A duration (ms) as frames."""
        return ms * self.fps / 1000.0


def _whole(value: float) -> int:
    """Round half up (Python's round() rounds half to even)."""
    return int(math.floor(value + 0.5))


# Physical keys of the config, the pixel/frame key that overrides each, and the conversion.
_PHYSICAL: dict[str, dict[str, tuple[str, Any]]] = {
    "detect": {
        "min_area_px": ("min_area_um2", lambda u, v: max(_whole(u.px2(v)), 1)),
        "rejoin_max_gap_px": ("rejoin_max_gap_um", lambda u, v: _whole(u.px(v))),
        "split_profile_smoothing_px": ("split_profile_smoothing_um",
                                       lambda u, v: max(_whole(u.px(v)), 1)),
    },
    "track": {
        "max_displacement_px": ("max_speed_mm_s", lambda u, v: round(u.px_per_frame(v), 3)),
        "max_gap_frames": ("max_gap_ms", lambda u, v: _whole(u.frames(v))),
        "satellite_gap_px": ("satellite_gap_um", lambda u, v: round(u.px(v), 3)),
    },
    "clips": {
        "crop_px": ("crop_um", lambda u, v: max(_whole(u.px(v)), 8)),
    },
}


#: Fields measured on the recording (its background), not set by any config key.
MEASURED_FIELDS = {"detect": ("noise_sigma", "contrast")}


def fields_of_key(section: str, key: str) -> tuple[str, ...]:
    """The resolved fields a config key sets (a physical key sets its pixel field)."""
    for px_key, (physical_key, _) in _PHYSICAL.get(section, {}).items():
        if key in (px_key, physical_key):
            return (px_key,)
    derived = {("detect", "threshold"): ("threshold", "auto_threshold"),
               ("detect", "blur_sigma"): ("blur_sigma", "auto_blur"),
               ("detect", "polarity"): ("polarity", "auto_polarity"),
               ("detect", "cell_diameter_um"): ("cell_diameter_px",)}
    return derived.get((section, key), (key,))


def _in_pixels(name: str, section: Mapping[str, Any], units: Units) -> dict[str, Any]:
    """A section's physical keys converted for one recording (pixel keys win when set)."""
    values = dict(section)
    for px_key, (physical_key, convert) in _PHYSICAL.get(name, {}).items():
        physical = values.pop(physical_key)
        if values[px_key] is None:
            values[px_key] = convert(units, float(physical))
    return values


def _build(cls, values: Mapping[str, Any]):
    """A parameter dataclass from a mapping, each value cast to its field's type."""
    cast = {"int": int, "float": float, "bool": bool, "str": str}
    out = {}
    for f in dataclasses.fields(cls):
        value = values[f.name]
        kind = str(f.type).split(" |")[0]
        out[f.name] = value if value is None or kind not in cast else cast[kind](value)
    return cls(**out)


def _detect(section: Mapping[str, Any], background: BackgroundParams,
            units: Units) -> DetectParams:
    values = _in_pixels("detect", section, units)
    # a blurred background needs equally blurred frames, or sharp walls become blobs
    values["auto_blur"] = values["blur_sigma"] == AUTO
    if values["blur_sigma"] in (None, AUTO):
        values["blur_sigma"] = background.blur_sigma
    auto_threshold = values["threshold"] == AUTO
    values.update(
        threshold=None if auto_threshold else float(values["threshold"]),
        auto_threshold=auto_threshold, auto_polarity=values["polarity"] == AUTO,
        noise_sigma=None, contrast=None,
        cell_diameter_px=round(units.px(float(values.pop("cell_diameter_um"))), 3),
    )
    return _build(DetectParams, values)


def _track(section: Mapping[str, Any], units: Units) -> TrackParams:
    return _build(TrackParams, _in_pixels("track", section, units))


def _clips(section: Mapping[str, Any], units: Units) -> ClipParams:
    return _build(ClipParams, _in_pixels("clips", section, units))


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
    units = Units(fps, um_per_px)
    return ChainParams(
        fps=fps, um_per_px=um_per_px, background=background,
        detect=_detect(sections["detect"], background, units),
        track=_track(sections["track"], units), clips=_clips(sections["clips"], units),
        qc=section_with_defaults("qc", config.get("qc")),
    )


#: Units of the one-off helpers below (tests, benchmarks): the demo's zig-zag camera.
ONE_OFF_UNITS = Units(fps=1800.0, um_per_px=0.2875)


def detect_params(units: Units = ONE_OFF_UNITS, **overrides: Any) -> DetectParams:
    """Detection parameters from the schema's defaults with ``overrides`` (for one-off use).

    ``threshold`` and ``polarity`` default to ``auto``; pass numbers to fix them.
    """
    background = _background(schema_defaults("background"), 0)
    return _detect(section_with_defaults("detect", overrides), background, units)


def track_params(units: Units = ONE_OFF_UNITS, **overrides: Any) -> TrackParams:
    """Tracking parameters from the schema's defaults with ``overrides``."""
    return _track(section_with_defaults("track", overrides), units)


def clip_params(units: Units = ONE_OFF_UNITS, **overrides: Any) -> ClipParams:
    """Clip parameters from the schema's defaults with ``overrides``."""
    return _clips(section_with_defaults("clips", overrides), units)


def background_params(seed: int = 0, **overrides: Any) -> BackgroundParams:
    """Background parameters from the schema's defaults with ``overrides``."""
    return _background(section_with_defaults("background", overrides), seed)
