"""Optional paths name the extra that installs what they need."""

from __future__ import annotations

import sys

import pytest

from rbcflow.io.video import VideoError, open_video


def test_cine_without_pims_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pims", None)  # as if pims were not installed
    path = tmp_path / "a.cine"
    path.write_bytes(b"\0" * 64)
    with pytest.raises(VideoError, match=r"rbcflow\[cine\]"):
        open_video(path)


def test_ffv1_simulation_without_av_names_the_extra(monkeypatch):
    from rbcflow.simulate.writer import _ffv1_encoder

    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(RuntimeError, match=r"rbcflow\[ffv1\]"):
        _ffv1_encoder(32, 16, 100.0)


def test_runtime_dependencies_leave_out_what_no_module_imports():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    runtime = {name.split(">")[0].split("=")[0].split("<")[0].strip()
               for name in project["project"]["dependencies"]}
    assert not {"scikit-image", "pims", "av", "trackpy"} & runtime
    assert {"pims"} <= set(project["project"]["optional-dependencies"]["cine"])
    assert "filelock" in project["project"]["optional-dependencies"]["dev"]
