"""Background models: exact median, recovery of a known background, segmenters, storage, QC."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from rbcflow.background import (
    BackgroundModel,
    build_background,
    load_background,
    save_background,
    uint8_median,
)
from rbcflow.io.video import VideoError, open_video
from rbcflow.params import ParameterError, background_params, detect_params, resolve_chain_params
from rbcflow.qc import write_background_qc
from rbcflow.segment import Mog2Segmenter, make_segmenter

H, W = 64, 320


def _background(level=160.0):
    bg = np.full((H, W), level) + np.linspace(-8, 8, W)[None, :]
    bg[8:11] = 60.0  # sharp channel walls: a blurred model must not leave them as blobs
    bg[H - 11:H - 8] = 60.0
    return bg


def _cells(i, speed=7.0):
    """Two cells crossing left to right, 160 px apart, wrapping round."""
    xs = [(-12 + i * speed + k * 160) % (W + 30) - 12 for k in range(2)]
    return [(x, 24 + 16 * k) for k, x in enumerate(xs) if 8 < x < W - 8]


def _build(path, seed=0, **overrides):
    """The background of ``path`` with the schema's parameters and ``overrides``."""
    return build_background(path, background_params(seed=seed, **overrides))


def _write(path, n=120, seed=0, drift=0.0):
    """Raw grey AVI of moving dark cells; returns the true background per frame."""
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, 0, 500.0, (W, H), isColor=False)
    truths = []
    for i in range(n):
        bg = _background(160.0 + drift * i)
        frame = bg + rng.normal(0, 1.5, (H, W))
        for x, y in _cells(i):
            cv2.circle(frame, (round(x), round(y)), 7, float(bg[round(y), 5] - 35), -1)
        writer.write(np.clip(np.rint(frame), 0, 255).astype(np.uint8))
        truths.append(bg)
    writer.release()
    return truths


@pytest.mark.parametrize("n", [1, 7, 10, 100, 257])
def test_uint8_median_is_exact(n):
    rng = np.random.default_rng(n)
    stack = rng.integers(0, 256, (n, 9, 11), dtype=np.uint8)
    stack[:, 0, 0] = 255  # extremes
    stack[:, 0, 1] = 0
    assert np.array_equal(uint8_median(stack), np.median(stack, axis=0).astype(np.float32))


def test_median_recovers_background_despite_cells(tmp_path):
    truths = _write(tmp_path / "v.avi")
    model = _build(tmp_path / "v.avi", n_frames=60, blur_sigma=0.0, seed=3)
    assert model.images.shape == (1, H, W) and model.images.dtype == np.float32
    assert list(model.start_frames) == [0]
    error = np.abs(model.image_at(50) - truths[0])
    assert np.median(error) < 0.5 and error.max() < 3.0  # cells cover < 1/5 of each pixel's
    again = _build(tmp_path / "v.avi", n_frames=60, blur_sigma=0.0, seed=3)
    assert np.array_equal(again.images, model.images)  # seeded: same sample, same model
    blurred = _build(tmp_path / "v.avi", n_frames=60, blur_sigma=4.0, seed=3)
    assert np.abs(blurred.images[0] - model.images[0]).max() > 10  # the walls are smoothed


@pytest.mark.parametrize("blur_sigma", [0.0, 4.0])
def test_segmenter_finds_the_cells_and_nothing_else(tmp_path, blur_sigma):
    _write(tmp_path / "v.avi")
    # the detection blur is not set: it resolves to the background's, so sharp walls
    # compared with a blurred background do not turn into blobs
    params = resolve_chain_params({"background": {"n_frames": 60, "blur_sigma": blur_sigma},
                                   "detect": {"polarity": "dark", "min_area_px": 50},
                                   "seed": 0}, 500.0, 1.0)
    assert params.detect.blur_sigma == blur_sigma
    model = build_background(tmp_path / "v.avi", params.background)
    segmenter = make_segmenter(model, params.detect)
    assert not segmenter.sequential
    with open_video(tmp_path / "v.avi") as reader:
        for index, frame in reader.frames(0, 60):
            found = segmenter.blobs(frame, index).detections
            truth = _cells(index)
            assert len(found) == len(truth), index
            for x, y in truth:
                assert np.min(np.hypot(found["x"] - x, found["y"] - y)) < 1.0


def test_rolling_median_follows_drifting_illumination(tmp_path):
    truths = _write(tmp_path / "v.avi", n=150, drift=0.2)  # +30 grey levels over the video
    model = _build(tmp_path / "v.avi", method="rolling_median", n_frames=30, blur_sigma=0.0,
                   rolling_window=50)
    assert list(model.start_frames) == [0, 50, 100]
    for k, start in enumerate(model.start_frames):
        middle = truths[start + 25]
        assert np.median(np.abs(model.images[k] - middle)) < 3.0
        assert np.array_equal(model.image_at(start + 10), model.images[k])
    static = _build(tmp_path / "v.avi", n_frames=30, blur_sigma=0.0)
    assert np.median(np.abs(static.image_at(140) - truths[140])) > 5.0


def test_mog2_segmenter_is_fresh_per_pass(tmp_path):
    truths = _write(tmp_path / "v.avi")
    model = _build(tmp_path / "v.avi", method="mog2", n_frames=60)
    assert model.method == "mog2" and np.median(np.abs(model.images[0] - truths[0])) < 2.0
    with open_video(tmp_path / "v.avi") as reader:
        frames = [f for _, f in reader.frames(0, 40)]
    first, second = make_segmenter(model, detect_params()), make_segmenter(model, detect_params())
    assert isinstance(first, Mog2Segmenter) and first.sequential
    runs = [[first.blobs(f, i).detections for i, f in enumerate(frames)]]
    runs.append([second.blobs(f, i).detections for i, f in enumerate(frames)])  # unpolluted
    for a, b in zip(*runs, strict=True):
        assert np.array_equal(a, b)
    found = sum(len(r) > 0 for r in runs[0][5:])
    assert found >= 30  # cells are present in every frame; MOG2 finds them in most
    with pytest.raises(ValueError, match="increasing order"):
        first.blobs(frames[0], 0)


def test_save_load_round_trip(tmp_path):
    _write(tmp_path / "v.avi", n=40)
    model = _build(tmp_path / "v.avi", n_frames=20, blur_sigma=1.0, seed=5)
    save_background(model, tmp_path / "bg.npz")
    with np.load(tmp_path / "bg.npz", allow_pickle=False) as data:
        assert data["images"].dtype == np.float32 and data["start_frames"].dtype == np.int64
    back = load_background(tmp_path / "bg.npz")
    assert back.method == model.method and back.params == model.params
    assert np.array_equal(back.images, model.images)
    assert np.array_equal(back.start_frames, model.start_frames)
    # the same model always gives the same bytes (the archive's dates are fixed)
    save_background(back, tmp_path / "again.npz")
    assert (tmp_path / "again.npz").read_bytes() == (tmp_path / "bg.npz").read_bytes()
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.npz"):
        load_background(tmp_path / "junk.npz")


def test_qc_figure(tmp_path):
    _write(tmp_path / "v.avi", n=60)
    for method in ("median", "mog2"):
        model = _build(tmp_path / "v.avi", method=method, n_frames=30, blur_sigma=0)
        out = tmp_path / f"qc_{method}.png"
        shown = write_background_qc(tmp_path / "v.avi", model, detect_params(), out)
        image = cv2.imread(str(out), cv2.IMREAD_GRAYSCALE)
        assert image.shape == (4 * (H + 18), W)  # background, overlay, mask, subtracted
        mask_panel = image[2 * (H + 18) + 18:3 * (H + 18)]
        assert set(np.unique(mask_panel)) <= {0, 255} and (mask_panel == 255).any()
        assert 0 <= shown < 60
    assert not list(tmp_path.glob("*.part*"))


def test_errors(tmp_path):
    _write(tmp_path / "v.avi", n=20)
    # an unknown method cannot even be stated: the parameters refuse it
    with pytest.raises(ParameterError, match="background.method"):
        background_params(method="mean")
    with pytest.raises(VideoError, match="v.avi: only 20 frames"):
        build_background(tmp_path / "v.avi", background_params(n_frames=50),
                         n_frames_readable=50)
    with pytest.raises(ValueError):
        BackgroundModel("median", {}, np.zeros((2, 4, 4)), np.zeros(1))
