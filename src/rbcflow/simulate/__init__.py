"""Physically grounded microflow video simulator (the built-in demo and test dataset).

Entry point: :func:`simulate_dataset`. Modules: ``geometry`` (channels), ``mechanics``
(flow, deformation, tank-treading, Jeffery tumbling), ``optics`` (brightfield image of
walls and cells), ``render`` (frame composition), ``scenario`` (conditions, donors,
presets, per-video generation) and ``writer`` (streaming video files).
"""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path

import numpy as np

from rbcflow.simulate.scenario import (
    CONDITIONS,
    FOCI,
    PRESETS,
    TRUTH_COLUMNS,
    plan_dataset,
    write_video,
)
from rbcflow.simulate.writer import VIDEO_FORMATS, VideoSink

__all__ = [
    "CONDITIONS", "FOCI", "PRESETS", "TRUTH_COLUMNS", "VIDEO_FORMATS", "VideoSink",
    "plan_dataset", "simulate_dataset", "write_contact_sheet",
]  # fmt: skip

log = logging.getLogger(__name__)
SHEET_COLUMNS = [
    "sample", "path", "donor", "condition", "focus", "session", "fps", "um_per_px",
    "geometry", "mode", "truth",
]  # fmt: skip


def write_contact_sheet(path: Path, frames: list[tuple[str, np.ndarray]]) -> None:
    """Stack labelled frames vertically into one PNG (atomically)."""
    import cv2

    from rbcflow.io.atomic import atomic_path

    tiles = []
    for label, img in frames:
        tile = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        cv2.putText(tile, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1,
                    cv2.LINE_AA)  # fmt: skip
        tiles.append(tile)
        tiles.append(np.zeros((4, img.shape[1], 3), np.uint8))
    ok, buf = cv2.imencode(".png", np.vstack(tiles[:-1]))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def simulate_dataset(
    outdir: str | Path,
    preset: str = "demo",
    seed: int = 2024,
    effect_size: float = 1.0,
    video_format: str = "avi_raw",
    progress: bool = True,
    design: str = "paired",
    workers: int = 1,
) -> Path:
    """Simulate a labelled dataset of microflow recordings with ground truth.

    Writes ``OUTDIR/videos/<sample>.<ext>``, ``OUTDIR/truth/<sample>.tsv``,
    ``OUTDIR/contact_sheets/<condition>.png`` and, last, ``OUTDIR/samples.tsv``.

    Parameters
    ----------
    outdir
        Output folder (created).
    preset
        ``tiny`` (tests) or ``demo`` (the workflow's default dataset).
    seed
        Same seed, byte-identical files.
    effect_size
        Scales every difference between conditions; 0 makes them identical.
    video_format
        ``avi_raw``, ``ffv1``, ``mjpg`` or ``tiff``.
    progress
        Show a progress bar (only on a terminal).
    design
        ``paired`` (every donor gives every condition) or ``nested`` (one per donor).
    workers
        Recordings rendered in parallel processes. Each recording is seeded from
        ``(seed, its index)``, so the output does not depend on this number.

    Returns
    -------
    Path
        The sample sheet ``OUTDIR/samples.tsv``.
    """
    import pandas as pd
    from tqdm import tqdm

    from rbcflow.io.atomic import write_text_atomic

    if video_format not in VIDEO_FORMATS:
        raise ValueError(f"unknown video format {video_format!r}; use one of {VIDEO_FORMATS}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    specs = plan_dataset(preset, seed, effect_size, design)
    rows = []
    previews: dict[str, dict[str, np.ndarray]] = {}
    n_cells: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(ProcessPoolExecutor(max_workers=workers))
            summaries = pool.map(
                write_video, specs, repeat(seed), repeat(outdir), repeat(video_format)
            )
        else:
            summaries = (write_video(spec, seed, outdir, video_format) for spec in specs)
        summaries = list(tqdm(summaries, total=len(specs), desc="simulate", unit="video",
                              disable=None if progress else True))  # fmt: skip
    for spec, summary in zip(specs, summaries, strict=True):
        rows.append(summary["row"])
        n_cells[spec.condition] = n_cells.get(spec.condition, 0) + summary["n_cells"]
        if spec.mode == "triggered" and summary["preview"] is not None:
            previews.setdefault(spec.condition, {}).setdefault(spec.focus, summary["preview"])
    for condition, by_focus in previews.items():
        frames = [(f"{condition} focus={focus}", by_focus[focus]) for focus in FOCI
                  if focus in by_focus]  # fmt: skip
        write_contact_sheet(outdir / "contact_sheets" / f"{condition}.png", frames)
    sheet = pd.DataFrame(rows, columns=SHEET_COLUMNS)
    sheet_path = outdir / "samples.tsv"
    write_text_atomic(sheet_path, sheet.to_csv(sep="\t", index=False, lineterminator="\n"))
    log.info("simulated %d recordings in %s; cells per condition: %s", len(rows), outdir, n_cells)
    return sheet_path
