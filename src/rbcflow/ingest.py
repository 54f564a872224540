"""Ingestion: check one recording, describe it in a metadata JSON, draw a contact sheet.

One sequential pass decodes every frame, so the JSON reports the frames that are actually
decodable, not the count the container claims. Problems that make the recording unusable
raise :class:`~rbcflow.io.video.VideoError` naming the file and frame, before anything is
written: unreadable file, zero frames, frame size changing mid-file, frame rate
disagreeing with the sample sheet, truncated file (unless ``allow_truncated``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import cv2
import numpy as np

from rbcflow.io.atomic import write_png_atomic, write_text_atomic
from rbcflow.io.video import VideoError, open_video
from rbcflow.provenance import sha256_file

log = logging.getLogger(__name__)

CONTACT_SHEET_FRAMES = 12


def sha256_recording(path: str | Path) -> str:
    """SHA-256 of a recording file; for a frame folder, of its sorted (name, SHA-256) list."""
    path = Path(path)
    if not path.is_dir():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.iterdir() if p.is_file()):
        digest.update(f"{file.name}\t{sha256_file(file)}\n".encode())
    return digest.hexdigest()


class _EvenSample:
    """Keeps about ``k`` evenly spaced frames of a stream of unknown length.

    Frames at multiples of ``stride`` are kept; when more than ``2k`` are held, every
    other one is dropped and the stride doubles, so memory stays bounded.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.stride = 1
        self.kept: dict[int, np.ndarray] = {}

    def offer(self, index: int, frame: np.ndarray) -> None:
        if index % self.stride:
            return
        self.kept[index] = frame.copy()
        if len(self.kept) > 2 * self.k:
            self.stride *= 2
            self.kept = {i: f for i, f in self.kept.items() if i % self.stride == 0}

    def chosen(self) -> list[tuple[int, np.ndarray]]:
        indices = sorted(self.kept)
        if len(indices) > self.k:
            picks = np.linspace(0, len(indices) - 1, self.k).round().astype(int)
            indices = [indices[p] for p in picks]
        return [(i, self.kept[i]) for i in indices]


def contact_sheet(frames: list[tuple[int, np.ndarray]], columns: int = 3,
                  max_width: int = 1200) -> np.ndarray:
    """A grid of labelled thumbnails (uint8 grey image)."""
    if not frames:
        raise ValueError("no frames for a contact sheet")
    h, w = frames[0][1].shape
    scale = min(1.0, max_width / (columns * w))
    tw, th = max(1, int(w * scale)), max(1, int(h * scale))
    cells = []
    for index, frame in frames:
        thumb = cv2.resize(frame, (tw, th), interpolation=cv2.INTER_AREA) if scale < 1 else frame
        bar = np.full((16, tw), 255, np.uint8)
        cv2.putText(bar, f"frame {index}", (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 0, 1,
                    cv2.LINE_AA)
        cell = np.vstack([bar, thumb])
        cells.append(np.pad(cell, 2, constant_values=255))
    blank = np.full_like(cells[0], 255)
    while len(cells) % columns:
        cells.append(blank)
    rows = [np.hstack(cells[r:r + columns]) for r in range(0, len(cells), columns)]
    return np.vstack(rows)


def check_fps(path: str | Path, fps_file: float | None, fps_sheet: float,
              tolerance: float) -> None:
    """Raise VideoError when the file's frame rate differs from the sheet's beyond tolerance."""
    if fps_sheet is None or not math.isfinite(fps_sheet) or fps_sheet <= 0:
        # NaN would make every comparison below false, and so skip the check silently
        raise VideoError(f"{path}: the sample sheet's frame rate must be a finite number > 0, "
                         f"got {fps_sheet!r}")
    if fps_file is None or not math.isfinite(fps_file) or fps_file <= 0:
        return  # the file declares no usable rate: the sheet's is the only one
    relative = abs(fps_file - fps_sheet) / fps_sheet
    if relative > tolerance:
        raise VideoError(
            f"{path}: frame rate in the file ({fps_file:g} fps) disagrees with the sample "
            f"sheet ({fps_sheet:g} fps) by {relative:.1%}, more than the tolerated "
            f"{tolerance:.1%} (ingest.fps_tolerance)"
        )


def recorded_path(path: str | Path) -> str:
    """A recording's path as the ingest record keeps it: relative to the working
    directory (the project under Snakemake and DVC) when it lies inside it, else absolute.

    The sheet's paths are resolved to absolute ones, which name the checkout: a clone in
    another folder then wrote other bytes and DVC saw every later stage as changed.
    """
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(resolved)


def _decode_all(video_path: Path, sample: str, fps_sheet: float, fps_tolerance: float
                ) -> tuple[dict, _EvenSample]:
    """Decode every frame once: the metadata (sha256 still unknown) and the sheet's frames."""
    with open_video(video_path) as reader:
        check_fps(video_path, reader.fps, fps_sheet, fps_tolerance)
        sampler = _EvenSample(CONTACT_SHEET_FRAMES)
        n_frames = 0
        for index, frame in reader.frames():
            sampler.offer(index, frame)
            n_frames = index + 1
        header = reader.n_frames_header
        info = {
            "sample": sample,
            "path": recorded_path(video_path),
            "reader": reader.reader,
            "sha256": None,
            "n_frames": n_frames,
            "n_frames_header": header,
            "fps_sheet": float(fps_sheet),
            "fps_file": reader.fps,
            "width": reader.width,
            "height": reader.height,
            "dtype": reader.dtype,
            "truncated": bool(header is not None and n_frames < header),
            "problems": list(reader.problems),
        }
    return info, sampler


def _write_outputs(info: dict, sheet: np.ndarray, out_json: Path, out_png: Path) -> None:
    """The contact sheet, then the JSON; never one without the other."""
    write_png_atomic(out_png, sheet)
    try:
        write_text_atomic(out_json, json.dumps(info, indent=2) + "\n")
    except BaseException:
        out_png.unlink(missing_ok=True)
        raise


def ingest_video(
    video_path: str | Path,
    sample: str,
    fps_sheet: float,
    out_json: str | Path,
    out_png: str | Path,
    allow_truncated: bool = False,
    fps_tolerance: float = 0.02,
) -> dict:
    """Decode a recording once; write its metadata JSON and contact sheet (atomically).

    Parameters
    ----------
    video_path : path
        Video file, multi-page TIFF, frame folder or ``.cine``.
    sample : str
        Sample name (from the sample sheet).
    fps_sheet : float
        Frame rate the sample sheet declares.
    out_json, out_png : path
        Metadata JSON (fields as in docs/architecture.md) and contact-sheet PNG.
    allow_truncated : bool
        Go on with the readable frames of a truncated file instead of failing.
    fps_tolerance : float
        Tolerated relative difference between the file's and the sheet's frame rate.

    Returns
    -------
    dict
        The metadata written to ``out_json``.

    Raises
    ------
    VideoError
        Unreadable file, zero frames, size change, fps mismatch, truncation (unless
        allowed). Nothing is written then.
    """
    video_path = Path(video_path)
    info, sampler = _decode_all(video_path, sample, fps_sheet, fps_tolerance)
    n_frames, header, problems = info["n_frames"], info["n_frames_header"], info["problems"]
    if n_frames == 0:
        raise VideoError(f"{video_path}: zero frames decodable")
    if info["truncated"]:
        message = (f"{video_path}: truncated: {n_frames} of {header} frames readable "
                   f"(frame {n_frames} is the first that cannot be decoded)")
        if not allow_truncated:
            raise VideoError(message + "; set ingest.allow_truncated to go on with them")
        log.warning("%s; going on with the readable frames", message)
        if message not in problems:
            problems.append(message)
    if n_frames == 1:
        message = (f"{video_path}: sample {sample}: only one frame: its background is the "
                   "frame itself, so no cell can be found or tracked in it (0 clips); "
                   "check that the whole recording was exported")
        log.warning("%s", message)
        problems.append(message)
    info["sha256"] = sha256_recording(video_path)
    _write_outputs(info, contact_sheet(sampler.chosen()), Path(out_json), Path(out_png))
    log.info("%s: %d frames, %dx%d, %s fps (file), %s", video_path, n_frames, info["width"],
             info["height"], info["fps_file"], info["reader"])
    return info
