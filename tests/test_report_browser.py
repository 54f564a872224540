"""The report opens in a real headless browser, with no server, and shows Table 1.

Needs Chromium (Debian: ``apt-get install chromium``); skipped with that hint otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import matplotlib.image as mpimg
import numpy as np
import pytest
from report_fixtures import MULTICLASS_TASK, make_results

from rbcflow.report import build_report

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def _browser() -> str | None:
    explicit = os.environ.get("RBCFLOW_CHROMIUM")
    if explicit:
        return explicit
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


BROWSER = _browser()
pytestmark = pytest.mark.skipif(
    BROWSER is None,
    reason="no Chromium found: install it (Debian/Ubuntu: `sudo apt-get install chromium`) "
           "or point RBCFLOW_CHROMIUM at a Chrome/Chromium binary",
)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    data = make_results(root, multiclass=True)
    index = build_report(data["config"], data["sheet"], data["inputs"],
                         data["results"] / "report")
    return {"index": index, "root": root, "results": data["results"]}


def _run(args, profile, timeout=90):
    return subprocess.run(
        [BROWSER, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def test_screenshot_is_not_blank(page, tmp_path):
    shot = tmp_path / "report.png"
    result = _run([f"--screenshot={shot}", "--window-size=1280,2000",
                   page["index"].resolve().as_uri()], tmp_path / "profile")
    assert shot.is_file(), result.stderr[-2000:]
    pixels = mpimg.imread(shot)[:, :, :3]
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels.std() > 0.05  # text, tables and figures, not an empty page
    # the top of the page (title, navigation, Table 1) holds dark text on white
    top = pixels[:600]
    assert (top.mean(axis=2) < 0.3).mean() > 0.005


def test_dom_shows_table1(page, tmp_path):
    result = _run(["--dump-dom", page["index"].resolve().as_uri()], tmp_path / "profile")
    dom = result.stdout
    assert "<h2>Table 1</h2>" in dom, result.stderr[-2000:]
    table = json.loads((page["results"] / "report" / "table1.json").read_text())
    for row in table["rows"]:
        assert f"<td class=\"text\">{row['task']}</td>" in dom
        assert f"{100 * row['test_accuracy']:.1f}" in dom
    assert dom.count("data:image/png;base64,") >= 7
    # the task with four classes: its row names them and shows per-class recall
    treatment = next(row for row in table["rows"] if row["task"] == MULTICLASS_TASK["name"])
    assert "native / DA / FA / GA" in dom
    assert "Per-class recall (%) (95 % CI)" in dom
    recall = treatment["test_per_class_recall"]["DA"]
    assert f"DA {100 * recall['recall']:.1f} (" in dom
    assert f"{100 * treatment['test_balanced_accuracy']:.1f}" in dom
    assert np.all([f'id="{a}"' in dom for a in ("table1", "pipeline", "provenance")])


def test_confusion_matrix_figure_shows_every_task(page, tmp_path):
    result = _run(["--dump-dom", page["index"].resolve().as_uri()], tmp_path / "profile")
    assert "Confusion matrices (test)" in result.stdout, result.stderr[-2000:]
    figure = page["results"] / "report" / "figures" / "confusion_matrices.png"
    pixels = mpimg.imread(figure)[:, :, :3]
    assert pixels.std() > 0.05  # drawn, not a placeholder
    # five panels (four two-class tasks and the four-class one) in a 3-column grid
    assert pixels.shape[0] > 1.2 * pixels.shape[1] / 3
