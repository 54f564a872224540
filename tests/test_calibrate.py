"""Noise and contrast of a recording, and the threshold and polarity chosen from them."""

from __future__ import annotations

import numpy as np
import pytest

from rbcflow import calibrate

SHAPE = (120, 160)


def _frames(sigma: float, n: int = 6, seed: int = 0, cell: float | None = None):
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        frame = 120 + rng.normal(0, sigma, SHAPE)
        if cell is not None:  # one cell of 400 px per frame, at another place each time
            frame[20:40, 10 + 20 * k:30 + 20 * k] += cell
        frames.append(np.clip(np.rint(frame), 0, 255).astype(np.uint8))
    return frames


@pytest.mark.parametrize("sigma", [0.7, 1.5, 3.0, 6.0])
def test_noise_sigma_is_measured_despite_cells_and_whole_grey_levels(sigma):
    counts = calibrate.difference_histogram(_frames(sigma, cell=-60.0), np.full(SHAPE, 120.0))
    # whole grey levels add 1/12 to the variance of the rounded frames
    expected = np.sqrt(sigma**2 + 1 / 12)
    assert calibrate.noise_sigma(counts) == pytest.approx(expected, rel=0.05)
    # a plain standard deviation counts the cells as noise
    centres = calibrate.bin_centres()
    plain = np.sqrt(np.average(centres**2, weights=counts))
    assert plain > 1.3 * expected


def test_polarity_follows_the_cells_contrast():
    background = np.full(SHAPE, 120.0)
    for cell, expected in ((-60.0, "dark"), (60.0, "bright")):
        counts = calibrate.difference_histogram(_frames(2.0, cell=cell), background)
        threshold = calibrate.choose_threshold(calibrate.noise_sigma(counts), 3.0, 3.0)
        polarity, figures = calibrate.choose_polarity(counts, threshold, 0.9)
        assert polarity == expected, figures
    # a dark rim with a bright centre: both signs
    frames = _frames(2.0, cell=-60.0)
    for frame in frames:
        frame[25:35, :] = np.minimum(frame[25:35, :].astype(int) + 120, 255)
    counts = calibrate.difference_histogram(frames, background)
    assert calibrate.choose_polarity(counts, 6.0, 0.9)[0] == "absolute"
    # no cell at all: too few contrast pixels to tell
    counts = calibrate.difference_histogram(_frames(2.0), background)
    polarity, figures = calibrate.choose_polarity(counts, 6.0, 0.9)
    assert polarity == "absolute" and figures["contrast_pixels"] == 0


def test_threshold_floor_and_record_round_trip():
    assert calibrate.choose_threshold(0.25, 3.0, 3.0) == 3.0
    assert calibrate.choose_threshold(2.5, 3.0, 3.0) == 7.5
    counts = calibrate.difference_histogram(_frames(2.0, cell=-60.0), np.full(SHAPE, 120.0))
    record = calibrate.noise_record(counts, 6)
    assert np.array_equal(calibrate.histogram_of(record), counts)
    assert record["n_frames"] == 6 and len(record["counts"]) < calibrate.N_BINS
    with pytest.raises(ValueError, match="bins per grey level"):
        calibrate.histogram_of({**record, "bins_per_level": 2})
    with pytest.raises(ValueError, match="non-empty histogram"):
        calibrate.noise_sigma(np.zeros(calibrate.N_BINS))
