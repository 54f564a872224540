"""Real reference recordings kept beside the project (``../shared/realdata``).

The folder is not part of the repository: tests that need it are skipped, with the
reason, where it is absent. Each ``rtdc/<name>.zip`` holds one ``.rtdc`` file.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
RTDC_ZIPS = REALDATA / "rtdc"
_ABSENT = f"real reference data not found at {REALDATA}"


def rtdc_names() -> list[str]:
    """Names (zip stems) of the real ``.rtdc`` files, sorted; empty when absent."""
    if not RTDC_ZIPS.is_dir():
        return []
    return sorted(p.stem for p in RTDC_ZIPS.glob("*.zip"))


def rtdc_params() -> list:
    """``pytest.param`` per real file, or one skipped param saying the data is absent."""
    names = rtdc_names()
    if not names:
        return [pytest.param(None, marks=pytest.mark.skip(reason=_ABSENT), id="no-realdata")]
    return [pytest.param(name, id=name) for name in names]


def extract_rtdc(name: str, folder: Path) -> Path:
    """Extract ``rtdc/<name>.zip`` into ``folder``; the path of its one ``.rtdc`` file."""
    archive = RTDC_ZIPS / f"{name}.zip"
    if not archive.is_file():
        pytest.skip(f"{_ABSENT} ({archive.name})")
    target = folder / name
    with zipfile.ZipFile(archive) as bundle:
        members = [m for m in bundle.namelist() if m.endswith(".rtdc")]
        if len(members) != 1:
            raise AssertionError(f"{archive}: expected one .rtdc file, found {members}")
        return Path(bundle.extract(members[0], target))
