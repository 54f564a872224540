"""The QC verdict of a recording: ok on the simulator's recordings, never ok on pure noise,
suspect (with one warning naming the sign and the parameter) where settings do not fit."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from rbcflow.preprocess import preprocess_video
from rbcflow.qc import SIGNS, judge, qc_limits, track_figures, warning_text

INFO = {"sample": "rec", "donor": "D1", "condition": "native", "focus": "in",
        "session": "day1", "fps": 500.0, "um_per_px": 0.5}


def _noise_video(path, n_frames=200, sigma=3.0, seed=0, cells=False):
    """A static channel-like background (a smooth gradient), Gaussian noise, optionally
    dark round cells crossing it at 8 px/frame."""
    import cv2

    from rbcflow.simulate.writer import VideoSink

    rng = np.random.default_rng(seed)
    height, width = 64, 240
    x = np.linspace(0, 1, width, dtype=np.float32)
    background = 150 + 30 * x[None, :] + np.zeros((height, 1), np.float32)
    with VideoSink(path, "avi_raw", width, height, fps=500.0) as sink:
        for f in range(n_frames):
            image = background.copy()
            if cells:
                for start in range(0, n_frames, 40):
                    cx = -10 + 8 * (f - start)
                    if f >= start and cx < width + 10:
                        cv2.circle(image, (cx, 32), 8, 90, -1)
            image += rng.normal(0, sigma, image.shape)
            sink.write(np.clip(np.rint(image), 0, 255).astype(np.uint8))
    return path


def _record(paths) -> dict:
    return json.loads(paths["qc"].read_text())


@pytest.mark.parametrize("sigma", [1.0, 3.0, 8.0])
def test_pure_noise_is_never_ok(tmp_path, sigma, caplog):
    video = _noise_video(tmp_path / "noise.avi", sigma=sigma)
    with caplog.at_level(logging.WARNING, logger="rbcflow.qc"):
        record = _record(preprocess_video(video, tmp_path / "res", {}, INFO))
    qc = record["qc"]
    assert qc["verdict"] in ("failed", "suspect"), qc
    assert qc["verdict"] != "ok"
    warnings = [r.getMessage() for r in caplog.records if r.name == "rbcflow.qc"]
    assert len(warnings) == 1 and warnings[0].startswith(f"rec: QC {qc['verdict']}: ")
    assert "change detect." in warnings[0]


def test_the_simulators_recordings_are_ok(tmp_path, caplog):
    from rbcflow.simulate.scenario import plan_dataset, write_video

    specs = plan_dataset("demo", seed=2024)
    chosen = [next(s for s in specs if s.mode == mode) for mode in ("triggered", "continuous")]
    for spec in chosen:
        row = write_video(spec, 2024, tmp_path, "avi_raw")["row"]
        with caplog.at_level(logging.WARNING, logger="rbcflow.qc"):
            record = _record(preprocess_video(tmp_path / row["path"], tmp_path / "res", {},
                                              row))
        qc = record["qc"]
        assert qc["verdict"] == "ok", (spec.sample, qc)
        assert qc["flagged"] == []
        figures = qc["figures"]
        assert figures["kept_tracks"] >= 1 and figures["continuous"] is True
        assert figures["threshold"] > 0 and figures["polarity"] in ("dark", "bright",
                                                                    "absolute")
        assert 0.3 < figures["blob_area_ratio"] < 3.0
    assert not [r for r in caplog.records if r.name == "rbcflow.qc"]


def test_a_threshold_inside_the_noise_is_suspect_and_names_the_parameter(tmp_path, caplog):
    # the real case: frame noise of 4 grey levels, a fixed threshold of 6, no blur
    video = _noise_video(tmp_path / "cells.avi", sigma=4.0, cells=True)
    config = {"detect": {"threshold": 6.0, "polarity": "absolute", "blur_sigma": 0.0}}
    with caplog.at_level(logging.WARNING, logger="rbcflow.qc"):
        record = _record(preprocess_video(video, tmp_path / "fixed", config, INFO))
    qc = record["qc"]
    assert qc["verdict"] in ("suspect", "failed")
    flagged = {f["sign"]: f for f in qc["flagged"]}
    assert qc["figures"]["noise_foreground_fraction"] > 0.05
    assert "detect.threshold" in flagged["noise_foreground_fraction"]["parameter"]
    (message,) = [r.getMessage() for r in caplog.records if r.name == "rbcflow.qc"]
    assert message.startswith("rec: QC ") and "noise_foreground_fraction" in message
    assert "max_noise_foreground_fraction 0.01" in message
    # the same recording with the defaults (threshold auto): its cells, and ok
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rbcflow.qc"):
        record = _record(preprocess_video(video, tmp_path / "auto", {}, INFO))
    assert record["qc"]["verdict"] == "ok", record["qc"]
    assert record["qc"]["figures"]["kept_tracks"] >= 4
    assert not [r for r in caplog.records if r.name == "rbcflow.qc"]


def test_a_background_of_few_frames_is_suspect(tmp_path):
    video = _noise_video(tmp_path / "short.avi", n_frames=12, sigma=2.0, cells=True)
    record = _record(preprocess_video(video, tmp_path / "res", {"track": {"min_length": 4}},
                                      INFO))
    flagged = {f["sign"] for f in record["qc"]["flagged"]}
    assert record["qc"]["figures"]["background_frames"] == 12
    assert "background_frames" in flagged and record["qc"]["verdict"] != "ok"


def _figures(**values):
    base = {"n_detections": 100, "kept_tracks": 5, "continuous": True,
            "noise_foreground_fraction": 0.001, "foreground_fraction": 0.02,
            "persistent_foreground_fraction": 0.0, "background_frames": 100,
            "kept_detection_fraction": 0.9, "too_short_fraction": 0.1, "blob_area_ratio": 1.0}
    return {**base, **values}


@pytest.mark.parametrize(("sign", "value"), [
    ("noise_foreground_fraction", 0.05), ("foreground_fraction", 0.4),
    ("persistent_foreground_fraction", 0.01), ("background_frames", 5),
    ("kept_detection_fraction", 0.05), ("too_short_fraction", 0.9),
    ("blob_area_ratio", 0.1), ("blob_area_ratio", 5.0),
])
def test_each_sign_beyond_its_limit_makes_a_recording_suspect(sign, value):
    limits = qc_limits()
    assert judge(_figures(), limits) == ("ok", [])
    verdict, flagged = judge(_figures(**{sign: value}), limits)
    assert verdict == "suspect" and [f["sign"] for f in flagged] == [sign]
    known = {s.name: s.parameter for s in SIGNS if s.limit_key in flagged[0]["limit"]}
    assert flagged[0]["parameter"] == known[sign]
    text = warning_text("S1", verdict, flagged)
    assert text.startswith(f"S1: QC suspect: {sign} {value} (limit ")


def test_failed_without_detections_or_kept_tracks_and_snapshots_skip_track_signs():
    limits = qc_limits()
    assert judge(_figures(n_detections=0), limits)[0] == "failed"
    assert judge(_figures(kept_tracks=0), limits)[0] == "failed"
    # separate snapshots (RT-DC events): no track can be kept, and that is no fault
    snapshots = _figures(kept_tracks=0, continuous=False, too_short_fraction=1.0,
                         kept_detection_fraction=0.0)
    assert judge(snapshots, limits) == ("ok", [])
    assert judge(_figures(blob_area_ratio=None), limits) == ("ok", [])
    with pytest.raises(ValueError, match="unknown qc parameter"):
        qc_limits({"max_noise": 0.1})


def test_track_figures_count_detections_of_kept_and_too_short_tracks():
    table = pd.DataFrame({"track_id": [1, 1, 1, 2, 3, 3], "area_px": [90, 100, 110, 20, 95,
                                                                        105.0]})
    summary = pd.DataFrame({"track_id": [1, 2, 3], "status": ["kept", "too_short", "kept"]})
    figures = track_figures(table, summary, n_frames=3, expected_area_px=100.0)
    assert figures["detections_per_frame"] == 2.0 and figures["kept_tracks"] == 2
    assert figures["kept_detection_fraction"] == pytest.approx(5 / 6)
    assert figures["too_short_fraction"] == pytest.approx(1 / 3)
    assert figures["median_blob_area_px"] == 97.5 and figures["blob_area_ratio"] == 0.975
    empty = track_figures(table.iloc[:0], summary.iloc[:0], 3, 100.0)
    assert empty["kept_detection_fraction"] is None and empty["blob_area_ratio"] is None
