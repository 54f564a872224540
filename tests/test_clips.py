"""Clip cutting on a small synthetic recording whose cells and background are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rbcflow.clips import ClipError, crop_window, cut_clips, sample_times
from rbcflow.clipstore import read_clip_attrs, read_clip_table, read_clips, verify_clip_file
from rbcflow.ingest import sha256_recording
from rbcflow.params import ParameterError, clip_params, resolve_chain_params

W, H, SPEED = 320, 80, 9.0
CHANNEL = (22, 58)
DETECT = {"polarity": "absolute", "threshold": 12, "min_area_px": 30,
          "rejoin_split_cells": True}
TRACK = {"min_length": 6, "max_displacement_px": 20}
BACKGROUND = {"method": "median", "n_frames": 40, "blur_sigma": 0.0}


def chain_params(clips=None, detect=None, fps=500.0, um_per_px=0.5):
    """The synthetic recording's parameters, with other clip or detection settings."""
    config = {"background": BACKGROUND, "detect": {**DETECT, **(detect or {})},
              "track": TRACK, "clips": clips or {}, "seed": 1}
    return resolve_chain_params(config, fps, um_per_px)


def background_image() -> np.ndarray:
    bg = np.full((H, W), 70, np.uint8)
    bg[CHANNEL[0]:CHANNEL[1]] = 190
    return bg


def write_synthetic_video(path: Path, n_frames: int = 150, seed: int = 0,
                          entries: tuple[int, ...] = (2, 30, 58, 86, 145)) -> pd.DataFrame:
    """Dark elliptic cells crossing a bright channel left to right at ``SPEED`` px/frame;
    returns the truth (frame, cell_id, x, y, bbox_*, major_px, minor_px)."""
    import cv2

    from rbcflow.simulate.writer import VideoSink

    rng = np.random.default_rng(seed)
    bg = background_image().astype(np.float32)
    truth = []
    with VideoSink(path, "avi_raw", W, H, fps=500.0) as sink:
        for f in range(n_frames):
            img = bg.copy()
            for cell, start in enumerate(entries):
                x = -6 + SPEED * (f - start)
                y = 40 + 5 * np.sin(cell)
                if f < start or x > W + 6:
                    continue
                cv2.ellipse(img, (round(x), round(y)), (7, 5), 0, 0, 360, 100, -1)
                cv2.ellipse(img, (round(x), round(y)), (3, 2), 0, 0, 360, 140, -1)
                x0, x1 = max(0, x - 7), min(W, x + 8)
                if x1 > x0:
                    truth.append((f, cell, x, y, x0, y - 5, x1 - x0, 11, 14.0, 10.0))
            img += rng.normal(0, 1.5, img.shape)
            sink.write(np.clip(np.rint(img), 0, 255).astype(np.uint8))
    return pd.DataFrame(truth, columns=["frame", "cell_id", "x", "y", "bbox_x", "bbox_y",
                                        "bbox_w", "bbox_h", "major_px", "minor_px"])


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    from rbcflow.background import build_background, save_background
    from rbcflow.track import track_video

    folder = tmp_path_factory.mktemp("rec")
    video = folder / "s1.avi"
    truth = write_synthetic_video(video)
    params = chain_params()
    model = build_background(video, params.background)
    save_background(model, folder / "s1.npz")
    summary = track_video(video, folder / "s1.npz", folder / "s1.parquet",
                          folder / "s1_tracks.tsv", params)
    return folder, video, truth, summary


INFO = {"sample": "s1", "donor": "D1", "condition": "native", "focus": "in", "session": "d1"}


def _cut(folder, video, out, detect=None, **clips):
    return cut_clips(video, folder / "s1.npz", folder / "s1.parquet", folder / "s1_tracks.tsv",
                     out / "s1.h5", out / "s1_qc.tsv", INFO, chain_params(clips, detect),
                     sha256_recording(video))


def test_tracks_of_the_synthetic_recording(recording):
    from rbcflow.trackeval import evaluate_tracking

    folder, _, truth, summary = recording
    kept = summary[summary["status"] == "kept"]
    # four cells cross the whole view; the fifth enters too late (too short)
    assert len(kept) == 4
    assert kept["velocity_px_per_frame"].to_numpy() == pytest.approx(SPEED, abs=0.3)
    # 9 px/frame * 0.5 um/px * 500 frames/s = 2.25 mm/s
    assert kept["velocity_mm_s"].to_numpy() == pytest.approx(2.25, abs=0.08)
    tracks = pd.read_parquet(folder / "s1.parquet")
    m = evaluate_tracking(tracks, truth, max_distance_px=4, frame_size=(W, H))
    assert m["idf1"] > 0.98 and m["mota"] > 0.98 and m["id_switches"] == 0
    assert m["detection_recall_isolated"] == 1.0


def test_track_clips_centre_the_cell_and_mask_the_channel(recording, tmp_path):
    folder, video, _, summary = recording
    n = _cut(folder, video, tmp_path, crop_px=32, size_px=32, n_frames=8)
    assert n == 4
    assert verify_clip_file(tmp_path / "s1.h5") == []
    clips = read_clips(tmp_path / "s1.h5")
    assert clips.shape == (4, 8, 32, 32) and clips.dtype == np.uint8
    centre = clips[:, :, 13:19, 13:19].astype(float).mean(axis=(2, 3))
    assert (centre < 150).all()  # the dark cell sits in the middle of every frame
    # away from the cell only background remains: the channel's own grey, no noise
    corner = clips[:, :, :4, :4]  # inside the channel (cells run at y 35..45)
    assert np.abs(corner.astype(int) - 190).max() <= 2
    rows = np.concatenate([clips[:, :, 0, :], clips[:, :, -1, :]], axis=-1)
    assert set(np.unique(rows)) <= set(range(60, 81)) | set(range(180, 201))
    table = read_clip_table(tmp_path / "s1.h5")
    kept = summary[summary["status"] == "kept"].set_index("track_id")
    assert list(table["clip_id"]) == [f"s1/{t}" for t in table["track_id"]]
    assert (table["donor"] == "D1").all() and (table["condition"] == "native").all()
    assert (table["first_frame"] < table["last_frame"]).all()
    assert table["velocity_mm_s"].to_numpy() == pytest.approx(
        kept.loc[table["track_id"], "velocity_mm_s"].to_numpy())
    attrs = read_clip_attrs(tmp_path / "s1.h5")
    from rbcflow.background import load_background

    # the file records the values calibrated on the recording (its noise, the blur)
    params = chain_params({"crop_px": 32, "size_px": 32, "n_frames": 8})
    params = params.calibrated(load_background(folder / "s1.npz"))
    assert params.detect.noise_sigma is not None
    assert attrs["params"] == params.as_dict() and attrs["params"]["clips"]["crop_px"] == 32
    assert attrs["pipeline_id"] == params.pipeline_id
    assert attrs["source_sha256"] == sha256_recording(video) and attrs["sample"] == "s1"
    qc = pd.read_csv(tmp_path / "s1_qc.tsv", sep="\t").set_index("reason")["count"]
    assert qc["kept"] == 4
    assert qc[["too_short", "touches_border", "collision"]].sum() == (
        summary["status"] != "kept").sum()


def test_unmasked_clips_keep_the_channel_and_are_deterministic(recording, tmp_path):
    folder, video, _, _ = recording
    _cut(folder, video, tmp_path, crop_px=40, size_px=20, n_frames=5, mask_outside_cell=False)
    a = read_clips(tmp_path / "s1.h5")
    assert a.shape == (4, 5, 20, 20)
    # unmasked, the recording's noise shows away from the cell
    assert a[:, :, :3, :3].std() > 0.3
    (tmp_path / "again").mkdir()
    _cut(folder, video, tmp_path / "again", crop_px=40, size_px=20, n_frames=5,
         mask_outside_cell=False)
    assert np.array_equal(a, read_clips(tmp_path / "again" / "s1.h5"))


def test_frame_mode_is_the_seed_overlay(recording, tmp_path):
    folder, video, truth, _ = recording
    n = _cut(folder, video, tmp_path, mode="frame", frame_start=50, frame_stop=141,
             frame_step=10, frame_scale=0.5)
    assert n == 1
    clip = read_clips(tmp_path / "s1.h5")[0]
    assert clip.shape == (10, H // 2, W // 2)
    # frame 60: cells 0..2 in view; the overlay is zero except on them
    frame = clip[1]
    on = truth[(truth["frame"] == 60) & (truth["x"] > 8) & (truth["x"] < W - 8)]
    for x, y in zip(on["x"], on["y"], strict=True):
        assert frame[round(y / 2), round(x / 2)] > 0
    assert (frame > 0).mean() < 0.05
    table = read_clip_table(tmp_path / "s1.h5")
    assert table["first_frame"].tolist() == [50] and table["last_frame"].tolist() == [140]
    # a video too short for the window gives no clip, and says so
    n = _cut(folder, video, tmp_path, mode="frame", frame_start=100, frame_stop=400)
    assert n == 0
    qc = pd.read_csv(tmp_path / "s1_qc.tsv", sep="\t").set_index("reason")["count"]
    assert qc["video_too_short"] == 1


def test_crop_window_pads_with_the_background():
    img = np.arange(100, dtype=np.uint8).reshape(10, 10)
    fill = np.full_like(img, 255)
    inner = crop_window(img, fill, 5, 5, 4)
    assert np.array_equal(inner, img[3:7, 3:7])
    edge = crop_window(img, fill, 0, 0, 4)
    assert np.array_equal(edge[2:, 2:], img[:2, :2])
    assert (edge[:2] == 255).all() and (edge[:, :2] == 255).all()


def test_crop_window_anywhere_equals_clamped_indexing():
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (30, 50), dtype=np.uint8)
    fill = rng.integers(0, 256, (30, 50), dtype=np.uint8)
    for x, y, size in [(-3, 4, 9), (48, 28, 9), (25, -10, 40), (60, 60, 8), (-30, 15, 8),
                       (25, 15, 64), (0.5, 29.5, 6)]:
        x0, y0 = int(round(x)) - size // 2, int(round(y)) - size // 2
        ys = np.arange(y0, y0 + size)
        xs = np.arange(x0, x0 + size)
        inside = ((ys >= 0) & (ys < 30))[:, None] & ((xs >= 0) & (xs < 50))[None, :]
        yc, xc = np.ix_(np.clip(ys, 0, 29), np.clip(xs, 0, 49))
        expected = np.where(inside, img[yc, xc], fill[yc, xc])
        assert np.array_equal(crop_window(img, fill, x, y, size), expected), (x, y, size)


def test_sample_times_and_parameters():
    assert sample_times(10, 40, 4).tolist() == [10, 20, 30, 40]
    assert sample_times(0, 2, 5).tolist() == [0, 0, 1, 2, 2]
    # bad clip settings are refused where the parameters are made
    with pytest.raises(ParameterError, match="clips.mode"):
        clip_params(mode="tracks")
    with pytest.raises(ParameterError, match="unknown clips"):
        clip_params(crop=3)


def test_tracks_made_with_other_parameters_are_refused(recording, tmp_path):
    # the clip masks are the tracker's blobs: tracks of another detection would not fit
    folder, video, _, _ = recording
    with pytest.raises(ClipError, match=r"detect\.threshold: 12\.0 here, 13\.0 expected"):
        _cut(folder, video, tmp_path, detect={"threshold": 13})
    assert not (tmp_path / "s1.h5").exists()
    # the pixel size sets detection and tracking sizes given in um: refused too
    with pytest.raises(ClipError, match=r"detect\.rejoin_max_gap_px: 1 here, 2 expected"):
        cut_clips(video, folder / "s1.npz", folder / "s1.parquet", folder / "s1_tracks.tsv",
                  tmp_path / "s1.h5", tmp_path / "s1_qc.tsv", INFO,
                  chain_params(um_per_px=0.25), "0" * 64)
    # clip settings are the clip stage's own: no refusal
    n = cut_clips(video, folder / "s1.npz", folder / "s1.parquet", folder / "s1_tracks.tsv",
                  tmp_path / "s1.h5", tmp_path / "s1_qc.tsv", INFO,
                  chain_params({"n_frames": 4}), "0" * 64)
    assert n == 4


def test_window_growth_equals_whole_frame_growth():
    # the clip mask is grown on the crop window only; it must equal growing the blob on
    # a whole-frame mask and cutting the window out, at the frame's edges too
    import cv2

    from rbcflow.clips import _grown_window
    from rbcflow.detect import BlobMask

    rng = np.random.default_rng(0)
    h_frame, w_frame = 60, 90
    for _ in range(1500):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        bx = int(rng.integers(0, w_frame - w + 1))
        by = int(rng.integers(0, h_frame - h + 1))
        mask = (rng.random((h, w)) < 0.6).astype(np.uint8)
        x, y = rng.uniform(-20, w_frame + 20), rng.uniform(-20, h_frame + 20)
        crop = int(rng.integers(4, 40))
        grow = int(rng.integers(0, 5))
        full = np.zeros((h_frame, w_frame), np.uint8)
        full[by:by + h, bx:bx + w] = mask
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        expected = crop_window(cv2.dilate(full, kernel), np.zeros_like(full), x, y, crop)
        got = _grown_window(BlobMask(bx, by, mask), full.shape, x, y, crop, grow)
        assert np.array_equal(got, expected), (bx, by, w, h, x, y, crop, grow)
