"""DVC behaviour on the tiny preset, in a temporary git + DVC copy of the project.

One module-scoped `dvc repro` builds everything; the tests then check, in order, that a
second repro does nothing, that a training parameter reruns only training and report,
that experiments work, that push / pull restores an identical report, and that Snakemake
run after a checkout does not redo finished work.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from project_copy import make_project, run

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

REPORT_FILES = ["results/report/table1.json", "results/report/table1.csv",
                "results/report/index.html"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stages_run(output: str) -> set[str]:
    """Stage names DVC says it ran in a `dvc repro` output."""
    ran = set()
    for line in output.splitlines():
        if line.startswith("Running stage '"):
            ran.add(line.split("'")[1])
    return ran


def nodes(tree):
    """Every mapping in a JSON tree (dvc exp show nests experiments under commits)."""
    if isinstance(tree, dict):
        yield tree
        for value in tree.values():
            yield from nodes(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from nodes(value)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dvc") / "project"
    root.mkdir()
    # Two tasks keep the test short; the graph is the same for four.
    project = make_project(
        root,
        {"tasks": [
            {"name": "DA", "negative": ["native"], "positive": ["DA"]},
            {"name": "Mix", "negative": ["native"], "positive": ["DA", "FA", "GA"]},
        ]},
    )
    result = run(["dvc", "repro"], project)
    assert {"data", "preprocess", "train@0", "train@1", "report"} <= stages_run(result.stdout)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "reproduced"], project)
    return project


def test_repro_builds_everything(project):
    for name in REPORT_FILES:
        assert (project / name).stat().st_size > 0, name
    assert (project / "dvc.lock").exists()
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert set(lock["stages"]) >= {"data", "preprocess", "train@0", "train@1", "report"}
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], project).stdout)
    text = json.dumps(metrics)
    assert "results/models/DA/metrics.json" in text and "table1.json" in text
    plots = run(["dvc", "plots", "show", "--json"], project)
    assert "history.csv" in plots.stdout


def test_report_numbers_equal_the_metrics_files(project):
    """The whole workflow on the tiny preset: Table 1 shows what evaluation measured."""
    import pandas as pd

    table = json.loads((project / "results/report/table1.json").read_text())
    csv = pd.read_csv(project / "results/report/table1.csv")
    assert [row["task"] for row in table["rows"]] == ["DA", "Mix"] == list(csv["task"])
    for row, (_, csv_row) in zip(table["rows"], csv.iterrows(), strict=True):
        metrics = json.loads(
            (project / f"results/models/{row['task']}/metrics.json").read_text()
        )
        for split in ("train", "validation", "test"):
            assert row[f"{split}_accuracy"] == metrics["accuracy"][split]
            assert abs(csv_row[f"{split}_accuracy_pct"] - 100 * metrics["accuracy"][split]) <= 0.05
            assert row[f"{split}_clips"] == metrics["counts"][split]["clips"]
        assert row["test_roc_auc"] == metrics["test"]["roc_auc"]
        assert [row["test_accuracy_ci95_low"], row["test_accuracy_ci95_high"]] == (
            metrics["test"]["accuracy_ci95"]
        )
    html = (project / "results/report/index.html").read_text()
    assert "data:image/png;base64," in html and "Table 1" in html


def test_second_repro_does_nothing(project):
    result = run(["dvc", "repro"], project)
    assert stages_run(result.stdout) == set()
    status = run(["dvc", "status"], project)
    assert "up to date" in status.stdout


def test_bytecode_caches_do_not_make_code_dependencies_stale(project):
    # Python writes these beside the modules on import, unless PYTHONDONTWRITEBYTECODE is
    # set (as on some machines, which would hide the problem)
    cache = project / "src" / "rbcflow" / "track" / "__pycache__"
    cache.mkdir(exist_ok=True)
    pyc = cache / "stream.cpython-311.pyc"
    pyc.write_bytes(b"bytecode")
    try:
        status = run(["dvc", "status"], project)
        assert "up to date" in status.stdout, status.stdout
    finally:
        pyc.unlink()


def test_every_file_the_run_wrote_is_declared_by_snakemake_and_dvc(project):
    """results/ holds only declared outputs (of a rule and of a DVC stage); job logs and
    benchmarks, the run-specific files, live in logs/ and are Snakemake's log and benchmark
    files."""
    summary = run(["snakemake", "--dry-run", "--summary", "--cores", "1", "all"], project)
    outputs = {line.split("\t")[0] for line in summary.stdout.splitlines()[1:] if "\t" in line}
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    dvc_outs = {out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])}

    def covered(path: str, declared: set[str]) -> bool:
        return any(path == d or path.startswith(d.rstrip("/") + "/") for d in declared)

    written = sorted(str(p.relative_to(project)) for p in (project / "results").rglob("*")
                     if p.is_file() and p.name != "README.md")
    assert len(written) > 50
    undeclared = [p for p in written if not covered(p, outputs)]
    assert undeclared == [], f"written by no rule: {undeclared[:10]}"
    untracked = [p for p in written if not covered(p, dvc_outs)]
    assert untracked == [], f"not declared by DVC: {untracked[:10]}"
    logs = [p for p in (project / "logs").rglob("*") if p.is_file()]
    assert logs and all(p.suffix in (".log", ".tsv") or p.name.endswith(".runtime.json")
                        for p in logs), logs[:5]


def test_training_parameter_reruns_only_training_and_report(project):
    clips = sorted((project / "results" / "preprocess").glob("*/clips/*.h5"))
    before = {p: p.stat().st_mtime_ns for p in clips}
    config_path = project / "config" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["train"]["learning_rate"] = config["train"]["learning_rate"] * 2
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    result = run(["dvc", "repro"], project)
    ran = stages_run(result.stdout)
    # the bundles hash the retrained models, so they follow them
    assert ran == {"train@0", "train@1", "bundle@0", "bundle@1", "report"}, result.stdout
    # Snakemake did not redo preprocessing inside the training stages either.
    assert {p: p.stat().st_mtime_ns for p in clips} == before
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "learning rate doubled"], project)


def test_experiment_run_and_show(project):
    run(["dvc", "exp", "run", "-S", "config/config.yaml:train.epochs=2", "-n", "short"], project)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    experiment = next(found for found in nodes(shown) if found.get("name") == "short"
                      and "data" in found)  # fmt: skip
    params = experiment["data"]["params"]["config/config.yaml"]["data"]
    assert params["train"]["epochs"] == 2
    metrics = experiment["data"]["metrics"]
    assert "accuracy" in json.dumps(metrics["results/models/DA/metrics.json"])
    # Back to the committed state for the next tests.
    run(["git", "checkout", "--", "."], project)
    run(["dvc", "checkout", "--force"], project)


def test_push_then_pull_restores_an_identical_report(project):
    before = {name: digest(project / name) for name in REPORT_FILES}
    run(["dvc", "push"], project)
    shutil.rmtree(project / ".dvc" / "cache")
    for folder in ("results", "data"):
        shutil.rmtree(project / folder, ignore_errors=True)
    # As in a fresh clone: git brings the metrics and plots, DVC everything else.
    run(["git", "checkout", "--", "."], project)
    run(["dvc", "pull"], project)
    after = {name: digest(project / name) for name in REPORT_FILES}
    assert after == before
    assert "up to date" in run(["dvc", "status"], project).stdout


def test_snakemake_after_checkout_does_not_rerun_finished_work(project):
    # After the pull above, every file has a fresh modification time in whatever order
    # DVC wrote them, and Snakemake's own records still describe the experiment run
    # before. The README's step (make after-checkout) trusts DVC's content check instead.
    run(["make", "after-checkout", "SNAKEMAKE=snakemake"], project)
    dry = run(["snakemake", "--dry-run", "--cores", "1", "all"], project)
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout
    # And DVC still agrees that nothing changed.
    assert "up to date" in run(["dvc", "status"], project).stdout
