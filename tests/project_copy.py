"""A throw-away copy of the project (a fresh git + DVC repository) for end-to-end tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tracked_files() -> list[str]:
    """Files of the working tree as a clean clone would have them (plus new, unignored ones)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout
    # The demo's lock file and versioned metrics belong to the demo configuration, not to
    # the copy's: it starts without results, as a project before its first `dvc repro`.
    names = [n for n in out.splitlines() if n != "dvc.lock" and not n.startswith("results/")]
    return [n for n in names if (REPO / n).is_file() or (REPO / n).is_symlink()]


def project_env(project: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    # The copy's own code, not the checkout's editable install.
    env["PYTHONPATH"] = str(project / "src")
    env.pop("SNAKEMAKE_PROFILE", None)
    env["DVC_NO_ANALYTICS"] = "1"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "rbcflow tests"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "tests@rbcflow.invalid"
    return env


def run(args: list[str], project: Path, timeout: int = 1200, check: bool = True):
    result = subprocess.run(
        args, cwd=project, env=project_env(project), capture_output=True, text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"`{' '.join(args)}` failed ({result.returncode}) in {project}:\n"
            f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        )
    return result


def make_project(destination: Path, config_overrides: dict | None = None) -> Path:
    """Copy the project to ``destination``, configured as config.yaml + tiny.yaml + overrides.

    The copy is a new git repository with one commit, DVC initialised from the copied
    ``.dvc/config`` and its default remote pointed at ``destination/../dvc-remote``.
    """
    project = destination
    for name in tracked_files():
        target = project / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_symlink():  # e.g. src/rbcflow/schemas -> workflow/schemas
            target.symlink_to(os.readlink(REPO / name))
        else:
            shutil.copy2(REPO / name, target)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for overrides in (yaml.safe_load((REPO / "config" / "tiny.yaml").read_text()),
                      config_overrides or {}):
        for key, value in overrides.items():
            if isinstance(value, dict):
                config.setdefault(key, {}).update(value)
            else:
                config[key] = value
    (project / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    remote = project.parent / "dvc-remote"
    remote.mkdir(exist_ok=True)
    run(["git", "init", "-q", "-b", "main"], project)
    run(["dvc", "remote", "add", "-f", "-d", "localstore", str(remote)], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "project copy"], project)
    return project
