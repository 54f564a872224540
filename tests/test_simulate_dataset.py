"""The simulated dataset: files, decoding, truth, determinism."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pandas as pd
import pytest

from rbcflow.config import load_sample_sheet
from rbcflow.simulate import PRESETS, TRUTH_COLUMNS, VideoSink
from rbcflow.simulate.scenario import plan_dataset, write_video


@pytest.fixture(scope="session")
def tiny(tiny_dataset):
    return tiny_dataset


def _decode_count(path) -> int:
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_CONVERT_RGB, 0)
    n = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        assert img.ndim == 2
        n += 1
    cap.release()
    return n


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sample_sheet_valid_and_complete(tiny):
    out, sheet_path = tiny
    sheet = load_sample_sheet(sheet_path, conditions=["native", "DA", "FA", "GA"])
    assert set(sheet["condition"]) == {"native", "DA", "FA", "GA"}
    assert set(sheet["focus"]) == {"in", "above", "below"}
    assert set(sheet["mode"]) == {"triggered", "continuous"}
    raw = pd.read_csv(sheet_path, sep="\t")
    assert (raw.groupby("donor")["session"].nunique() == 1).all()
    for cond in ["native", "DA", "FA", "GA"]:
        assert (out / "contact_sheets" / f"{cond}.png").stat().st_size > 1000


def test_cells_per_condition(tiny):
    out, sheet_path = tiny
    raw = pd.read_csv(sheet_path, sep="\t")
    counts = {}
    for row in raw.itertuples():
        truth = pd.read_csv(out / row.truth, sep="\t")
        assert list(truth.columns) == TRUTH_COLUMNS
        counts[row.condition] = counts.get(row.condition, 0) + truth["cell_id"].nunique()
    assert min(counts.values()) >= 28, counts


def test_videos_decode_to_truth_frame_count(tiny):
    out, sheet_path = tiny
    raw = pd.read_csv(sheet_path, sep="\t")
    for row in raw.itertuples():
        n = _decode_count(out / row.path)
        truth = pd.read_csv(out / row.truth, sep="\t")
        preset = PRESETS["tiny"]
        expected = preset.clip_frames if row.mode == "triggered" else preset.continuous_frames
        assert n == expected, row.sample
        if len(truth):
            assert truth["frame"].max() < n


def test_truth_lies_on_dark_cell(tiny):
    out, sheet_path = tiny
    raw = pd.read_csv(sheet_path, sep="\t")
    checked = 0
    for row in raw[raw["focus"] == "in"].head(8).itertuples():
        truth = pd.read_csv(out / row.truth, sep="\t")
        frames = {}
        cap = cv2.VideoCapture(str(out / row.path))
        cap.set(cv2.CAP_PROP_CONVERT_RGB, 0)
        i = 0
        while True:
            ok, img = cap.read()
            if not ok:
                break
            frames[i] = img.astype(np.float32)
            i += 1
        background = np.median(np.stack(list(frames.values())[::4]), axis=0)
        inner = truth[(truth.bbox_w == np.round(truth.bbox_w)) & (truth.x > 30) & (truth.x < 770)]
        for t in inner.iloc[::10].itertuples():
            diff = frames[t.frame] - background
            x0, y0 = t.bbox_x, t.bbox_y
            box = diff[y0 : y0 + t.bbox_h, x0 : x0 + t.bbox_w]
            cy, cx = int(round(t.y)), int(round(t.x))
            far = diff[:, max(cx - 120, 0) : max(cx - 80, 0)]
            # The cell darkens its box clearly more than noise does elsewhere.
            assert box.mean() < -4, (row.sample, t.frame)
            assert np.abs(diff[cy - 3 : cy + 4, cx - 3 : cx + 4]).mean() > 2.0
            if far.size:
                assert box.mean() < far.mean() - 3
            checked += 1
    assert checked > 20


@pytest.mark.parametrize("video_format", ["avi_raw", "ffv1", "mjpg", "tiff"])
def test_formats_decode_and_are_deterministic(tmp_path, video_format):
    import tifffile

    spec = plan_dataset("tiny", seed=5)[0]
    spec = type(spec)(**{**spec.__dict__, "n_frames": 25})
    hashes = []
    for run in range(2):
        out = tmp_path / f"run{run}"
        summary = write_video(spec, 5, out, video_format)
        path = out / summary["row"]["path"]
        hashes.append(_sha(path))
        if video_format == "tiff":
            with tifffile.TiffFile(path) as tif:
                assert len(tif.pages) == 25
        else:
            assert _decode_count(path) == 25
        if video_format == "avi_raw":
            cap = cv2.VideoCapture(str(path))
            assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(spec.fps)
    assert hashes[0] == hashes[1]


def test_raw_avi_round_trip_exact(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (6, 20, 34), dtype=np.uint8)
    path = tmp_path / "x.avi"
    with VideoSink(path, "avi_raw", 34, 20, 1800.0) as sink:
        for f in frames:
            sink.write(f)
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_CONVERT_RGB, 0)
    for f in frames:
        ok, img = cap.read()
        assert ok and np.array_equal(img, f)
    assert not cap.read()[0]
    with pytest.raises(ValueError, match="frame 0"):
        with VideoSink(tmp_path / "y.avi", "avi_raw", 34, 20, 10.0) as sink:
            sink.write(np.zeros((3, 3), np.uint8))
    assert not (tmp_path / "y.avi").exists()


def test_same_seed_identical_different_seed_differs(tiny, tmp_path):
    out, sheet_path = tiny
    specs = plan_dataset("tiny", seed=7)
    picks = [specs[1], specs[-1]]  # one triggered clip, one continuous recording
    for spec in picks:
        summary = write_video(spec, 7, tmp_path / "again", "avi_raw")
        for key in ("path", "truth"):
            rel = summary["row"][key]
            assert _sha(tmp_path / "again" / rel) == _sha(out / rel)
        other = write_video(spec, 8, tmp_path / "other", "avi_raw")
        assert _sha(tmp_path / "other" / other["row"]["path"]) != _sha(out / summary["row"]["path"])
