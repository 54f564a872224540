"""Tracking of detected cells: linking, rejection, centre line, summary and track files.

Modules: :mod:`~rbcflow.track.link` (the online linker with its predictor and gate),
:mod:`~rbcflow.track.judge` (border and rejection rules, decided while the video
streams), :mod:`~rbcflow.track.centerline`, :mod:`~rbcflow.track.summary`,
:mod:`~rbcflow.track.table` (the parquet tracks table) and :mod:`~rbcflow.track.stream`
(the streaming pass).
"""

from rbcflow.track.centerline import estimate_centerline
from rbcflow.track.judge import KEPT, REJECTION_REASONS, FieldOfView, TrackJudge, judge_table
from rbcflow.track.link import (
    ConstantVelocity,
    FlowGate,
    OnlineLinker,
    TrackingError,
    link_detections,
)
from rbcflow.track.stream import FrameTracks, TrackingPass, track_video
from rbcflow.track.summary import SUMMARY_COLUMNS, empty_summary, summarize_tracks
from rbcflow.track.table import (
    TRACK_TABLE_COLUMNS,
    TableBuilder,
    TrackTableError,
    read_summary,
    read_tracks,
    write_tracks,
)

__all__ = [
    "KEPT", "REJECTION_REASONS", "SUMMARY_COLUMNS", "TRACK_TABLE_COLUMNS", "ConstantVelocity",
    "FieldOfView", "FlowGate", "FrameTracks", "OnlineLinker", "TableBuilder", "TrackJudge",
    "TrackTableError", "TrackingError", "TrackingPass", "empty_summary", "estimate_centerline",
    "judge_table", "link_detections", "read_summary", "read_tracks", "summarize_tracks",
    "track_video", "write_tracks",
]
