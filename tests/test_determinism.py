"""The same bytes on any CPU: the simulator and the per-recording chain with SIMD paths off.

A fresh clone on another machine once reported ``data/demo`` modified: NumPy's float32
and float64 ``exp``/``cos``/``arctan2``/``power`` loops and OpenCV's Gaussian blur are
chosen at run time from the CPU's features (AVX2, AVX-512) and differ in their last bits,
which rounding turned into other grey levels. Each case here renders (or preprocesses)
the same recordings in fresh interpreters whose NumPy and OpenCV are told to ignore the
CPU features above the x86-64 baseline, or run OpenCV on one thread, and asserts
identical bytes; a machine without AVX2 or AVX-512 takes the same paths.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

# a triggered clip below focus (blur, crenated DA cells) and a continuous recording
RECORDINGS = ("D01_DA_below_t1", "D01_native_in_c1")

RENDER = """
import hashlib, json, sys
from pathlib import Path
import cv2
cv2.setNumThreads(int(sys.argv[2]))
from rbcflow.simulate.scenario import plan_dataset, write_video
out = Path(sys.argv[1])
specs = {spec.sample: spec for spec in plan_dataset("tiny", seed=7)}
digests = {}
for name in sys.argv[3:]:
    row = write_video(specs[name], 7, out, "avi_raw")["row"]
    for key in ("path", "truth"):
        digests[row[key]] = hashlib.sha256((out / row[key]).read_bytes()).hexdigest()
print(json.dumps(digests))
"""

PREPROCESS = """
import hashlib, json, sys
from pathlib import Path
import cv2
cv2.setNumThreads(int(sys.argv[2]))
from rbcflow.config import load_config
from rbcflow.preprocess import preprocess_video
row = json.loads(sys.argv[3])
out = Path(sys.argv[1])
paths = preprocess_video(row["path"], out, load_config(sys.argv[4]), row)
print(json.dumps({role: hashlib.sha256(Path(p).read_bytes()).hexdigest()
                  for role, p in sorted(paths.items())}))
"""


def _cpu_settings() -> dict[str, dict[str, str]]:
    """Environment changes that move NumPy and OpenCV onto other SIMD paths."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    found = [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
    settings = {"OpenCV without AVX": {"OPENCV_CPU_DISABLE": "AVX2,FP16,AVX"}}
    if found:
        settings["NumPy at its baseline"] = {"NPY_DISABLE_CPU_FEATURES": " ".join(found)}
    return settings


def _digests(script: str, folder, threads: int, args: list[str], env: dict[str, str],
             cwd) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(threads), *args], cwd=cwd,
        env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_simulator_writes_the_same_bytes_on_every_simd_path(tmp_path):
    reference = _digests(RENDER, tmp_path / "default", 2, list(RECORDINGS), {}, tmp_path)
    assert len(reference) == 2 * len(RECORDINGS)
    for name, env in _cpu_settings().items():
        other = _digests(RENDER, tmp_path / name.replace(" ", "_"), 1, list(RECORDINGS), env,
                         tmp_path)
        assert other == reference, f"{name}: {sorted(k for k in other if other[k] != reference[k])}"


@pytest.fixture(scope="module")
def preprocessed(tiny_recordings, tmp_path_factory) -> tuple[dict, dict[str, dict]]:
    """Output digests of the continuous tiny recording: (default, {setting: digests})."""
    from conftest import REPO

    folder, rows = tiny_recordings
    row = next(r for r in rows if r["sample"] == "D01_native_in_c1")
    args = [json.dumps(row), str(REPO / "config" / "config.yaml")]
    out = tmp_path_factory.mktemp("determinism")
    # run from the recordings' folder: the ingest record holds the (relative) path given
    reference = _digests(PREPROCESS, out / "default", 2, args, {}, folder)
    others = {name: _digests(PREPROCESS, out / name.replace(" ", "_"), 1, args, env, folder)
              for name, env in _cpu_settings().items()}
    return reference, others


def test_preprocessing_writes_the_same_tracks_and_clips_on_every_simd_path(preprocessed):
    reference, others = preprocessed
    for name, other in others.items():
        differing = sorted(k for k in other if other[k] != reference[k] and k != "background")
        assert differing == [], f"{name}: {differing}"


def test_preprocessing_writes_the_same_background_on_every_simd_path(preprocessed):
    reference, others = preprocessed
    for name, other in others.items():
        assert other["background"] == reference["background"], name
