"""Blob detection: exactness of the mask, features against geometry, real RT-DC frames."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from realdata import extract_rtdc, rtdc_params

from rbcflow.detect import (
    DETECTION_COLUMNS,
    DETECTION_DTYPE,
    Blobs,
    background_band,
    band_mask,
    blobs_from_mask,
    detect_blobs,
    detections_from_rows,
    difference,
    drop_lone_pixels,
    no_detections,
    select_blob,
)
from rbcflow.params import ParameterError, detect_params

#: The synthetic frames here have no physical scale and no background to calibrate on:
#: a fixed threshold, polarity and minimum area in pixels.
FIXED = {"threshold": 6, "polarity": "absolute", "min_area_px": 50}


def _fixed(**overrides):
    return detect_params(**{**FIXED, **overrides})


def _ellipse(shape, x, y, a, b, angle_deg):
    """Pixels whose centres lie in the ellipse (centre x, y; semi-axes a, b; angle from +x
    towards +y)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    t = math.radians(angle_deg)
    u = (xx - x) * math.cos(t) + (yy - y) * math.sin(t)
    v = -(xx - x) * math.sin(t) + (yy - y) * math.cos(t)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _scene(seed=0, h=132, w=800, noise=1.5):
    rng = np.random.default_rng(seed)
    bg = np.full((h, w), 160.0) + np.linspace(-10, 10, w)[None, :]
    frame = bg + rng.normal(0, noise, (h, w))
    return bg.astype(np.float32), frame


def _u8(image):
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _detections(frame, background, params):
    return detect_blobs(frame, background, params).detections


def _cell_mask(blobs: Blobs, shape, x, y):
    """0/1 image of the one blob at (or nearest) (x, y); all zero without blobs."""
    k = select_blob(blobs, x, y)
    if k is None:
        return np.zeros(shape, np.uint8)
    return Blobs(blobs.detections[k:k + 1], [blobs.masks[k]]).mask_image(shape)


def test_band_equals_thresholded_difference():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    background = rng.uniform(0, 255, (40, 50)).astype(np.float32)
    background[::7, ::3] = np.round(background[::7, ::3])  # integer ties too
    for polarity in ("dark", "bright", "absolute"):
        for threshold in (0.0, 2.0, 6.0, 6.5):
            params = _fixed(polarity=polarity, threshold=threshold)
            fast = band_mask(frame, background_band(background, params)) > 0
            slow = difference(frame, background, polarity) > threshold
            assert np.array_equal(fast, slow), (polarity, threshold)
            integer = np.round(background).astype(np.uint8)  # the uint8 fast path
            fast = band_mask(frame, background_band(integer, params)) > 0
            slow = difference(frame, integer, polarity) > threshold
            assert np.array_equal(fast, slow), ("uint8", polarity, threshold)


def test_lone_pixels_dropped_and_nothing_else():
    rng = np.random.default_rng(3)
    mask = np.where(rng.random((60, 70)) < 0.08, rng.choice([1, 127, 255], (60, 70)), 0)
    mask = mask.astype(np.uint8)
    cv2.circle(mask, (35, 30), 6, 255, -1)
    padded = np.pad(mask > 0, 1).astype(int)
    neighbours = sum(np.roll(np.roll(padded, dy, 0), dx, 1)
                     for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)[1:-1, 1:-1]
    lone = (mask > 0) & (neighbours == 0)
    assert 20 < lone.sum() < mask.astype(bool).sum() - 100  # both kinds present
    out = drop_lone_pixels(mask)
    assert np.array_equal(out > 0, (mask > 0) & ~lone)
    frame = np.full(mask.shape, 100, np.uint8)
    # where one pixel is a blob (min_area_px 1, no re-joining), lone pixels stay blobs
    single = _fixed(min_area_px=1, rejoin_split_cells=False, split_touching=False)
    found = blobs_from_mask(mask, frame, single).detections
    assert (found["area_px"] == 1).sum() == lone.sum()
    assert len(blobs_from_mask(mask, frame, _fixed(min_area_px=8))) >= 1


def test_features_of_an_ellipse_match_its_geometry():
    bg, frame = _scene()
    x, y, a, b, angle = 300.3, 60.7, 12.0, 7.0, 30.0
    inside = _ellipse(frame.shape, x, y, a, b, angle)
    frame[inside] -= 40
    rows = _detections(_u8(frame), bg, _fixed())
    assert rows.shape == (1,) and rows.dtype == DETECTION_DTYPE
    assert rows.dtype.names == DETECTION_COLUMNS
    assert all(rows.dtype[name] == np.float64 for name in DETECTION_COLUMNS)
    r = rows[0]
    assert abs(r["x"] - x) < 0.3 and abs(r["y"] - y) < 0.3
    assert abs(r["area_px"] - inside.sum()) <= 2
    assert abs(r["area_px"] - math.pi * a * b) / (math.pi * a * b) < 0.05
    assert abs(r["major_px"] - 2 * a) < 1.0 and abs(r["minor_px"] - 2 * b) < 1.0
    assert abs(r["orientation_deg"] - angle) < 2.0  # +x towards +y (image y down)
    ys, xs = np.nonzero(inside)
    assert (r["bbox_x"], r["bbox_y"]) == (xs.min(), ys.min())
    assert (r["bbox_w"], r["bbox_h"]) == (np.ptp(xs) + 1, np.ptp(ys) + 1)
    assert abs(r["brightness"] - _u8(frame)[inside].mean()) < 0.5
    # Ramanujan's perimeter of the ellipse gives its exact RT-DC deformation.
    h = ((a - b) / (a + b)) ** 2
    perimeter = math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))
    expected = 1 - 2 * math.sqrt(math.pi * math.pi * a * b) / perimeter
    assert abs(r["deformation"] - expected) < 0.015


def test_disc_has_near_zero_deformation_and_orientation_range():
    bg, frame = _scene(seed=2)
    frame[_ellipse(frame.shape, 100, 60, 10, 10, 0)] -= 30
    frame[_ellipse(frame.shape, 500, 60, 12, 6, 90)] -= 30
    rows = _detections(_u8(frame), bg, _fixed())
    rows = rows[np.argsort(rows["x"])]
    assert rows[0]["deformation"] < 0.02
    assert abs(abs(rows[1]["orientation_deg"]) - 90) < 2
    assert -90 < rows[1]["orientation_deg"] <= 90


def test_lighter_centre_is_filled():
    bg, frame = _scene(seed=3)
    outer = _ellipse(frame.shape, 400, 66, 11, 11, 0)
    inner = _ellipse(frame.shape, 400, 66, 6, 6, 0)
    frame[outer & ~inner] -= 35  # the centre equals the background: a ring in the mask
    blobs = detect_blobs(_u8(frame), bg, _fixed())
    assert len(blobs) == 1
    assert abs(blobs.detections[0]["area_px"] - outer.sum()) <= 2
    mask = blobs.mask_image(frame.shape)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert mask[inner].all()
    assert mask.sum() == blobs.detections[0]["area_px"]  # the painted blob is the counted one


def test_small_blobs_are_dropped():
    bg, frame = _scene(seed=4)
    small = _ellipse(frame.shape, 100, 60, 3, 3, 0)  # ~29 px
    large = _ellipse(frame.shape, 300, 60, 5, 4, 0)  # ~63 px
    frame[small] -= 40
    frame[large] -= 40
    params = _fixed(min_area_px=50)
    rows = _detections(_u8(frame), bg, params)
    assert small.sum() < 50 <= large.sum()
    assert len(rows) == 1 and abs(rows[0]["x"] - 300) < 0.5
    assert len(detect_blobs(_u8(frame), bg, _fixed(min_area_px=20))) == 2


def test_split_cell_is_rejoined_but_round_neighbours_are_not():
    bg, frame = _scene(seed=5)
    ring = _ellipse(frame.shape, 200, 66, 12, 12, 0) & ~_ellipse(frame.shape, 200, 66, 8, 8, 0)
    ring[:, 199:201] = False  # the rim broken at top and bottom: two thin arcs
    frame[ring] -= 35
    frame[_ellipse(frame.shape, 600, 50, 8, 8, 0)] -= 35  # two round cells, 2 px apart
    frame[_ellipse(frame.shape, 619, 50, 8, 8, 0)] -= 35
    image = _u8(frame)
    joined = _detections(image, bg, _fixed())
    split = _detections(image, bg, _fixed(rejoin_split_cells=False, min_area_px=20))
    left = joined[joined["x"] < 400]
    assert len(left) == 1
    assert abs(left[0]["x"] - 200) < 0.5 and abs(left[0]["y"] - 66) < 0.5
    assert left[0]["area_px"] > 0.9 * math.pi * 12 ** 2  # the centre is filled again
    assert len(split[split["x"] < 400]) == 2
    assert len(joined[joined["x"] > 400]) == 2


def test_polarity():
    bg, frame = _scene(seed=6)
    frame[_ellipse(frame.shape, 200, 60, 8, 8, 0)] -= 30
    frame[_ellipse(frame.shape, 500, 60, 8, 8, 0)] += 30
    image = _u8(frame)
    dark = _detections(image, bg, _fixed(polarity="dark"))
    bright = _detections(image, bg, _fixed(polarity="bright"))
    both = _detections(image, bg, _fixed(polarity="absolute"))
    assert len(dark) == 1 and abs(dark[0]["x"] - 200) < 0.5
    assert len(bright) == 1 and abs(bright[0]["x"] - 500) < 0.5
    assert len(both) == 2


def test_empty_frame_and_bad_input():
    bg, frame = _scene(seed=7)
    blobs = detect_blobs(_u8(frame), bg, _fixed())
    assert blobs.detections.shape == (0,) and blobs.detections.dtype == DETECTION_DTYPE
    assert len(blobs) == 0 and select_blob(blobs, 10, 10) is None
    assert not blobs.mask_image(frame.shape).any()
    assert np.array_equal(no_detections(), detections_from_rows([]))
    with pytest.raises(ParameterError, match="polarity"):
        _fixed(polarity="darker")
    with pytest.raises(ValueError, match="shape"):
        detect_blobs(_u8(frame), bg[:, :-1], _fixed())


def test_select_blob_picks_the_blob_at_or_nearest_the_point():
    bg, frame = _scene(seed=8)
    a = _ellipse(frame.shape, 200, 60, 9, 9, 0)
    b = _ellipse(frame.shape, 500, 60, 9, 9, 0)
    frame[a] -= 30
    frame[b] -= 30
    blobs = detect_blobs(_u8(frame), bg, _fixed())
    assert np.array_equal(_cell_mask(blobs, frame.shape, 503, 62).astype(bool), b)
    assert np.array_equal(_cell_mask(blobs, frame.shape, 250, 10).astype(bool), a)
    assert len(blobs.masks) == len(blobs.detections) == 2
    for blob, row in zip(blobs.masks, blobs.detections, strict=True):
        assert blob.mask.shape == (row["bbox_h"], row["bbox_w"])
        assert (blob.x, blob.y) == (row["bbox_x"], row["bbox_y"])
        assert blob.mask.sum() == row["area_px"]


def test_detections_from_rows_names_the_columns_in_order():
    rows = [[float(10 * i + k) for k in range(len(DETECTION_COLUMNS))] for i in range(3)]
    table = detections_from_rows(rows)
    assert table.shape == (3,) and table.dtype == DETECTION_DTYPE
    for k, name in enumerate(DETECTION_COLUMNS):
        assert table[name].tolist() == [10.0 * i + k for i in range(3)]


def _rtdc_events(name: str, tmp_path):
    h5py = pytest.importorskip("h5py")
    import hdf5plugin  # noqa: F401  (registers the zstd filter)

    rtdc = extract_rtdc(name, tmp_path)
    with h5py.File(rtdc, "r") as handle:
        events = handle["events"]
        attrs = dict(handle.attrs)
        images = events["image"][:]
        masks = events["mask"][:] > 0
        background = events["image_bg"][:].astype(np.float32) if "image_bg" in events else None
        pixel = float(attrs["imaging:pixel size"])
        if "pos_x" in events:
            pos = np.c_[events["pos_x"][:], events["pos_y"][:]] / pixel
        else:
            pos = np.array([np.argwhere(m)[:, ::-1].mean(axis=0) for m in masks])
        deform = events["deform"][:] if "deform" in events else None
    return attrs, images, masks, background, pos, deform


@pytest.mark.parametrize("name", rtdc_params())
def test_real_rtdc_frames_match_the_stored_masks(name, tmp_path):
    attrs, images, masks, background, pos, deform = _rtdc_events(name, tmp_path)
    # The parameters are the instrument's own segmentation settings stored in the file:
    # a negative threshold without absolute difference means "darker than background".
    threshold = int(attrs.get("online_contour:bin threshold", -6))
    no_absdiff = bool(attrs.get("online_contour:no absdiff", True))
    params = _fixed(
        polarity="dark" if (no_absdiff and threshold < 0) else "absolute",
        threshold=float(abs(threshold)),
        min_area_px=int(attrs.get("online_contour:bin area min", 50)),
    )
    if background is None:
        background = np.broadcast_to(np.median(images, axis=0).astype(np.float32),
                                     images.shape)
    ious, deform_errors = [], []
    for k in range(len(images)):
        n_objects, _ = cv2.connectedComponents(masks[k].astype(np.uint8))
        if n_objects - 1 != 1:
            continue  # only events whose stored mask is a single object
        blobs = detect_blobs(images[k], background[k], params)
        ours = _cell_mask(blobs, images[k].shape, *pos[k]).astype(bool)
        ious.append((ours & masks[k]).sum() / (ours | masks[k]).sum())
        if deform is not None and ious[-1] > 0.9:
            rows = blobs.detections
            nearest = np.argmin(np.hypot(rows["x"] - pos[k, 0], rows["y"] - pos[k, 1]))
            deform_errors.append(abs(rows[nearest]["deformation"] - deform[k]))
    assert ious, "no single-object events"
    median_iou = float(np.median(ious))
    print(f"{name}: median IoU {median_iou:.3f} over {len(ious)} events")
    assert median_iou >= 0.95
    if deform_errors:  # same definition as RT-DC: close on masks that agree
        assert float(np.median(deform_errors)) < 0.02


@pytest.mark.parametrize("angle", [0, 30, 90])
def test_touching_cells_are_split_at_their_waist(angle):
    # two round cells (radius 15) whose outlines touch, along any direction: one blob
    bg, frame = _scene(seed=11)
    t = math.radians(angle)
    centres = [(300 - 15 * math.cos(t), 66 - 15 * math.sin(t)),
               (300 + 15 * math.cos(t), 66 + 15 * math.sin(t))]
    for x, y in centres:
        frame[_ellipse(frame.shape, x, y, 15, 15, 0)] -= 35
    image = _u8(frame)
    merged = detect_blobs(image, bg, _fixed(split_touching=False))
    assert len(merged) == 1
    rows = _detections(image, bg, _fixed())
    assert len(rows) == 2
    got = sorted(zip(rows["x"].tolist(), rows["y"].tolist(), strict=True))
    for (gx, gy), (x, y) in zip(got, sorted(centres), strict=True):
        assert math.hypot(gx - x, gy - y) < 2.0  # each centroid on its own cell
    assert rows["area_px"].sum() == merged.detections[0]["area_px"]  # a partition


def test_single_deformed_and_notched_cells_are_not_split():
    bg, frame = _scene(seed=12)
    frame[_ellipse(frame.shape, 200, 66, 30, 11, 0)] -= 35  # stretched in a constriction
    frame[_ellipse(frame.shape, 450, 66, 26, 12, 20)] -= 35  # stretched and tilted
    notched = _ellipse(frame.shape, 650, 66, 14, 14, 0)
    notched[52:58, 649:652] = False  # a dent in the rim
    frame[notched] -= 35
    rows = _detections(_u8(frame), bg, _fixed())
    assert len(rows) == 3
