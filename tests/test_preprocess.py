"""The one-recording chain and its command: same files as the workflow, same results."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_clips import DETECT, TRACK, write_synthetic_video
from typer.testing import CliRunner

from rbcflow.clipstore import read_clip_table, read_clips, verify_clip_file
from rbcflow.preprocess import output_paths, preprocess_video, sample_name

CONFIG = {
    "background": {"method": "median", "n_frames": 40, "blur_sigma": 0.0},
    "detect": DETECT,
    "track": TRACK,
    "clips": {"crop_px": 32, "size_px": 32, "n_frames": 8},
}
INFO = {"sample": "rec1", "donor": "D7", "condition": "DA", "focus": "above",
        "session": "day2", "fps": 500.0, "um_per_px": 0.5}


def test_preprocess_writes_every_stage_and_matches_the_stages_run_alone(tmp_path):
    from rbcflow.clips import cut_clips
    from rbcflow.track import track_video

    video = tmp_path / "rec1.avi"
    write_synthetic_video(video)
    paths = preprocess_video(video, tmp_path / "results", CONFIG, INFO)
    assert paths == output_paths(tmp_path / "results", "rec1")
    for role, path in paths.items():
        assert path.is_file(), role
    meta = json.loads(paths["ingest_json"].read_text())
    assert meta["n_frames"] == 150 and meta["width"] == 320
    assert verify_clip_file(paths["clips"]) == []
    table = read_clip_table(paths["clips"])
    assert len(table) == 4
    assert set(table["donor"]) == {"D7"} and set(table["focus"]) == {"above"}
    assert set(table["session"]) == {"day2"} and set(table["condition"]) == {"DA"}
    # the stages run one by one on the same background give the same files' content
    alone = tmp_path / "alone"
    track_video(video, paths["background"], alone / "t.parquet", alone / "t.tsv",
                CONFIG["detect"], CONFIG["track"], fps=500.0, um_per_px=0.5)
    pd.testing.assert_frame_equal(pd.read_parquet(alone / "t.parquet"),
                                  pd.read_parquet(paths["tracks"]))
    cut_clips(video, paths["background"], alone / "t.parquet", alone / "t.tsv",
              alone / "c.h5", alone / "qc.tsv", INFO, CONFIG["clips"], CONFIG["detect"])
    assert np.array_equal(read_clips(alone / "c.h5"), read_clips(paths["clips"]))


def test_preprocess_command(tmp_path):
    from rbcflow.cli import app

    video = tmp_path / "my rec.avi"
    write_synthetic_video(video, n_frames=120)
    (tmp_path / "cfg.yaml").write_text(json.dumps(CONFIG))
    result = CliRunner().invoke(app, [
        "preprocess", str(video), "--out", str(tmp_path / "res"), "--config",
        str(tmp_path / "cfg.yaml"), "--donor", "D3", "--um-per-px", "0.5"])
    assert result.exit_code == 0, result.output
    assert sample_name(video) == "my_rec"
    clips = tmp_path / "res" / "clips" / "my_rec.h5"
    table = read_clip_table(clips)
    assert len(table) >= 3 and set(table["donor"]) == {"D3"}
    summary = pd.read_csv(tmp_path / "res" / "tracks" / "my_rec_tracks.tsv", sep="\t")
    # fps came from the file header (500), so 9 px/frame at 0.5 um/px is 2.25 mm/s
    kept = summary[summary["status"] == "kept"]
    assert np.allclose(kept["velocity_mm_s"], 2.25, atol=0.08)
    # a missing recording fails with a message naming it
    result = CliRunner().invoke(app, ["preprocess", str(tmp_path / "none.avi"), "--out",
                                      str(tmp_path / "r2"), "--um-per-px", "1", "--fps", "10"])
    assert result.exit_code == 1 and "none.avi" in result.output


def _same_outputs(video, background, paths, cfg, info, tmp):
    """Run the single pass, then the track and clips stages alone; assert the same files."""
    from rbcflow.clips import cut_clips
    from rbcflow.preprocess import track_and_cut
    from rbcflow.track import track_video

    # explicitly the single pass (preprocess_video would fall back to two passes)
    timings = {}
    track_and_cut(video, background, paths, cfg, info, source_sha256="x", timings=timings)
    # the per-frame stream and the once-per-recording finish are timed apart
    assert set(timings) == {"stream_cpu_s", "finish_cpu_s", "frames"}
    assert timings["stream_cpu_s"] > 0 and timings["finish_cpu_s"] > 0
    track_video(video, background, tmp / "t.parquet", tmp / "t.tsv", cfg["detect"],
                cfg["track"], fps=float(info["fps"]), um_per_px=float(info["um_per_px"]))
    cut_clips(video, background, tmp / "t.parquet", tmp / "t.tsv", tmp / "c.h5",
              tmp / "qc.tsv", info, cfg["clips"], cfg["detect"], source_sha256="x")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp / "t.parquet"),
                                  pd.read_parquet(paths["tracks"]))
    assert (tmp / "t.tsv").read_bytes() == paths["tracks_summary"].read_bytes()
    alone, fused = read_clips(tmp / "c.h5"), read_clips(paths["clips"])
    assert alone.dtype == fused.dtype and alone.shape == fused.shape
    assert alone.tobytes() == fused.tobytes()
    pd.testing.assert_frame_equal(read_clip_table(tmp / "c.h5"), read_clip_table(paths["clips"]))
    assert (tmp / "qc.tsv").read_bytes() == paths["clips_qc"].read_bytes()
    return fused


@pytest.mark.parametrize("clips", [
    {"crop_px": 32, "size_px": 24, "n_frames": 8},
    {"crop_px": 40, "size_px": 40, "n_frames": 12, "mask_outside_cell": False},
    {"mode": "frame", "frame_start": 10, "frame_stop": 60, "frame_step": 10,
     "frame_scale": 0.5},
])
def test_single_pass_equals_track_then_clips(tmp_path, clips):
    from rbcflow.config import validate_config

    video = tmp_path / "rec1.avi"
    write_synthetic_video(video, entries=(2, 30, 40, 58, 86, 145))
    cfg = validate_config({**CONFIG, "clips": clips})
    paths = preprocess_video(video, tmp_path / "results", cfg, INFO)
    fused = _same_outputs(video, paths["background"], paths, cfg, INFO, tmp_path)
    assert len(fused) >= 1


@pytest.mark.slow
def test_single_pass_equals_the_stages_on_simulated_continuous_recordings(tmp_path):
    # queued and touching cells, gaps, collisions and cells at the edges of the view
    from rbcflow.config import validate_config
    from rbcflow.simulate.scenario import plan_dataset, write_video

    specs = [s for s in plan_dataset("demo", seed=2024) if s.mode == "continuous"][:3]
    n_clips = 0
    for spec in specs:
        row = write_video(spec, 2024, tmp_path, "avi_raw")["row"]
        info = {k: row[k] for k in ("sample", "donor", "condition", "focus", "session", "fps",
                                    "um_per_px")}
        cfg = validate_config({})
        paths = preprocess_video(tmp_path / row["path"], tmp_path / "res", cfg, info)
        (tmp_path / spec.sample).mkdir()
        n_clips += len(_same_outputs(tmp_path / row["path"], paths["background"], paths, cfg,
                                     info, tmp_path / spec.sample))
    assert n_clips >= 5
