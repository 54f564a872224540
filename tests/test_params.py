"""The chain's parameters: the schema is their one source, every value is checked, and the
pipeline identifier follows every resolved value."""

from __future__ import annotations

import dataclasses
import math

import pytest

from rbcflow.params import (
    CHAIN_SECTIONS,
    MEASURED_FIELDS,
    BackgroundParams,
    ClipParams,
    DetectParams,
    ParameterError,
    TrackParams,
    Units,
    background_params,
    clip_params,
    detect_params,
    fields_of_key,
    resolve_chain_params,
    section_with_defaults,
    track_params,
)

DATACLASSES = {"background": BackgroundParams, "detect": DetectParams, "track": TrackParams,
               "clips": ClipParams}
#: Fields that come from elsewhere than their own section of the config, and from where.
NOT_IN_SECTION = {("background", "seed"): "the top-level seed"}
FPS, UM_PER_PX = 500.0, 0.5


def _schema(section: str) -> dict:
    from rbcflow.config import load_schema

    return load_schema("config")["properties"][section]["properties"]


@pytest.mark.parametrize("section", CHAIN_SECTIONS)
def test_every_field_has_a_schema_key_and_every_key_a_field(section):
    fields = {f.name for f in dataclasses.fields(DATACLASSES[section])}
    exceptions = {name for (s, name) in NOT_IN_SECTION if s == section}
    measured = set(MEASURED_FIELDS.get(section, ()))
    keys = set(_schema(section))
    set_by_keys = {f for key in keys for f in fields_of_key(section, key)}
    assert sorted(fields - exceptions - measured - set_by_keys) == [], \
        "fields without a schema key"
    assert sorted(set_by_keys - fields) == [], "schema keys no field receives"
    assert not exceptions & keys, "an exception that is also a key of the section"
    for key, spec in _schema(section).items():
        assert "default" in spec, f"{section}.{key} states no default"


def test_dataclasses_have_no_defaults():
    for cls in DATACLASSES.values():
        for f in dataclasses.fields(cls):
            assert f.default is dataclasses.MISSING, f"{cls.__name__}.{f.name}"
            assert f.default_factory is dataclasses.MISSING, f"{cls.__name__}.{f.name}"


def test_schema_defaults_reach_the_dataclasses():
    params = resolve_chain_params({}, FPS, UM_PER_PX)
    for section in CHAIN_SECTIONS:
        resolved = params.as_dict()[section]
        for key, spec in _schema(section).items():
            if spec["default"] is not None and fields_of_key(section, key) == (key,):
                assert resolved[key] == spec["default"], f"{section}.{key}"
    # the physical keys, converted with the recording's units (500 fps, 0.5 um/px)
    assert params.detect.min_area_px == 16  # 4 um^2 / 0.25 um^2
    assert params.detect.cell_diameter_px == 15.0
    assert params.track.max_displacement_px == 80.0  # 20 mm/s / 500 fps / 0.5 um
    assert params.track.max_gap_frames == 1  # 1.5 ms at 500 fps, rounded half up
    assert params.clips.crop_px == 32  # 16 um
    assert params.detect.threshold is None and params.detect.auto_threshold
    assert params.detect.polarity == "auto" and params.detect.auto_polarity
    # the documented conversions: a null detection blur is the background's blur, the
    # background's sample seed is the top-level seed
    assert params.detect.blur_sigma == params.background.blur_sigma
    from rbcflow.config import load_schema

    assert params.background.seed == load_schema("config")["properties"]["seed"]["default"]
    blurred = resolve_chain_params({"background": {"blur_sigma": 3.0}, "seed": 9}, FPS, 1.0)
    assert blurred.detect.blur_sigma == 3.0 and blurred.background.seed == 9
    own = resolve_chain_params({"background": {"blur_sigma": 3.0},
                                "detect": {"blur_sigma": 1.0}}, FPS, 1.0)
    assert own.detect.blur_sigma == 1.0


@pytest.mark.parametrize("name", ["fps", "um_per_px"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 0.0, -1.0, -0.001])
def test_recording_units_must_be_finite_and_positive(name, bad):
    units = {"fps": FPS, "um_per_px": UM_PER_PX, name: bad}
    with pytest.raises(ParameterError, match=rf"^{name} must be a finite number > 0"):
        resolve_chain_params({}, units["fps"], units["um_per_px"])


def test_unknown_keys_are_rejected_with_their_names():
    with pytest.raises(ParameterError, match=r"unknown detect parameter\(s\) \['treshold'\]"):
        resolve_chain_params({"detect": {"treshold": 4}}, FPS, UM_PER_PX)
    with pytest.raises(ParameterError, match=r"unknown track parameter\(s\) \['max_gap'\]"):
        resolve_chain_params({"track": {"max_gap": 3}}, FPS, UM_PER_PX)
    for helper, section in ((detect_params, "detect"), (track_params, "track"),
                            (clip_params, "clips"), (background_params, "background")):
        with pytest.raises(ParameterError, match=rf"unknown {section} parameter.*'nope'"):
            helper(nope=1)
    with pytest.raises(ParameterError, match="unknown clips"):
        section_with_defaults("clips", {"crop": 3})
    # the seed is the top-level key, not one of the background section
    with pytest.raises(ParameterError, match=r"unknown background parameter\(s\) \['seed'\]"):
        resolve_chain_params({"background": {"seed": 1}}, FPS, UM_PER_PX)


@pytest.mark.parametrize("section, values, key", [
    ("background", {"method": "mean"}, "background.method"),
    ("detect", {"polarity": "darker"}, "detect.polarity"),
    ("detect", {"threshold": math.nan}, "detect.threshold"),
    ("detect", {"threshold_k": 0.0}, "detect.threshold_k"),
    ("detect", {"polarity_share": 0.5}, "detect.threshold_k must be > 0, threshold_min >= 0 "
                                        "and polarity_share"),
    ("track", {"flow_direction": "up"}, "track.flow_direction"),
    ("track", {"velocity_smoothing": 0.0}, "track.velocity_smoothing"),
    ("clips", {"mode": "tracks"}, "clips.mode"),
    ("clips", {"crop_px": 0}, "clips.crop_px"),
    ("clips", {"frame_start": 100, "frame_stop": 100}, "clips.frame_stop"),
])
def test_out_of_range_values_name_their_key(section, values, key):
    with pytest.raises(ParameterError, match=key.replace(".", r"\.")):
        resolve_chain_params({section: values}, FPS, UM_PER_PX)


def _another_value(key: str, spec: dict, default):
    """A valid value of a schema key other than its default."""
    if "enum" in spec:
        return next(v for v in spec["enum"] if v != default)
    if "anyOf" in spec:  # detect.threshold: auto or a number
        return 4.5
    kind = spec["type"]
    if kind == "boolean":
        return not default
    if default is None and "blur_sigma" not in key:  # a pixel override of a physical key
        return 999
    if default is None:  # detect.blur_sigma: null resolves to the background's (0)
        return 1.5
    if kind == "integer":
        return default + 1
    if key.endswith(("_um", "_um2", "_mm_s", "_ms")):
        return default * 2  # enough to move the rounded pixel value
    return default * 0.9 if default else 0.5


def _all_single_changes():
    for section in CHAIN_SECTIONS:
        for key, spec in _schema(section).items():
            yield section, key, _another_value(key, spec, spec["default"])


def test_pipeline_id_changes_with_every_single_parameter():
    base = resolve_chain_params({}, FPS, UM_PER_PX)
    seen = {base.pipeline_id}
    n = 0
    for section, key, value in _all_single_changes():
        changed = resolve_chain_params({section: {key: value}}, FPS, UM_PER_PX)
        fields = fields_of_key(section, key)
        for name in fields:
            assert changed.as_dict()[section][name] != base.as_dict()[section][name], \
                (section, key)
        differences = [d.split(":")[0] for d in changed.matches(base.as_dict())]
        # the detection blur (auto) follows the background's; comparisons of auto values
        # leave it out, as it may differ between recordings by design
        follows = []
        if (section, key) == ("background", "blur_sigma"):
            assert changed.detect.blur_sigma == value
        assert differences == [f"{section}.{name}" for name in fields] + follows, key
        assert changed.pipeline_id not in seen, (section, key)
        seen.add(changed.pipeline_id)
        n += 1
    assert n == sum(len(_schema(s)) for s in CHAIN_SECTIONS)
    for changed in (resolve_chain_params({"seed": 43}, FPS, UM_PER_PX),
                    resolve_chain_params({}, FPS * 2, UM_PER_PX),
                    resolve_chain_params({}, FPS, UM_PER_PX * 2)):
        assert changed.pipeline_id not in seen
        seen.add(changed.pipeline_id)
    # the methods are spelled out in front of the hash
    mog2 = resolve_chain_params({"background": {"method": "mog2"}}, FPS, UM_PER_PX)
    assert mog2.pipeline_id.startswith("bg-mog2:detect-auto:link-+x:clips-track:")


def test_pipeline_id_stays_when_nothing_resolved_changes():
    base = resolve_chain_params({}, FPS, UM_PER_PX)
    spelled_out = {section: {k: s["default"] for k, s in _schema(section).items()}
                   for section in CHAIN_SECTIONS}
    assert resolve_chain_params(spelled_out, FPS, UM_PER_PX).pipeline_id == base.pipeline_id
    # same values in other types (ints for floats, a unit given as an int)
    as_ints = {"detect": {"threshold_k": 3}, "track": {"max_speed_mm_s": 20}}
    assert resolve_chain_params(as_ints, int(FPS), UM_PER_PX).pipeline_id == base.pipeline_id
    # a pixel override equal to what its physical key converts to
    in_pixels = {"track": {"max_displacement_px": 80, "max_gap_frames": 1},
                 "clips": {"crop_px": 32}}
    assert resolve_chain_params(in_pixels, FPS, UM_PER_PX).pipeline_id == base.pipeline_id
    # a detection blur equal to what null resolves to, and sections the chain does not read
    explicit_blur = {"detect": {"blur_sigma": "auto"}}
    assert resolve_chain_params(explicit_blur, FPS, UM_PER_PX).pipeline_id == base.pipeline_id
    others = {"split": {"train": 0.5}, "train": {"epochs": 1}, "report": {"example_clips": 1},
              "results": "elsewhere", "preprocess": {"batch_mb": 1}}
    assert resolve_chain_params(others, FPS, UM_PER_PX).pipeline_id == base.pipeline_id
    assert base.matches(base.as_dict()) == []


def test_one_off_helpers_equal_the_resolved_sections():
    params = resolve_chain_params({"detect": {"threshold": 9}, "seed": 0}, FPS, UM_PER_PX)
    units = Units(FPS, UM_PER_PX)
    assert detect_params(units, threshold=9) == params.detect
    assert track_params(units) == params.track and clip_params(units) == params.clips
    assert background_params(seed=0) == params.background


def test_physical_keys_follow_the_magnification_and_frame_rate():
    base = resolve_chain_params({}, FPS, UM_PER_PX)
    zoomed = resolve_chain_params({}, FPS, UM_PER_PX / 2)
    faster = resolve_chain_params({}, FPS * 2, UM_PER_PX)
    assert zoomed.detect.min_area_px == 4 * base.detect.min_area_px
    assert zoomed.clips.crop_px == 2 * base.clips.crop_px
    assert zoomed.track.max_displacement_px == 2 * base.track.max_displacement_px
    assert faster.track.max_displacement_px == base.track.max_displacement_px / 2
    assert faster.track.max_gap_frames == 2  # 1.5 ms at 1000 fps
    # pixel keys override the physical ones
    fixed = resolve_chain_params({"detect": {"min_area_px": 50}}, FPS, UM_PER_PX / 2)
    assert fixed.detect.min_area_px == 50


def test_calibration_sets_auto_values_once_and_keeps_fixed_ones():
    import numpy as np

    from rbcflow import calibrate

    rng = np.random.default_rng(1)
    frames = [np.clip(np.rint(100 + rng.normal(0, 2.0, (60, 80))), 0, 255) for _ in range(4)]
    frames[0][10:20, 10:20] = 40  # a dark cell
    noise = calibrate.noise_record(calibrate.difference_histogram(frames, np.full((60, 80),
                                                                                  100.0)), 4)
    auto = resolve_chain_params({}, FPS, UM_PER_PX).detect
    calibrated = auto.calibrated(noise)
    assert calibrated.noise_sigma == pytest.approx(2.0, rel=0.05)
    assert calibrated.threshold == pytest.approx(3 * calibrated.noise_sigma, abs=0.01)
    assert calibrated.polarity == "absolute"  # 100 contrast pixels: too few to tell
    assert calibrated.calibrated(noise) is calibrated
    fixed = resolve_chain_params({"detect": {"threshold": 9, "polarity": "dark",
                                             "blur_sigma": None}}, FPS, UM_PER_PX).detect
    assert fixed.calibrated(None) is fixed
    with pytest.raises(ParameterError, match="no noise measurement"):
        auto.calibrated(None)
