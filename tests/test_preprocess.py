"""The one-recording chain and its command: its single pass writes, byte for byte, the files
of the stages run one at a time (as ``rbcflow ingest``, ``background``, ``track`` and
``clips`` run them), whatever the background method, clip mode or frame buffer."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pandas as pd
import pytest
from test_clips import DETECT, TRACK, write_synthetic_video
from typer.testing import CliRunner

from rbcflow import clips as clip_module
from rbcflow.clipstore import read_clip_attrs, read_clip_table, verify_clip_file
from rbcflow.preprocess import output_paths, preprocess_video, recording_info, sample_name

CONFIG = {
    "background": {"method": "median", "n_frames": 40, "blur_sigma": 0.0},
    "detect": DETECT,
    "track": TRACK,
    "clips": {"crop_px": 32, "size_px": 32, "n_frames": 8},
}
INFO = {"sample": "rec1", "donor": "D7", "condition": "DA", "focus": "above",
        "session": "day2", "fps": 500.0, "um_per_px": 0.5}


def run_stages(video, outdir, config, sample_info) -> dict:
    """The chain's stages one at a time, on their own files; returns the paths by role.

    The stage commands write no QC record: it is made here from the stage outputs, the
    counts the report reads.
    """
    from rbcflow.background import build_background, save_background
    from rbcflow.clips import cut_clips
    from rbcflow.ingest import ingest_video
    from rbcflow.params import resolve_chain_params, section_with_defaults
    from rbcflow.qc import write_background_qc
    from rbcflow.track import track_video

    info = recording_info(video, sample_info)
    params = resolve_chain_params(config, info["fps"], info["um_per_px"])
    ingest = section_with_defaults("ingest", (config or {}).get("ingest"))
    sample = info["sample"]
    paths = output_paths(outdir, sample)
    meta = ingest_video(video, sample, params.fps, paths["ingest_json"], paths["contact_sheet"],
                        ingest["allow_truncated"], ingest["fps_tolerance"])
    model = build_background(video, params.background, n_frames_readable=meta["n_frames"])
    save_background(model, paths["background"])
    write_background_qc(video, model, params.detect, paths["background_qc"])
    track_video(video, paths["background"], paths["tracks"], paths["tracks_summary"], params)
    cut_clips(video, paths["background"], paths["tracks"], paths["tracks_summary"],
              paths["clips"], paths["clips_qc"], info, params, meta["sha256"],
              out_qc_record=paths["qc"])
    return paths


def files_under(folder) -> dict[str, bytes]:
    """Every file below ``folder`` (relative path -> bytes)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_same_files(folder, other, roles) -> None:
    """The two folders hold the same files, byte for byte, with the file of every role
    (``roles``: the paths of one of them by role)."""
    ours, theirs = files_under(folder), files_under(other)
    assert sorted(ours) == sorted(theirs)
    root = folder if next(iter(roles.values())).is_relative_to(folder) else other
    expected = {path.relative_to(root).as_posix() for path in roles.values()}
    assert expected <= set(ours), sorted(expected - set(ours))
    clip_file = roles["clips"].relative_to(root).as_posix()
    if ours[clip_file] != theirs[clip_file]:  # say what differs inside before failing
        _assert_clip_contents_equal(folder / clip_file, other / clip_file)
    differing = [name for name in ours if ours[name] != theirs[name]]
    assert differing == []


def _assert_clip_contents_equal(path, other) -> None:
    """Same clips, attributes and table, column by column (a message that names what
    differs before the byte comparison fails)."""
    from rbcflow.clipstore import read_clips

    assert read_clips(path).tobytes() == read_clips(other).tobytes()
    assert read_clip_attrs(path) == read_clip_attrs(other)
    ours, theirs = read_clip_table(path), read_clip_table(other)
    assert list(ours.columns) == list(theirs.columns) and len(ours) == len(theirs)
    for column in ours.columns:
        a, b = ours[column].to_numpy(), theirs[column].to_numpy()
        if a.dtype.kind == "f":
            np.testing.assert_array_equal(a, b, err_msg=column)
        else:
            assert a.tolist() == b.tolist(), column


def test_preprocess_writes_every_file_and_the_stages_write_the_same_bytes(tmp_path):
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
    attrs = read_clip_attrs(paths["clips"])
    assert attrs["source_sha256"] == meta["sha256"]
    record = json.loads(paths["qc"].read_text())
    summary = pd.read_csv(paths["tracks_summary"], sep="\t")
    assert record["n_clips"] == 4 and record["n_frames"] == 150
    assert record["tracks"] == summary["status"].value_counts().to_dict()
    assert record["n_detections"] == len(pd.read_parquet(paths["tracks"]))
    assert record["pipeline_id"] == attrs["pipeline_id"]
    stages = run_stages(video, tmp_path / "stages", CONFIG, INFO)
    assert_same_files(tmp_path / "results", tmp_path / "stages", stages)


def test_preprocess_command_does_not_import_pandas(tmp_path):
    """The chain's tables are numpy columns: a preprocessing job does not pay pandas' quarter
    second of import (issue 15's start-up budget), tracks and clips alike."""
    import subprocess
    import sys

    from conftest import REPO

    video = tmp_path / "rec.avi"
    write_synthetic_video(video, n_frames=120)
    (tmp_path / "cfg.yaml").write_text(json.dumps(CONFIG))
    script = (
        "import sys\n"
        "from rbcflow.cli import app\n"
        "try:\n"
        "    app(sys.argv[1:])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(' '.join(sorted(m for m in ('pandas', 'matplotlib', 'tensorflow')\n"
        "                      if m in sys.modules)) or 'none')\n")
    done = subprocess.run(
        [sys.executable, "-c", script, "preprocess", str(video), "--out", str(tmp_path / "res"),
         "--config", str(tmp_path / "cfg.yaml"), "--um-per-px", "0.5"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert done.returncode == 0, done.stderr
    assert len(read_clip_table(tmp_path / "res" / "clips" / "rec.h5")) >= 3  # tracks were cut
    assert done.stdout.split()[-1] == "none", done.stdout


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
    # a unit out of range is a parameter error, named, before anything is written
    result = CliRunner().invoke(app, ["preprocess", str(video), "--out", str(tmp_path / "r3"),
                                      "--um-per-px", "0", "--fps", "10"])
    assert result.exit_code == 2 and "um_per_px" in result.output
    assert not (tmp_path / "r3").exists()


@pytest.mark.parametrize("sections", [
    pytest.param({"clips": {"crop_px": 32, "size_px": 24, "n_frames": 8}}, id="masked"),
    pytest.param({"clips": {"crop_px": 40, "size_px": 40, "n_frames": 12,
                            "mask_outside_cell": False}}, id="unmasked"),
    pytest.param({"clips": {"mode": "frame", "frame_start": 10, "frame_stop": 60,
                            "frame_step": 10, "frame_scale": 0.5}}, id="frame"),
    pytest.param({"background": {"method": "mog2", "n_frames": 40},
                  "clips": {"crop_px": 32, "size_px": 32, "n_frames": 8,
                            "mask_outside_cell": False}}, id="mog2-unmasked"),
    pytest.param({"background": {"method": "mog2", "n_frames": 40}}, id="mog2-masked"),
    pytest.param({"background": {"method": "mog2", "n_frames": 40},
                  "clips": {"mode": "frame", "frame_start": 10, "frame_stop": 100,
                            "frame_step": 15}}, id="mog2-frame"),
    pytest.param({"background": {"method": "rolling_median", "n_frames": 20,
                                 "rolling_window": 50, "blur_sigma": 1.0},
                  "clips": {"crop_px": 32, "size_px": 32, "n_frames": 8,
                            "mask_grow_px": 0}}, id="rolling"),
])
def test_single_pass_equals_the_stages(tmp_path, sections):
    video = tmp_path / "rec1.avi"
    write_synthetic_video(video, entries=(2, 30, 40, 58, 86, 145))
    config = {**CONFIG, **sections}
    paths = preprocess_video(video, tmp_path / "results", config, INFO)
    table = read_clip_table(paths["clips"])
    mode = config["clips"].get("mode", "track")
    assert len(table) == 1 if mode == "frame" else len(table) >= 3
    attrs = read_clip_attrs(paths["clips"])
    assert attrs["params"]["background"]["method"] == config["background"]["method"]
    assert attrs["params"]["clips"]["mode"] == mode
    stages = run_stages(video, tmp_path / "stages", config, INFO)
    assert_same_files(tmp_path / "results", tmp_path / "stages", stages)


def test_track_and_cut_times_its_stream_and_finish(tmp_path):
    from rbcflow.background import load_background
    from rbcflow.params import resolve_chain_params
    from rbcflow.preprocess import track_and_cut

    video = tmp_path / "rec1.avi"
    write_synthetic_video(video, n_frames=100)
    paths = preprocess_video(video, tmp_path / "results", CONFIG, INFO)
    params = resolve_chain_params(CONFIG, INFO["fps"], INFO["um_per_px"])
    again = output_paths(tmp_path / "again", "rec1")
    timings: dict = {}
    sha = json.loads(paths["ingest_json"].read_text())["sha256"]
    n = track_and_cut(video, load_background(paths["background"]), params, again,
                      recording_info(video, INFO), sha, timings=timings)
    assert n == len(read_clip_table(paths["clips"])) >= 2
    # the per-frame stream and the once-per-recording finish are timed apart
    assert set(timings) == {"stream_cpu_s", "finish_cpu_s", "frames"}
    assert timings["stream_cpu_s"] > 0 and timings["finish_cpu_s"] > 0
    assert timings["frames"] == 100
    for role in ("tracks", "tracks_summary", "clips", "clips_qc", "qc"):
        assert again[role].read_bytes() == paths[role].read_bytes(), role


class _BufferSpy:
    """Makes the single pass buffer at most ``max_buffer`` frames; keeps its collectors."""

    def __init__(self, max_buffer: int) -> None:
        self.max_buffer = max_buffer
        self.collectors: list = []

    def __call__(self, params, judge):
        collector = _ORIGINAL_COLLECTOR(params, judge, max_buffer=self.max_buffer)
        self.collectors.append(collector)
        return collector


_ORIGINAL_COLLECTOR = clip_module.TrackClipCollector


def test_tracks_longer_than_the_buffer_are_cut_by_a_second_pass(tmp_path, monkeypatch,
                                                                 caplog):
    video = tmp_path / "rec1.avi"
    write_synthetic_video(video)
    reference = preprocess_video(video, tmp_path / "reference", CONFIG, INFO)
    # the buffer's size is the collector's argument: a module constant patched after the
    # import would not reach it
    spy = _BufferSpy(max_buffer=5)
    monkeypatch.setattr(clip_module, "TrackClipCollector", spy)
    with caplog.at_level(logging.WARNING, logger="rbcflow.preprocess"):
        preprocess_video(video, tmp_path / "small", CONFIG, INFO)
    (collector,) = spy.collectors
    assert collector.clips == {} and len(collector.second_pass) == 4
    assert "4 track(s) outlasted the frame buffer" in caplog.text
    assert_same_files(tmp_path / "reference", tmp_path / "small", reference)


def _shipped_config() -> dict:
    from conftest import REPO

    from rbcflow.config import load_config

    return load_config(REPO / "config" / "config.yaml")


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 2], ids=["triggered", "continuous"])
def test_single_pass_equals_the_stages_on_simulated_recordings(tiny_recordings, tmp_path,
                                                               index):
    # a triggered clip, and a continuous recording (queued and touching cells, gaps,
    # collisions, cells at the edges of the view), with the shipped configuration
    folder, rows = tiny_recordings
    row, config = rows[index], _shipped_config()
    video = folder / row["path"]
    paths = preprocess_video(video, tmp_path / "single", config, row)
    assert len(read_clip_table(paths["clips"])) >= (1 if index == 0 else 5)
    stages = run_stages(video, tmp_path / "stages", config, row)
    assert_same_files(tmp_path / "single", tmp_path / "stages", stages)


@pytest.mark.slow
def test_clips_from_the_buffer_and_the_second_pass_together(tiny_recordings, tmp_path,
                                                            monkeypatch):
    # a buffer that holds some kept tracks of the continuous recording and not others:
    # the clips cut from the buffer and those of the second pass land as without a limit
    folder, rows = tiny_recordings
    continuous, config = rows[2], _shipped_config()
    video = folder / continuous["path"]
    paths = preprocess_video(video, tmp_path / "unlimited", config, continuous)
    spy = _BufferSpy(max_buffer=50)
    monkeypatch.setattr(clip_module, "TrackClipCollector", spy)
    preprocess_video(video, tmp_path / "buffer50", config, continuous)
    (collector,) = spy.collectors
    assert collector.clips and collector.second_pass
    assert_same_files(tmp_path / "unlimited", tmp_path / "buffer50", paths)
