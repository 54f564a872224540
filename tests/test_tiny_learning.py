"""The default model learns the tiny preset's DA task, judged by donor cross-validation."""

from __future__ import annotations

import pytest

from rbcflow.evaluate import evaluate_task
from rbcflow.split import split_task
from rbcflow.train import train_task

pytestmark = pytest.mark.slow


def test_default_model_beats_chance_clearly_on_da(tiny_clips, tmp_path):
    clip_files, config = tiny_clips
    task = next(t for t in config["tasks"] if t["name"] == "DA")
    split_tsv = tmp_path / "DA.tsv"
    # Every donor is tested once (3 folds of 2 donors): ~all DA and native clips count.
    split_task(clip_files, task, split_tsv, tmp_path / "DA_audit.json", cv_folds=3,
               seed=config["seed"])  # fmt: skip
    train_task(split_tsv, clip_files, tmp_path / "model", config["train"],
               seed=config["seed"], ablations=False)  # fmt: skip
    params = {"bootstrap": 500, "ablations": False}
    metrics = evaluate_task(split_tsv, clip_files, tmp_path / "model", task, params,
                            seed=config["seed"])  # fmt: skip
    low, high = metrics["test"]["accuracy_ci95"]
    assert metrics["accuracy"]["test"] >= 0.65, metrics["accuracy"]
    assert low > 0.5, metrics["test"]  # the donor-bootstrap interval excludes chance
