"""Provenance: what produced an output (code version, packages, inputs, machine)."""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

from rbcflow import __version__

_KEY_PACKAGES = (
    "numpy", "scipy", "pandas", "opencv-python-headless", "scikit-image", "scikit-learn",
    "h5py", "tensorflow-cpu", "tensorflow", "keras", "snakemake", "dvc", "motmetrics",
)


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 22) -> str:
    """SHA-256 of a file, read in chunks (recordings can be many GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def git_revision(repo: str | Path | None = None) -> str | None:
    """The commit of the working tree (with ``-dirty`` when it has changes), or None.

    Asked once per process and folder: every clip file records it, and spawning git for
    each costs milliseconds.
    """
    return _git_revision(str(Path(repo) if repo else Path(__file__).resolve().parent))


@functools.lru_cache(maxsize=8)
def _git_revision(cwd: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=cwd, capture_output=True, text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def package_versions() -> dict[str, str]:
    """Versions of the packages whose behaviour shapes the results."""
    return dict(_package_versions())


@functools.lru_cache(maxsize=1)
def _package_versions() -> dict[str, str]:
    # installed versions do not change while a process runs; the metadata lookups do
    # cost some 25 ms, paid by every clip file otherwise
    versions = {"rbcflow": __version__, "python": platform.python_version()}
    for name in _KEY_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def hardware() -> dict[str, object]:
    """CPU and (when TensorFlow sees one) GPU description."""
    info: dict[str, object] = {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    info["processor"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


#: The packages whose code shapes a preprocessing output (decoding, image operations,
#: tables, file formats); clip files record these only, so a training environment (a GPU
#: build of TensorFlow, say) does not change their bytes.
PREPROCESSING_PACKAGES = ("rbcflow", "python", "numpy", "scipy", "pandas",
                          "opencv-python-headless", "h5py")


def stable_provenance(packages: tuple[str, ...] | None = None,
                      **extra: object) -> dict[str, object]:
    """What produced an output that does not change from run to run: the rbcflow and
    package versions (no time, host or commit), for files whose hash DVC records.

    ``packages`` restricts the versions recorded to these names.
    """
    versions = package_versions()
    if packages is not None:
        versions = {k: v for k, v in versions.items() if k in packages}
    record: dict[str, object] = {"rbcflow_version": __version__, "packages": versions}
    record.update(extra)
    return record


def provenance_record(**extra: object) -> dict[str, object]:
    """A provenance dictionary with the run's commit and time (for logs and run records)."""
    record: dict[str, object] = {
        "rbcflow_version": __version__,
        "git_revision": git_revision(),
        "created": utc_now(),
        "packages": package_versions(),
    }
    record.update(extra)
    return record
