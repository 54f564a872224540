"""Grouping recordings into preprocessing jobs.

A job's fixed cost (starting Python, importing the libraries, the workflow's preamble) is
paid once per job, and for a short triggered clip it exceeds the cost of its frames. The
workflow therefore processes consecutive sample-sheet rows together, up to a size budget
in megabytes of video; a recording larger than the budget is a job of its own. Batches
are named after their first recording (``<sample>`` alone, ``<sample>+<n>`` for n
recordings), so adding a session's recordings at the end of a sheet leaves the earlier
batches, and their results, as they were.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

BATCH_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}(\+[0-9]+)?"


def recording_bytes(path: str | Path) -> int:
    """Size on disk of a recording (a file, or the files of a frame folder)."""
    path = Path(path)
    if path.is_dir():
        return sum(entry.stat().st_size for entry in os.scandir(path) if entry.is_file())
    return path.stat().st_size


def plan_batches(recordings: Iterable[tuple[str, int]], max_mb: float) -> dict[str, list[str]]:
    """Pack (sample, bytes) pairs, in order, into batches of at most ``max_mb`` megabytes.

    Returns batch name -> samples, in sheet order.
    """
    budget = float(max_mb) * 1e6
    batches: list[list[str]] = []
    used = budget + 1.0
    for sample, size in recordings:
        if used + size > budget or not batches:
            batches.append([])
            used = 0.0
        batches[-1].append(sample)
        used += size
    return {(b[0] if len(b) == 1 else f"{b[0]}+{len(b)}"): b for b in batches}
