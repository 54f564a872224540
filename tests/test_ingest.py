"""Ingestion: metadata JSON per the file contract, and bad input refused with nothing written."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from rbcflow.background import load_background
from rbcflow.cli import app
from rbcflow.ingest import check_fps, ingest_video
from rbcflow.io.video import VideoError

H, W = 40, 120
FIELDS = ["sample", "path", "reader", "sha256", "n_frames", "n_frames_header", "fps_sheet",
          "fps_file", "width", "height", "dtype", "truncated", "problems"]


def _write(path, n=30, fps=200.0):
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, 0, fps, (W, H), isColor=False)
    for i in range(n):
        frame = np.full((H, W), 150.0) + rng.normal(0, 2, (H, W))
        cv2.circle(frame, (5 + 4 * i, H // 2), 6, 90, -1)
        writer.write(np.clip(frame, 0, 255).astype(np.uint8))
    writer.release()
    return path


def _outputs(tmp_path):
    return tmp_path / "out" / "s1.json", tmp_path / "out" / "s1.png"


def test_ingest_writes_contract_json_and_contact_sheet(tmp_path):
    video = _write(tmp_path / "v.avi")
    out_json, out_png = _outputs(tmp_path)
    info = ingest_video(video, "s1", 200.0, out_json, out_png)
    on_disk = json.loads(out_json.read_text())
    assert on_disk == info and list(on_disk) == FIELDS
    assert info["sha256"] == hashlib.sha256(video.read_bytes()).hexdigest()
    assert (info["n_frames"], info["n_frames_header"]) == (30, 30)
    assert (info["width"], info["height"], info["dtype"]) == (W, H, "uint8")
    assert info["fps_file"] == pytest.approx(200.0) and info["truncated"] is False
    assert info["reader"] == "opencv" and info["problems"] == []
    sheet = cv2.imread(str(out_png), cv2.IMREAD_GRAYSCALE)
    assert sheet is not None and sheet.shape[1] >= 3 * W and sheet.shape[0] >= 4 * H


def _truncate(tmp_path):
    data = _write(tmp_path / "full.avi").read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.5)])
    return cut


def test_truncated_file_fails_unless_allowed(tmp_path):
    cut = _truncate(tmp_path)
    out_json, out_png = _outputs(tmp_path)
    with pytest.raises(VideoError, match=r"cut\.avi: truncated: \d+ of 30 frames readable"):
        ingest_video(cut, "s1", 200.0, out_json, out_png)
    assert not out_json.exists() and not out_png.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    info = ingest_video(cut, "s1", 200.0, out_json, out_png, allow_truncated=True)
    assert info["truncated"] is True and 0 < info["n_frames"] < 30
    assert any("truncated" in p for p in info["problems"])


def test_fps_disagreeing_with_the_sheet(tmp_path):
    video = _write(tmp_path / "v.avi", fps=200.0)
    out_json, out_png = _outputs(tmp_path)
    with pytest.raises(VideoError, match=r"v\.avi: frame rate .*200 fps.*250 fps"):
        ingest_video(video, "s1", 250.0, out_json, out_png)
    assert not out_json.exists() and not out_png.exists()
    ingest_video(video, "s1", 202.0, out_json, out_png, fps_tolerance=0.02)  # 1 % is fine
    assert out_json.exists()


def test_zero_frames_and_size_change(tmp_path):
    out_json, out_png = _outputs(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="zero frames"):
        ingest_video(tmp_path / "empty", "s1", 100.0, out_json, out_png)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(5):
        size = (W, H) if i != 3 else (W, H + 4)
        cv2.imwrite(str(folder / f"{i}.png"), np.full(size[::-1], 100, np.uint8))
    with pytest.raises(VideoError, match="frames: frame 3 is 120x44"):
        ingest_video(folder, "s1", 100.0, out_json, out_png)
    assert not out_json.exists() and not out_png.exists()


def test_cli_ingest_then_background(tmp_path):
    _write(tmp_path / "v.avi", n=40)
    sheet = tmp_path / "samples.tsv"
    sheet.write_text(
        "sample\tpath\tdonor\tcondition\tfocus\tsession\tfps\tum_per_px\n"
        "s1\tv.avi\tD1\tnative\tin\tday1\t200\t0.5\n"
    )
    results = tmp_path / "results"
    config = tmp_path / "config.yaml"
    config.write_text(f"results: {results}\nbackground:\n  n_frames: 20\n  blur_sigma: 0\n")
    runner = CliRunner()
    done = runner.invoke(app, ["ingest", "s1", "--samples", str(sheet), "--config", str(config)])
    assert done.exit_code == 0, done.output
    # by default a recording's files go where the workflow puts them
    folder = results / "preprocess" / "s1"
    assert json.loads((folder / "ingest" / "s1.json").read_text())["n_frames"] == 40
    done = runner.invoke(app, ["background", "s1", "--samples", str(sheet), "-c", str(config)])
    assert done.exit_code == 0, done.output
    model = load_background(folder / "background" / "s1.npz")
    assert model.images.shape == (1, H, W) and model.params["n_frames"] == 20
    assert (folder / "background" / "s1_qc.png").exists()
    elsewhere = runner.invoke(app, ["ingest", "s1", "--samples", str(sheet), "-c", str(config),
                                    "--out", str(tmp_path / "x")])
    assert elsewhere.exit_code == 0 and (tmp_path / "x" / "ingest" / "s1.png").exists()
    # the background stage reads the ingest record of its own folder
    missing = runner.invoke(app, ["background", "s1", "--samples", str(sheet), "-c",
                                  str(config), "--out", str(tmp_path / "y")])
    assert missing.exit_code == 2 and "run `rbcflow ingest` first" in missing.output
    sheet.write_text(sheet.read_text().replace("\t200\t", "\t300\t"))
    bad = runner.invoke(app, ["ingest", "s1", "--samples", str(sheet), "-c", str(config)])
    assert bad.exit_code == 1 and "frame rate" in bad.output


@pytest.mark.parametrize("fps_sheet", [0.0, -1.0, float("nan"), float("inf"), None])
def test_fps_check_refuses_a_sheet_rate_that_is_not_a_finite_positive_number(fps_sheet):
    # 0 used to end in ZeroDivisionError and NaN to skip the comparison silently
    with pytest.raises(VideoError, match="must be a finite number > 0"):
        check_fps("x.avi", 1800.0, fps_sheet, 0.02)


@pytest.mark.parametrize("fps_file", [None, 0.0, float("nan")])
def test_fps_check_trusts_the_sheet_when_the_file_declares_no_usable_rate(fps_file):
    check_fps("x.avi", fps_file, 1800.0, 0.02)


def test_fps_check_compares_finite_rates():
    check_fps("x.avi", 1810.0, 1800.0, 0.02)
    with pytest.raises(VideoError, match="disagrees with the sample sheet"):
        check_fps("x.avi", 1000.0, 1800.0, 0.02)


def test_recorded_path_does_not_name_the_checkout(tmp_path, monkeypatch):
    # inside the working directory (the project): relative, so another clone writes the
    # same ingest record; outside it: absolute
    from rbcflow.ingest import recorded_path

    (tmp_path / "project" / "videos").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "project")
    assert recorded_path(tmp_path / "project" / "videos" / "a.avi") == "videos/a.avi"
    assert recorded_path(tmp_path / "elsewhere.avi") == str((tmp_path / "elsewhere.avi").resolve())
