"""A committed reference of the preprocessing outputs, so no change alters them unnoticed.

Three recordings of the ``tiny`` preset (seed 7, ``conftest.TINY_RECORDINGS``: a triggered
clip in focus, a triggered clip above focus and a continuous recording) go through
``rbcflow.preprocess.preprocess_video`` with the shipped ``config/config.yaml``; the
SHA-256 of every file it writes (ingest record and contact sheet, background and its QC
figure, tracks and summary, clips and clip QC, QC record) must equal
``tests/data/preprocess_reference.json``.

When a change is meant to alter the outputs, regenerate the reference::

    .venv/bin/pytest -p no:cacheprovider tests/test_reference_outputs.py --update-reference

and explain in the commit that changes the JSON which files changed and why (its diff
shows which); a reference regenerated without a reason protects nothing. The clip files
record the versions of the packages that shape the results and the tracks file the
pyarrow version (it is written without pandas), so upgrading the lock file changes those
hashes too: the reference lists the versions it was made with, and a failure names those
that differ.

The recordings are run from their folder with relative paths (the ingest record holds
the path it was given), so the bytes depend on nothing but the code, the configuration
and the package versions. The reference is compared in a process other than the one that
wrote it (with another hash seed), and a second run in this process must give the same
hashes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import REPO, TINY_RECORDINGS, TINY_SEED

from rbcflow.layout import output_paths

REFERENCE = Path(__file__).resolve().parent / "data" / "preprocess_reference.json"
#: The folders of a recording's outputs the reference must cover (``rbcflow.layout``).
STAGE_FOLDERS = {"ingest", "background", "tracks", "clips", "qc"}


def _environment() -> dict[str, str]:
    import pyarrow

    from rbcflow.provenance import package_versions

    return {**package_versions(), "pyarrow": pyarrow.__version__}


def _preprocess_all(folder: Path, rows: list[dict], out: Path) -> dict[str, str]:
    """Run the chain on every recording (paths relative to ``folder``); file -> SHA-256."""
    from rbcflow.config import load_config
    from rbcflow.preprocess import preprocess_video

    config = load_config(REPO / "config" / "config.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for row in rows:
            preprocess_video(row["path"], out, config, row)
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def produced(tiny_recordings, tmp_path_factory) -> tuple[dict[str, str], list[dict], Path]:
    """The hashes of one run, the recordings' rows and the run's output folder."""
    folder, rows = tiny_recordings
    out = tmp_path_factory.mktemp("reference_run")
    return _preprocess_all(folder, rows, out), rows, out


def _reference_record(hashes: dict[str, str], rows: list[dict]) -> dict:
    return {
        "about": "SHA-256 of every preprocessing output of three simulated recordings; "
                 "see tests/test_reference_outputs.py before regenerating",
        "config": "config/config.yaml",
        "recordings": {row["sample"]: {"preset": "tiny", "seed": TINY_SEED,
                                       "mode": row["mode"], "focus": row["focus"],
                                       "fps": row["fps"], "um_per_px": row["um_per_px"]}
                       for row in rows},
        "environment": _environment(),
        "files": hashes,
    }


def test_outputs_equal_the_committed_reference(produced, request):
    hashes, rows, _ = produced
    if request.config.getoption("--update-reference"):
        REFERENCE.parent.mkdir(parents=True, exist_ok=True)
        REFERENCE.write_text(json.dumps(_reference_record(hashes, rows), indent=2) + "\n")
    reference = json.loads(REFERENCE.read_text())
    expected = reference["files"]
    missing = sorted(set(expected) - set(hashes))
    extra = sorted(set(hashes) - set(expected))
    changed = sorted(name for name in set(expected) & set(hashes)
                     if expected[name] != hashes[name])
    versions = {name: (was, _environment().get(name))
                for name, was in reference["environment"].items()
                if _environment().get(name) != was}
    assert not (missing or extra or changed), (
        f"preprocessing outputs differ from {REFERENCE.name}: changed {changed}, missing "
        f"{missing}, new {extra}; package versions that differ (reference, now): "
        f"{versions or 'none'}. If the change is intended, regenerate with "
        "--update-reference and explain it in the commit.")


def test_reference_covers_every_output_of_every_stage_and_kind_of_recording(produced):
    _, rows, _ = produced
    reference = json.loads(REFERENCE.read_text())
    assert list(reference["recordings"]) == list(TINY_RECORDINGS)
    files = set(reference["files"])
    for sample in TINY_RECORDINGS:
        roles = {path.as_posix() for path in output_paths(Path(), sample).values()}
        assert roles <= files, sorted(roles - files)
    assert len(files) == len(TINY_RECORDINGS) * len(output_paths(Path(), "s"))
    assert {name.split("/")[0] for name in files} == STAGE_FOLDERS
    recordings = reference["recordings"].values()
    assert {r["mode"] for r in recordings} == {"triggered", "continuous"}
    assert len({r["focus"] for r in recordings}) >= 2
    assert {row["sample"]: row["mode"] for row in rows} == {
        sample: r["mode"] for sample, r in reference["recordings"].items()}


def test_every_recording_gives_tracks_and_clips(produced):
    # a reference of empty outputs would protect little: each recording has kept tracks
    # and clips
    _, rows, out = produced
    for row in rows:
        record = json.loads((out / "qc" / f"{row['sample']}.json").read_text())
        assert record["n_clips"] >= 1 and record["tracks"].get("kept", 0) >= 1, record


def test_a_second_run_gives_the_same_bytes(produced, tiny_recordings, tmp_path):
    hashes, rows, _ = produced
    folder, _ = tiny_recordings
    assert _preprocess_all(folder, rows, tmp_path / "again") == hashes
