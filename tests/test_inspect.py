"""`rbcflow inspect`: the page, its figures and the suggested settings, on a simulated
recording and on the real RT-DC files (with defaults)."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
import yaml
from realdata import extract_rtdc, rtdc_params
from typer.testing import CliRunner

from rbcflow import calibrate
from rbcflow.config import load_config
from rbcflow.inspect import config_snippet, mad_sigma, overlay_frames, suggested_settings


def _check_page(folder, verdicts=("ok", "suspect", "failed")) -> dict:
    """The page is self-contained, shows the three figures and a verdict; the snippet
    is a valid config. Returns the snippet's detect section."""
    page = (folder / "index.html").read_text()
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # nothing fetched
    assert page.count("data:image/png;base64,") == 3
    verdict = re.search(r"QC verdict: <span class='badge \w+'>(\w+)</span>", page).group(1)
    assert verdict in verdicts
    for name in ("overlay", "noise", "areas"):
        image = cv2.imread(str(folder / f"{name}.png"))
        assert image is not None and image.shape[0] > 50, name
    snippet = yaml.safe_load((folder / "config_snippet.yaml").read_text())
    load_config(overrides=snippet)  # the suggestion validates against the schema
    return snippet["detect"]


def test_inspect_a_simulated_recording(tiny_recordings, tmp_path):
    from rbcflow.cli import app

    folder, rows = tiny_recordings
    row = rows[0]  # a triggered clip in focus
    result = CliRunner().invoke(app, ["inspect", str(folder / row["path"]), "--out",
                                      str(tmp_path / "insp"), "--um-per-px",
                                      str(row["um_per_px"]), "--fps", str(row["fps"])])
    assert result.exit_code == 0, result.output
    assert "inspection page:" in result.output and "threshold:" in result.output
    detect = _check_page(tmp_path / "insp", verdicts=("ok",))
    # the suggestion is threshold_k (3) x the noise the simulator added
    from rbcflow.background import load_background

    model = load_background(next((tmp_path / "insp" / "run" / "background").glob("*.npz")))
    sigma = calibrate.noise_sigma(calibrate.histogram_of(model.params["noise"]))
    assert detect["threshold"] == pytest.approx(3 * sigma, rel=0.15)
    assert detect["polarity"] in ("dark", "bright", "absolute")
    assert 4.0 < detect["cell_diameter_um"] < 12.0  # red cells, as simulated
    page = (tmp_path / "insp" / "index.html").read_text()
    assert "kept" in page and "noise MAD-sigma" in page


@pytest.mark.parametrize("name", rtdc_params())
def test_inspect_runs_on_the_real_rtdc_files_with_defaults(name, tmp_path):
    from rbcflow.cli import app

    real = extract_rtdc(name, tmp_path)
    result = CliRunner().invoke(app, ["inspect", str(real), "--out", str(tmp_path / "insp")])
    assert result.exit_code == 0, result.output
    detect = _check_page(tmp_path / "insp")
    assert detect["threshold"] >= 3.0  # threshold_min of the defaults
    overlay = cv2.imread(str(tmp_path / "insp" / "overlay.png"))
    with h5_width(real) as width:
        assert overlay.shape[1] == width


class h5_width:  # noqa: N801  (a small context manager read like a function)
    """The frame width of an .rtdc file."""

    def __init__(self, path):
        from rbcflow.io.rtdc import RtdcReader

        self.reader = RtdcReader(path)

    def __enter__(self):
        return self.reader.width

    def __exit__(self, *exc):
        self.reader.close()


# below one grey level the few occupied levels make the estimate high by about 13 %
@pytest.mark.parametrize(("sigma", "tolerance"), [(0.8, 0.15), (1.5, 0.06), (3.0, 0.06),
                                                  (6.0, 0.06)])
def test_mad_sigma_follows_the_noise_across_the_grey_level_steps(sigma, tolerance):
    rng = np.random.default_rng(1)
    background = np.full((120, 160), 97.3, np.float32)
    frames = [np.clip(np.rint(background + rng.normal(0, sigma, background.shape)), 0, 255)
              for _ in range(4)]
    counts = calibrate.difference_histogram(frames, background)
    # whole grey levels add their rounding (variance 1/12) to the noise
    expected = np.sqrt(sigma**2 + 1 / 12)
    assert mad_sigma(counts, calibrate.bin_centres()) == pytest.approx(expected, rel=tolerance)


def test_suggested_settings_and_snippet():
    areas = np.array([30.0, 40.0, 50.0])
    settings = suggested_settings(1.5, 3.0, 3.0, "dark", areas)
    assert settings == {"threshold": 4.5, "polarity": "dark",
                        "cell_diameter_um": round(2 * np.sqrt(40 / np.pi), 2)}
    assert suggested_settings(0.5, 3.0, 3.0, "absolute", np.zeros(0)) == {
        "threshold": 3.0, "polarity": "absolute"}
    text = config_snippet(settings, 1.5, 3.0)
    assert yaml.safe_load(text) == {"detect": settings}
    assert text.startswith("# suggested by rbcflow inspect: noise sigma 1.50")


def test_overlay_frames_are_the_busiest():
    import pandas as pd

    table = pd.DataFrame({"frame": [5, 5, 5, 2, 2, 9, 9, 1, 7, 7, 7, 7]})
    assert overlay_frames(table, 2) == [5, 7]
    assert overlay_frames(table, 4) == [2, 5, 7, 9]
    assert overlay_frames(table.iloc[:0]) == [0]
