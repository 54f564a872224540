"""Continuous recordings: cells of a dilute suspension enter apart and never overlap."""

from __future__ import annotations

import dataclasses

import pandas as pd

from rbcflow.simulate.scenario import ENTRY_HEADWAY_DIAMETERS, plan_dataset, write_video


def test_continuous_cells_enter_apart_and_never_overlap(tmp_path):
    # the first 250 frames of six recordings keep the test fast
    specs = [dataclasses.replace(s, n_frames=250)
             for s in plan_dataset("demo", seed=2024) if s.mode == "continuous"][:6]
    n_pairs = 0
    for spec in specs:
        row = write_video(spec, 2024, tmp_path, "avi_raw")["row"]
        truth = pd.read_csv(tmp_path / row["truth"], sep="\t")
        for _, g in truth.groupby("frame"):
            if len(g) < 2:
                continue
            g = g.sort_values("x")
            left, width = g["bbox_x"].to_numpy(), g["bbox_w"].to_numpy()
            gaps = left[1:] - (left[:-1] + width[:-1])
            n_pairs += gaps.size
            # the boxes (whole pixels) of successive cells along the channel do not
            # overlap: the outlines stay a lubrication film apart
            assert gaps.min() >= -1, (spec.sample, g)
        # at its first frame in view, a cell has the inlet to itself: the cell before it
        # is at least the headway ahead
        first = truth.groupby("cell_id")["frame"].min().sort_index()
        for cell, frame in first.items():
            ahead = truth[(truth["frame"] == frame) & (truth["cell_id"] == cell - 1)]
            if len(ahead):
                me = truth[(truth["frame"] == frame) & (truth["cell_id"] == cell)]
                gap = float(ahead["x"].iloc[0] - me["x"].iloc[0])
                diameter = float(ahead["minor_px"].iloc[0])
                assert gap >= 0.9 * ENTRY_HEADWAY_DIAMETERS * diameter, (spec.sample, cell)
    assert n_pairs > 50  # the recordings do hold cells in view together
