"""Study-level checks before any job: duplicate recordings, unusable files, donors per task,
labels confounded with session, through `rbcflow validate` and `snakemake --dry-run`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from rbcflow import study
from rbcflow.config import load_config, load_sample_sheet
from rbcflow.study import StudyError, check_study, duplicate_recordings, quick_fingerprint

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HEADER = "sample\tpath\tdonor\tcondition\tfocus\tsession\tfps\tum_per_px"
TASK = [{"name": "DA", "negative": ["native"], "positive": ["DA"]}]


def _video(path: Path, seed: int, n_frames: int = 4) -> Path:
    """A small, valid and distinct raw AVI."""
    from rbcflow.simulate.writer import VideoSink

    rng = np.random.default_rng(seed)
    with VideoSink(path, "avi_raw", 32, 16, fps=100.0) as sink:
        for _ in range(n_frames):
            sink.write(rng.integers(0, 256, (16, 32), dtype=np.uint8))
    return path


def _sheet(folder: Path, rows: list[tuple]) -> Path:
    """rows: (sample, file, donor, condition[, session]); files are made when missing."""
    lines = [HEADER]
    for k, (sample, file, donor, condition, *session) in enumerate(rows):
        if not (folder / file).exists():
            _video(folder / file, seed=k)
        lines.append(f"{sample}\t{file}\t{donor}\t{condition}\tin\t"
                     f"{session[0] if session else 'day1'}\t100\t0.5")
    sheet = folder / "samples.tsv"
    sheet.write_text("\n".join(lines) + "\n")
    return sheet


def _good_rows():
    """Six donors, each recorded native and DA in one session of its own."""
    return [(f"S{d}{c}", f"v{d}{c}.avi", f"D{d}", c, f"day{d}")
            for d in range(6) for c in ("native", "DA")]


def _config(folder: Path, **split) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump({"samples": str(folder / "samples.tsv"), "tasks": TASK,
                                    "conditions": ["native", "DA"], "split": {
                                        "train": 0.6, "validation": 0.2, "test": 0.2,
                                        **split}}))
    return path


def _validate(config: Path):
    from rbcflow.cli import app

    return CliRunner().invoke(app, ["validate", "--config", str(config)])


def test_a_good_study_passes_validate(tmp_path):
    _sheet(tmp_path, _good_rows())
    result = _validate(_config(tmp_path))
    assert result.exit_code == 0, result.output
    assert "12 samples OK" in result.output


def test_one_file_under_two_donors_is_rejected_naming_both_rows(tmp_path):
    rows = _good_rows()
    rows[5] = ("S2DA", "v0native.avi", "D2", "DA", "day2")  # line 7 reuses line 2's file
    _sheet(tmp_path, rows)
    (tmp_path / "copy.avi").write_bytes((tmp_path / "v1DA.avi").read_bytes())
    rows[7] = ("S3DA", "copy.avi", "D3", "DA", "day3")  # a byte-identical copy, line 9
    _sheet(tmp_path, rows)
    result = _validate(_config(tmp_path))
    assert result.exit_code == 2
    assert "2 problem(s)" in result.output
    assert "line 7 (sample S2DA) and" in result.output
    assert "line 2 (sample S0native)" in result.output
    assert "donors 'D0' and 'D2'" in result.output
    assert "line 9 (sample S3DA) and" in result.output and "line 5 (sample S1DA)" in result.output
    assert "samples OK" not in result.output


def test_two_donors_are_too_few_for_a_three_way_split_and_folds(tmp_path):
    _sheet(tmp_path, [r for r in _good_rows() if r[2] in ("D0", "D1")])
    result = _validate(_config(tmp_path))
    assert result.exit_code == 2
    assert ("task DA: 2 donors (2 with native, 2 with DA), but a train/validation/test "
            "split needs at least 3") in result.output
    _sheet(tmp_path, _good_rows())
    result = _validate(_config(tmp_path, cv_folds=8))
    assert result.exit_code == 2 and "8-fold cross-validation needs at least 8" in result.output
    # one class in too few donors: each split must hold both classes
    rows = [r for r in _good_rows() if r[3] == "native" or r[2] in ("D0", "D1")]
    _sheet(tmp_path, rows)
    result = _validate(_config(tmp_path))
    assert result.exit_code == 2 and "(6 with native, 2 with DA)" in result.output


def test_empty_unopenable_files_and_a_session_confound_are_listed_together(tmp_path):
    rows = [(f"S{d}{c}", f"v{d}{c}.avi", f"D{d}{c}", c, f"day{c}")
            for d in range(3) for c in ("native", "DA")]  # sessions = conditions
    (tmp_path / "v0DA.avi").write_bytes(b"")
    (tmp_path / "v1DA.avi").write_bytes(b"no video here" * 10)
    _sheet(tmp_path, rows)
    result = _validate(_config(tmp_path))
    assert result.exit_code == 2
    assert "3 problem(s)" in result.output
    assert "line 3 (sample S0DA)" in result.output and "zero-byte file" in result.output
    assert "line 5 (sample S1DA)" in result.output and "cannot be opened" in result.output
    assert "the label is fully determined by session" in result.output


def test_frame_folders_and_large_files_hash_by_content(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "EDGE_BYTES", 8)
    a, b, c = (tmp_path / n for n in ("a.bin", "b.bin", "c.bin"))
    a.write_bytes(b"0123456789" * 5)
    b.write_bytes(b"0123456789" * 5)
    c.write_bytes(b"0123456789" * 2 + b"X" + b"123456789" + b"0123456789" * 2)
    assert quick_fingerprint(a) == quick_fingerprint(c)  # same size and ends: a collision
    full = []
    monkeypatch.setattr(study, "full_hash", lambda p, f=study.full_hash: full.append(p) or f(p))
    assert duplicate_recordings({"A": a, "B": b, "C": c}) == [("A", "B")]
    assert len(full) == 3  # the full hash only where the fingerprints collide
    full.clear()
    for name in ("f1", "f2"):
        (tmp_path / name).mkdir()
        for k in range(3):
            (tmp_path / name / f"{k:03d}.png").write_bytes(bytes([k]) * 20)
    assert duplicate_recordings({"A": a, "F1": tmp_path / "f1", "F2": tmp_path / "f2"}) == [
        ("F1", "F2")]
    assert full == [tmp_path / "f1", tmp_path / "f2"]


def test_check_study_is_silent_on_a_good_study(tmp_path):
    sheet = load_sample_sheet(_sheet(tmp_path, _good_rows()), conditions=["native", "DA"])
    check_study(sheet, load_config(_config(tmp_path)))
    with pytest.raises(StudyError, match="5-fold cross-validation needs at least 5"):
        check_study(sheet.iloc[:8], load_config(_config(tmp_path, cv_folds=5)))


@pytest.mark.skipif(shutil.which("snakemake", path=str(BIN)) is None, reason="no snakemake")
def test_the_workflow_refuses_the_study_before_any_job(tmp_path):
    def dry_run():
        result = subprocess.run(
            [str(BIN / "snakemake"), "--dry-run", "--cores", "1", "--nolock", "all",
             "--configfile", str(config)], cwd=REPO, capture_output=True, text=True,
            timeout=300)
        return result, result.stdout + result.stderr

    rows = [r for r in _good_rows() if r[2] in ("D0", "D1", "D2")]
    _sheet(tmp_path, rows)
    config = _config(tmp_path)
    result, output = dry_run()  # the good study plans its jobs
    assert result.returncode == 0, output
    assert "preprocess_batch" in output
    rows[3] = ("S1DA", "v0native.avi", "D1", "DA", "day1")
    _sheet(tmp_path, rows)
    result, output = dry_run()
    assert result.returncode != 0
    assert "the study has 1 problem(s)" in output and "line 5 (sample S1DA) and" in output
    assert "Job stats" not in output  # nothing was planned, let alone run
