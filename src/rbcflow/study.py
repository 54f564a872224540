"""Checks of a whole study (sample sheet and config together) before any job runs.

A sample sheet can be valid row by row and still describe a study that cannot be
evaluated honestly, or that fails hours later:

- the same recording listed twice (two rows whose files have the same content): under
  two donors it is leakage, the same cells on both sides of a split;
- files that are empty or cannot be opened as a video;
- too few donors (or donor/session groups) in a task for its train/validation/test split
  or its cross-validation folds, for either class;
- a label determined by the recording session or the focus, which no split can undo.

:func:`check_study` finds all of them and raises one :class:`StudyError` listing every
problem; ``rbcflow validate`` and the workflow's start-up call it. Content is compared
cheaply: by size and a hash of the first and last megabyte, and by a full hash only for
files whose cheap fingerprints collide.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from rbcflow.config import ConfigError, task_classes, task_label_map

if TYPE_CHECKING:
    import pandas as pd

#: Bytes hashed at each end of a file for its cheap fingerprint.
EDGE_BYTES = 1 << 20
_READ_BYTES = 8 << 20


class StudyError(ConfigError):
    """The study cannot be run or evaluated honestly; the message lists every problem."""


def _files_of(path: Path) -> list[Path]:
    """The file itself, or the files of a frame folder in name order."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file())
    return [path]


def _edges(path: Path, size: int, digest) -> None:
    with open(path, "rb") as handle:
        digest.update(handle.read(EDGE_BYTES))
        if size > EDGE_BYTES:
            handle.seek(max(size - EDGE_BYTES, EDGE_BYTES))
            digest.update(handle.read(EDGE_BYTES))


def quick_fingerprint(path: str | Path) -> tuple[int, str]:
    """``(total size, sha256 of the size(s), names and first and last MB)`` of a recording.

    Equal content gives equal fingerprints; unequal fingerprints prove different content.
    A frame folder's fingerprint covers its file names and sizes and the ends of its first
    and last frame files.
    """
    path = Path(path)
    files = _files_of(path)
    digest = hashlib.sha256()
    total = 0
    for file in files:
        size = file.stat().st_size
        total += size
        digest.update(f"{file.name if path.is_dir() else ''}\0{size}\0".encode())
    for file in files[:1] + files[1:][-1:]:
        _edges(file, file.stat().st_size, digest)
    return total, digest.hexdigest()


def full_hash(path: str | Path) -> str:
    """sha256 of the whole content (every file of a frame folder, in name order)."""
    path = Path(path)
    digest = hashlib.sha256()
    for file in _files_of(path):
        digest.update(f"{file.name if path.is_dir() else ''}\0".encode())
        with open(file, "rb") as handle:
            while block := handle.read(_READ_BYTES):
                digest.update(block)
    return digest.hexdigest()


def duplicate_recordings(paths: Mapping[str, str | Path]) -> list[tuple[str, str]]:
    """Pairs ``(first, later)`` of names whose recordings have the same content.

    Each later duplicate is paired with the first name of its content, in the order of
    ``paths``. Unreadable paths are skipped (:func:`file_problems` reports them).
    """
    by_quick: dict[tuple[int, str], list[str]] = {}
    for name, path in paths.items():
        try:
            by_quick.setdefault(quick_fingerprint(path), []).append(name)
        except OSError:
            continue
    pairs = []
    for names in by_quick.values():
        if len(names) < 2:
            continue
        first_of: dict[str, str] = {}
        for name in names:  # a full hash only where the cheap fingerprints collide
            content = full_hash(paths[name])
            if content in first_of:
                pairs.append((first_of[content], name))
            else:
                first_of[content] = name
    order = {name: k for k, name in enumerate(paths)}
    return sorted(pairs, key=lambda pair: order[pair[1]])


def file_problems(path: str | Path, open_files: bool = True) -> list[str]:
    """Why a recording cannot be used: missing, empty, or not openable as a video."""
    from rbcflow.io.video import VideoError, open_video

    path = Path(path)
    if not path.exists():
        return ["file not found"]
    files = _files_of(path)
    if not files:
        return ["empty folder (no frame files)"]
    if sum(f.stat().st_size for f in files) == 0:
        return ["zero-byte file" if path.is_file() else "frame files of zero bytes"]
    if not open_files:
        return []
    try:
        with open_video(path) as reader:
            if not reader.n_frames_header:
                return ["no frames"]
    except (VideoError, OSError, ValueError) as exc:
        return [f"cannot be opened as a video ({exc})"]
    return []


def _task_table(sheet: pd.DataFrame, task: Mapping) -> pd.DataFrame:
    labels = task_label_map(task)
    table = sheet.loc[sheet["condition"].isin(labels),
                      ["sample", "donor", "session", "focus", "condition"]].copy()
    table["label"] = table["condition"].map(labels).astype(int)
    return table.reset_index(drop=True)


def donor_problems(sheet: pd.DataFrame, tasks: Iterable[Mapping], split: Mapping) -> list[str]:
    """Tasks whose recordings come from too few donors for the configured split.

    A train/validation/test split needs 3 donors (donor/session groups when
    ``group_by_session``), K-fold cross-validation K, and as many for each class, since
    every split (fold) must hold every class.
    """
    from rbcflow.split import split_groups

    folds = int(split.get("cv_folds") or 0)
    needed = folds or 3
    what = f"{folds}-fold cross-validation" if folds else "a train/validation/test split"
    by_session = bool(split.get("group_by_session"))
    unit = "donor/session groups" if by_session else "donors"
    problems = []
    for task in tasks:
        table = _task_table(sheet, task)
        if table.empty:
            problems.append(f"task {task['name']}: no recordings of its conditions "
                            f"{sorted(task_label_map(task))}")
            continue
        table["group"] = split_groups(table, by_session)
        classes = task_classes(task)
        counts = [table.loc[table["label"] == label, "group"].nunique()
                  for label in range(len(classes))]
        n_groups = table["group"].nunique()
        if n_groups < needed or min(counts) < needed:
            with_class = ", ".join(f"{n} with {'/'.join(c['conditions'])}"
                                   for n, c in zip(counts, classes, strict=True))
            problems.append(
                f"task {task['name']}: {n_groups} {unit} ({with_class})"
                f", but {what} needs at least {needed} with each class (split.cv_folds, "
                "split.group_by_session)")
    return problems


def confound_problems(sheet: pd.DataFrame, tasks: Iterable[Mapping]) -> list[str]:
    """Tasks whose label the session or the focus determines (``rbcflow.split``'s rule)."""
    from rbcflow.split import SplitError, check_confounds, confound_audit

    problems = []
    for task in tasks:
        table = _task_table(sheet, task)
        if table["label"].nunique() < 2:
            continue  # donor_problems names a task without both classes
        try:
            check_confounds(confound_audit(table, task["name"]))
        except SplitError as exc:
            problems.append(str(exc))
    return problems


def check_study(sheet: pd.DataFrame, config: Mapping, source: str = "sample sheet",
                open_files: bool = True) -> None:
    """Raise :class:`StudyError` listing every problem of the study, or return None.

    Parameters
    ----------
    sheet : a sample sheet as :func:`rbcflow.config.load_sample_sheet` returns it (absolute
        paths, rows in file order).
    config : the validated configuration (``tasks`` and ``split`` are read).
    source : the sheet's name in the messages.
    open_files : also open every recording as a video (headers only).
    """
    line = {sample: k + 2 for k, sample in enumerate(sheet["sample"])}

    def where(sample: str) -> str:
        return f"{source} line {line[sample]} (sample {sample})"

    problems = []
    paths = dict(zip(sheet["sample"], sheet["path"], strict=True))
    for sample, path in paths.items():
        problems.extend(f"{where(sample)}: {path}: {p}" for p in file_problems(path, open_files))
    donors = dict(zip(sheet["sample"], sheet["donor"], strict=True))
    for first, later in duplicate_recordings(paths):
        leak = (f" under donors {donors[first]!r} and {donors[later]!r}: the same cells "
                "would be on both sides of a split" if donors[first] != donors[later] else "")
        problems.append(f"{where(later)} and {where(first)}: the same recording (identical "
                        f"content: {paths[later]} and {paths[first]}){leak}")
    problems.extend(donor_problems(sheet, config["tasks"], config["split"]))
    problems.extend(confound_problems(sheet, config["tasks"]))
    if problems:
        raise StudyError(f"{source}: the study has {len(problems)} problem(s):\n  "
                         + "\n  ".join(problems))


__all__ = ["StudyError", "check_study", "donor_problems", "duplicate_recordings",
           "file_problems", "full_hash", "quick_fingerprint"]
