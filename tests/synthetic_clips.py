"""Synthetic clip files for the split, training and evaluation tests.

Each clip shows one bright Gaussian blob crossing the frame from left to right. Its
radius, brightness and speed depend on the class (scaled by ``effect_size``) and on a
random per-donor offset (scaled by ``donor_effect``), so tests can switch the class signal
off and leave a donor signature in, the situation in which a clip-level split leaks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rbcflow.clipstore import write_clip_file


def blob_clip(
    rng: np.random.Generator,
    n_frames: int,
    size: int,
    radius: float,
    brightness: float,
    speed: float,
    noise: float = 6.0,
) -> np.ndarray:
    """One (T, H, W) uint8 clip of a blob moving along x at ``speed`` px per frame."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    y0 = size / 2 + rng.normal(0, size / 16)
    x0 = size / 2 - speed * (n_frames - 1) / 2 + rng.normal(0, 1)
    frames = []
    for t in range(n_frames):
        x = x0 + speed * t
        blob = brightness * np.exp(-((xx - x) ** 2 + (yy - y0) ** 2) / (2 * radius**2))
        frames.append(blob + rng.normal(20, noise, size=(size, size)))
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def make_clip_files(
    outdir: Path,
    donors: dict[str, list[str]],
    clips_per_sample: int = 12,
    effect_size: float = 1.0,
    donor_effect: float = 0.0,
    n_frames: int = 8,
    size: int = 16,
    seed: int = 0,
    sessions: dict[tuple[str, str], str] | None = None,
    focus: dict[tuple[str, str], str] | None = None,
    sample_suffix: str = "",
) -> list[Path]:
    """Write one clip file per (donor, condition) and return their paths.

    Parameters
    ----------
    donors : donor -> conditions recorded from that donor (``native`` is class 0).
    effect_size : scales the difference between ``native`` and every other condition.
    donor_effect : scales the random per-donor offsets of radius, brightness and speed.
    sessions, focus : per (donor, condition) overrides; default one session per donor
        holding all its conditions (so session never determines the label) and focus "in".
    sample_suffix : appended to the sample names (a second recording of the same donors).
    """
    outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for donor, conditions in donors.items():
        offset = rng.normal(0, 1, size=3) * donor_effect
        for condition in conditions:
            treated = condition != "native"
            radius = size / 8 * (1 + 0.35 * effect_size * treated + 0.25 * offset[0])
            brightness = 150 * (1 - 0.3 * effect_size * treated + 0.25 * offset[1])
            speed = size / n_frames * (1 - 0.3 * effect_size * treated + 0.2 * offset[2])
            sample = f"{donor}_{condition}{sample_suffix}"
            clips = np.stack(
                [
                    blob_clip(rng, n_frames, size, max(radius, 0.8), brightness, speed)
                    for _ in range(clips_per_sample)
                ]
            )
            n = clips_per_sample
            table = pd.DataFrame(
                {
                    "clip_id": [f"{sample}/{i}" for i in range(n)],
                    "sample": sample,
                    "donor": donor,
                    "condition": condition,
                    "focus": (focus or {}).get((donor, condition), "in"),
                    "session": (sessions or {}).get((donor, condition), f"day_{donor}"),
                    "track_id": np.arange(n),
                    "first_frame": np.arange(n) * 100,
                    "last_frame": np.arange(n) * 100 + n_frames,
                    "velocity_mm_s": np.full(n, speed),
                    "centerline_distance_um": np.zeros(n),
                    "flight_distance_px": np.full(n, speed * n_frames),
                }
            )
            paths.append(write_clip_file(outdir / f"{sample}.h5", clips, table))
    return paths


def donors_with_both(n: int, treated: tuple[str, ...] = ("DA",)) -> dict[str, list[str]]:
    """``n`` donors, each recorded native and in every treated condition."""
    return {f"D{i:02d}": ["native", *treated] for i in range(n)}


def donors_one_condition(n: int, treated: str = "DA") -> dict[str, list[str]]:
    """``n`` donors, each giving one condition only (half native): labels tied to donors."""
    return {f"D{i:02d}": ["native" if i % 2 == 0 else treated] for i in range(n)}
