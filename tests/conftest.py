"""Shared fixtures: the simulated tiny dataset, its clips, and three of its recordings,
built once per test worker; the ``--update-reference`` option."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rbcflow.config import load_config, load_sample_sheet

REPO = Path(__file__).resolve().parents[1]
#: Recordings of the `tiny` preset (seed 7) that the chain's own tests run on: a
#: triggered clip in focus, one out of focus, and a continuous recording.
TINY_SEED = 7
TINY_RECORDINGS = ("D01_FA_in_t1", "D01_native_above_t1", "D01_native_in_c1")


def pytest_addoption(parser):
    parser.addoption(
        "--update-reference", action="store_true", default=False,
        help="rewrite tests/data/preprocess_reference.json from the current code "
             "(see tests/test_reference_outputs.py; explain the change when committing)",
    )


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> tuple[Path, Path]:
    """The `tiny` preset (seed 7): (folder, sample sheet).

    Simulated once per test run: parallel test workers share it through a file lock in
    the run's common temporary folder (the pattern of pytest-xdist's documentation).
    """
    from filelock import FileLock

    from rbcflow.simulate import simulate_dataset

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker has its own folder below the run's
        shared = shared.parent
    out = shared / "tiny_dataset"
    with FileLock(str(shared / "tiny_dataset.lock")):
        sheet = out / "samples.tsv"
        if not sheet.exists():  # samples.tsv is written last: its presence means complete
            simulate_dataset(out, preset="tiny", seed=7, progress=False, workers=2)
    return out, sheet


@pytest.fixture(scope="session")
def tiny_clips(tiny_dataset, tmp_path_factory) -> tuple[list[Path], dict]:
    """Clips of every tiny recording, cut by the real chain with the shipped config."""
    from rbcflow.preprocess import preprocess_video

    _, sheet_path = tiny_dataset
    config = load_config(REPO / "config" / "config.yaml")
    sheet = load_sample_sheet(sheet_path, conditions=config["conditions"])
    results = tmp_path_factory.mktemp("tiny_results")
    clip_files = []
    for _, row in sheet.iterrows():
        paths = preprocess_video(row["path"], results, config, row.to_dict())
        clip_files.append(paths["clips"])
    return clip_files, config


@pytest.fixture(scope="session")
def tiny_recordings(tmp_path_factory) -> tuple[Path, list[dict]]:
    """:data:`TINY_RECORDINGS` as uncompressed AVI: (folder, sample-sheet rows).

    The rows' ``path`` and ``truth`` are relative to the folder, as the simulator writes
    them; the rows hold what ``preprocess_video`` reads (``sample`` to ``um_per_px``).
    """
    from rbcflow.simulate.scenario import plan_dataset, write_video

    folder = tmp_path_factory.mktemp("tiny_recordings")
    specs = {spec.sample: spec for spec in plan_dataset("tiny", seed=TINY_SEED)}
    rows = [write_video(specs[name], TINY_SEED, folder, "avi_raw")["row"]
            for name in TINY_RECORDINGS]
    return folder, rows
