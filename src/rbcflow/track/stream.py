"""The streaming tracking pass over one recording, and what is written at its end.

:class:`TrackingPass` is the per-frame core shared by ``rbcflow track`` (tracks only) and
the chain's single pass (``rbcflow.preprocess``, tracks and clips): segment, link, judge,
tabulate. :meth:`TrackingPass.finish` estimates the centre line, summarises every track
with the judge's verdict and writes the two track files. Tables are
``rbcflow.columns.Columns``: this pass does not import pandas.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rbcflow.columns import Columns
from rbcflow.params import ChainParams
from rbcflow.track.centerline import estimate_centerline
from rbcflow.track.judge import TrackJudge
from rbcflow.track.link import OnlineLinker
from rbcflow.track.summary import summarize_tracks
from rbcflow.track.table import TableBuilder, write_tracks

log = logging.getLogger(__name__)


class FrameTracks(NamedTuple):
    """What one frame added: its detections' track ids, which are wholly in view, and the
    tracks that ended before it."""

    ids: np.ndarray
    inside: list[bool]
    ended: list[int]


class TrackingPass:
    """Linker, judge and tracks table of one pass over one recording."""

    def __init__(self, params: ChainParams, frame_size: tuple[int, int]) -> None:
        self.params = params
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.linker = OnlineLinker(params.track, self.frame_size)
        self.judge = TrackJudge(params.track, self.frame_size, self.linker.collided)
        self.builder = TableBuilder()
        self.n_frames = 0

    def add(self, index: int, detections: np.ndarray) -> FrameTracks:
        """Link and count one frame's detections (``rbcflow.detect.DETECTION_DTYPE``)."""
        self.n_frames += 1
        ids = self.linker.update(index, detections)
        inside: list[bool] = []
        if len(detections):
            self.builder.add(index, ids, detections)
            inside = self.judge.observe(ids, detections)
        return FrameTracks(ids, inside, self.linker.ended)

    def finish(self, background_image: np.ndarray, out_parquet: str | Path,
               out_summary_tsv: str | Path, meta: dict | None = None,
               source: str | Path = "") -> tuple[Columns, Columns]:
        """Summarise every track and write the tracks table and summary; returns both."""
        params = self.params
        table = self.builder.table()
        centerline = estimate_centerline(table, self.frame_size, params.track.flow_direction,
                                         background=background_image)
        summary = summarize_tracks(table, self.judge.statuses(), params.track.flow_axis,
                                   params.fps, params.um_per_px, centerline)
        record = {"frame_size": list(self.frame_size), "n_frames": self.n_frames,
                  "params": params.as_dict(), "pipeline_id": params.pipeline_id,
                  **(meta or {})}
        write_tracks(table, summary, out_parquet, out_summary_tsv, record)
        log.info("%s: %d frames, %d detections, %d tracks, %d kept", source, self.n_frames,
                 len(table), len(summary), int((summary["status"] == "kept").sum()))
        return table, summary


def track_video(
    video_path: str | Path,
    background_npz: str | Path,
    out_parquet: str | Path,
    out_summary_tsv: str | Path,
    params: ChainParams,
    progress: bool = False,
):
    """Detect and track every cell of a recording in one streaming pass.

    Parameters
    ----------
    video_path : the recording.
    background_npz : its background (``rbcflow.background.save_background``).
    out_parquet : tracks table, one row per detection (``TRACK_TABLE_COLUMNS``).
    out_summary_tsv : per-track summary (``SUMMARY_COLUMNS``).
    params : the recording's resolved parameters (``rbcflow.params.resolve_chain_params``).
    progress : show a progress bar.

    Returns
    -------
    The per-track summary, a pandas DataFrame (as :func:`rbcflow.track.read_summary`
    reads it back).
    """
    from rbcflow.background import load_background
    from rbcflow.io.video import open_video
    from rbcflow.segment import make_segmenter

    background = load_background(background_npz)
    params = params.calibrated(background)  # the values the tracks table records
    segmenter = make_segmenter(background, params.detect)
    with open_video(video_path) as reader:
        tracking = TrackingPass(params, (reader.width, reader.height))
        frames = reader.frames()
        if progress:
            from tqdm import tqdm

            frames = tqdm(frames, total=reader.n_frames_header, unit="frame",
                          desc=f"track {Path(video_path).name}")
        for index, frame in frames:
            tracking.add(index, segmenter.blobs(frame, index).detections)
    summary = tracking.finish(background.image_at(0), out_parquet, out_summary_tsv,
                              source=video_path)[1]
    return summary.to_pandas()
