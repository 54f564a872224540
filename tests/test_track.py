"""Tracking: the online linker on synthetic detections, the summary, and the evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rbcflow.detect import DETECTION_COLUMNS, detections_from_rows, no_detections
from rbcflow.params import ParameterError, track_params
from rbcflow.track import (
    OnlineLinker,
    TableBuilder,
    TrackingError,
    TrackJudge,
    estimate_centerline,
    judge_table,
    link_detections,
    summarize_tracks,
)
from rbcflow.track.centerline import _binned_percentile
from rbcflow.trackeval import evaluate_tracking

W, H = 800, 132


def _row(x: float, y: float, size: float = 8.0, area: float = 50.0) -> list[float]:
    return [x, y, x - size / 2, y - size / 2, size, size, area, size, size, 0.0, 0.05, 100.0]


def synthetic_flow(seed: int, n_frames: int = 600, miss_rate: float = 0.0, jitter: float = 0.5,
                   spacing: tuple[int, int] = (6, 25)):
    """Cells crossing the field of view left to right, each at its own speed, on a wavy
    lateral path; returns per-frame detection arrays and the truth (frame, cell, x, y)."""
    rng = np.random.default_rng(seed)
    per_frame: dict[int, list[tuple[int, list[float]]]] = {}
    occupied: dict[int, list[tuple[float, float]]] = {}
    truth = []
    f, cell = 0, 0
    while f < n_frames - 100:
        f += int(rng.integers(*spacing))
        speed, y0 = rng.uniform(10, 20), rng.uniform(45, 85)
        path, x, frame = [], 6.0, f
        while x < W - 6:
            path.append((frame, x, y0 + 8 * np.sin(x / 40)))
            x += speed
            frame += 1
        # a faster cell may overtake a slower one, but not through it (cells cannot
        # pass through each other, and then no tracker could tell them apart)
        if any(np.hypot(x - ox, y - oy) < 12 for fr, x, y in path
               for ox, oy in occupied.get(fr, [])):
            continue
        for frame, x, y in path:
            occupied.setdefault(frame, []).append((x, y))
            truth.append((frame, cell, x, y))
            if rng.random() >= miss_rate:
                row = _row(x + rng.normal(0, jitter), y + rng.normal(0, jitter))
                per_frame.setdefault(frame, []).append((cell, row))
        cell += 1
    frames = [detections_from_rows([r for _, r in per_frame.get(k, [])])
              for k in range(n_frames)]
    truth_df = pd.DataFrame(truth, columns=["frame", "cell_id", "x", "y"])
    return frames, truth_df


def _frames(*rows_per_frame):
    """Detection arrays of one frame each, from lists of :func:`_row` rows."""
    return [detections_from_rows(rows) for rows in rows_per_frame]


def _run_judged(frames, params=None):
    """Link frame by frame and judge online, as the tracking pass does; returns the tracks
    table, the linker and the judge's verdicts."""
    params = params or track_params(min_length=3)
    linker = OnlineLinker(params, (W, H))
    judge = TrackJudge(params, (W, H), linker.collided)
    builder = TableBuilder(block=7)  # several blocks: their joins are exercised too
    for k, det in enumerate(frames):
        ids = linker.update(k, det)
        if len(det):
            builder.add(k, ids, det)
            judge.observe(ids, det)
    # the chain's tables are rbcflow.columns.Columns; these tests read them as DataFrames
    return builder.table().to_pandas(), linker, judge.statuses()


def _run(frames, params=None):
    """The tracks table and the linker of :func:`_run_judged`."""
    table, linker, _ = _run_judged(frames, params)
    return table, linker


def _truth_for_eval(truth: pd.DataFrame) -> pd.DataFrame:
    t = truth.copy()
    t["major_px"] = t["minor_px"] = 8.0
    t["bbox_x"], t["bbox_y"] = t["x"] - 4, t["y"] - 4
    t["bbox_w"] = t["bbox_h"] = 8.0
    return t


def _purity(table: pd.DataFrame, truth: pd.DataFrame) -> tuple[float, float]:
    """Fraction of cells covered by one track; fraction of tracks holding one cell."""
    merged = table.merge(truth, on="frame", suffixes=("", "_t"))
    merged = merged[np.hypot(merged.x - merged.x_t, merged.y - merged.y_t) < 3]
    per_cell = merged.groupby("cell_id")["track_id"].nunique()
    per_track = merged.groupby("track_id")["cell_id"].nunique()
    return float((per_cell == 1).mean()), float((per_track == 1).mean())


def test_linker_follows_every_cell_with_one_track():
    frames, truth = synthetic_flow(seed=1)
    table, linker = _run(frames)
    cell_pure, track_pure = _purity(table, truth)
    assert cell_pure == 1.0 and track_pure == 1.0
    assert linker.n_tracks == truth["cell_id"].nunique()


def test_gap_closing_bridges_missed_frames_and_metrics_see_it():
    frames, truth = synthetic_flow(seed=2, miss_rate=0.15)
    table, _ = _run(frames, track_params(min_length=3, max_gap_frames=3))
    merged = table.merge(truth, on="frame", suffixes=("", "_t"))
    merged = merged[np.hypot(merged.x - merged.x_t, merged.y - merged.y_t) < 3]
    n_bridgeable = 0
    for cell, g in merged.groupby("cell_id"):
        longest_miss = int(np.diff(np.sort(g["frame"].to_numpy())).max(initial=1)) - 1
        if longest_miss <= 3:
            # every run of misses within max_gap_frames must be bridged
            assert g["track_id"].nunique() == 1, f"cell {cell} split despite short gaps"
            n_bridgeable += 1
        else:
            assert g["track_id"].nunique() > 1
    assert n_bridgeable >= 20
    m = evaluate_tracking(table, _truth_for_eval(truth), max_distance_px=4, frame_size=(W, H))
    # 15 % of the truth rows were never detected, which caps IDF1 near 2 * 0.85 / 1.85
    assert m["idf1"] > 0.88
    # 15 % of the truth rows were never detected, and the metric must say so
    assert 0.80 < m["recall"] < 0.90
    assert m["precision"] > 0.99
    # without gap closing every miss breaks a track
    table0, _ = _run(frames, track_params(min_length=3, max_gap_frames=0))
    m0 = evaluate_tracking(table0, _truth_for_eval(truth), max_distance_px=4, frame_size=(W, H))
    assert m0["idf1"] < m["idf1"] - 0.1


def test_tracking_scores_of_a_recording_without_detections():
    # a triggered clip whose cell never shows, or a cell the detector missed entirely
    frames, truth = synthetic_flow(seed=3)
    table, _ = _run(frames)
    m = evaluate_tracking(table.iloc[:0], _truth_for_eval(truth), max_distance_px=4,
                          frame_size=(W, H))
    assert m["recall"] == 0.0 and m["n_tracks"] == 0
    assert m["detection_recall_isolated"] == 0.0


def test_flow_direction_refuses_backward_links():
    frames = _frames([_row(100, 60)], [_row(90, 60)], [_row(112, 60)])
    table, _ = _run(frames, track_params(flow_direction="+x", max_backward_px=2))
    ids = table["track_id"].tolist()
    assert ids[0] != ids[1]  # moved 10 px against the flow: a new cell
    table, _ = _run(frames, track_params(flow_direction="any"))
    assert len(set(table["track_id"])) == 1
    table, _ = _run(frames, track_params(flow_direction="-x", max_backward_px=2))
    assert table["track_id"].iloc[0] == table["track_id"].iloc[1]


def test_gate_and_gap_limit_start_new_tracks():
    frames = _frames([_row(100, 60)], [_row(110, 60)], [], [], [_row(140, 60)],
                     [_row(300, 60)])
    assert len(frames[2]) == 0 and frames[2].dtype == no_detections().dtype
    table, _ = _run(frames, track_params(max_gap_frames=2, max_displacement_px=40))
    ids = table["track_id"].tolist()
    assert ids[0] == ids[1] == ids[2]  # two missed frames bridged, prediction 140
    assert ids[3] != ids[2]  # 150 px away from the prediction: beyond the gate
    table, _ = _run(frames, track_params(max_gap_frames=1))
    assert table["track_id"].tolist()[2] != table["track_id"].tolist()[1]


def test_hungarian_resolves_competition_by_prediction():
    # two cells side by side laterally, the upper one fast, the lower one slow; a
    # nearest-neighbour rule would swap them when the fast one reaches the slow one's x
    frames = []
    for k in range(10):
        frames.append(detections_from_rows([_row(100 + 20 * k, 40), _row(150 + 8 * k, 60)]))
    table, _ = _run(frames, track_params(max_displacement_px=30, collision_distance_factor=0))
    for tid, g in table.groupby("track_id"):
        assert g["y"].nunique() == 1, f"track {tid} jumped between cells"
    assert table["track_id"].nunique() == 2


def test_collisions_are_flagged():
    # two cells approach and merge into one large blob for three frames
    frames = []
    for k in range(12):
        a, b = 100 + 15 * k, 160 + 10 * k
        if abs(a - b) < 8:
            frames.append(detections_from_rows([_row((a + b) / 2, 60, size=12, area=110)]))
        else:
            frames.append(detections_from_rows([_row(a, 60), _row(b, 60)]))
    params = track_params(min_length=3, max_displacement_px=20)
    table, linker, online = _run_judged(frames, params)
    statuses = judge_table(table, linker.collided, params, (W, H))
    assert statuses == online  # judged after the fact as while streaming
    summary = summarize_tracks(table, statuses, params.flow_axis, fps=1000, um_per_px=1,
                               centerline=np.full(W, 60.0))
    assert (summary["status"] == "collision").sum() >= 2
    # the same two cells far apart: no collision
    frames = [detections_from_rows([_row(100 + 15 * k, 30), _row(300 + 15 * k, 90)])
              for k in range(12)]
    table, linker, online = _run_judged(frames, track_params(min_length=3))
    assert not any(linker.collided.values())
    assert set(online.values()) == {"kept"}


def test_summary_velocity_distance_and_rejections():
    frames = []
    for k in range(20):
        rows = [_row(100 + 10 * k, 70)]  # 10 px/frame, 5 px below the centre line
        if k < 4:
            rows.append(_row(500 + 10 * k, 30))  # too short
        if 5 <= k < 15:
            rows.append(_row(300 + 10 * k, 3))  # scrapes the top edge
        frames.append(detections_from_rows(rows))
    params = track_params(min_length=8)
    table, linker, online = _run_judged(frames, params)
    statuses = judge_table(table, linker.collided, params, (W, H))
    assert statuses == online
    summary = summarize_tracks(table, statuses, params.flow_axis, fps=2000, um_per_px=0.5,
                               centerline=np.full(W, 65.0)).to_pandas().set_index("track_id")
    main = summary.loc[table.loc[0, "track_id"]]
    assert main["status"] == "kept"
    assert (main["entry_frame"], main["exit_frame"], main["n_detections"]) == (0, 19, 20)
    assert main["flight_distance_px"] == pytest.approx(190)
    assert main["velocity_px_per_frame"] == pytest.approx(10)
    # 10 px/frame * 0.5 um/px * 2000 frames/s = 10 mm/s
    assert main["velocity_mm_s"] == pytest.approx(10)
    assert main["centerline_distance_um"] == pytest.approx(2.5)
    assert sorted(summary["status"]) == ["kept", "too_short", "touches_border"]


def test_centerline_from_detections_follows_a_sloping_channel():
    rng = np.random.default_rng(3)
    x = rng.uniform(0, W, 20000)
    centre = 50 + 0.05 * x  # channel centre drifts 40 px across the view
    y = centre + rng.uniform(-20, 20, x.size)
    table = pd.DataFrame({"x": x, "y": y, "bbox_x": x - 4, "bbox_y": y - 4,
                          "bbox_w": 8.0, "bbox_h": 8.0})
    line = estimate_centerline(table, (W, H + 40))
    assert np.abs(line[20:-20] - (50 + 0.05 * np.arange(W)[20:-20])).max() < 1.5


def test_centerline_from_background_when_cells_are_few():
    bg = np.full((H, W), 60.0)
    bg[40:100] = 200.0  # bright channel between dark walls
    bg += np.random.default_rng(0).normal(0, 0.3, bg.shape)
    line = estimate_centerline(pd.DataFrame(columns=["x", "y", "bbox_x", "bbox_y", "bbox_w",
                                                     "bbox_h"]), (W, H), background=bg)
    assert np.abs(line - 69.5).max() < 2


def test_link_detections_matches_online_and_checks_order():
    frames, _ = synthetic_flow(seed=4, n_frames=300)
    table, linker = _run(frames)
    rows = detections_from_rows(table[list(DETECTION_COLUMNS)].to_numpy().tolist())
    ids, collided = link_detections(table["frame"].to_numpy(), rows,
                                    track_params(min_length=3), (W, H))
    assert np.array_equal(ids, table["track_id"].to_numpy())
    assert collided == linker.collided
    with pytest.raises(TrackingError):
        link_detections(np.array([2, 1]), rows[:2], track_params(), (W, H))
    online = OnlineLinker(track_params(), (W, H))
    online.update(3, rows[:1])
    with pytest.raises(TrackingError, match="frames must increase"):
        online.update(3, rows[:1])
    # an unknown key is refused where parameters are made (not by the linker)
    with pytest.raises(ParameterError, match="unknown track"):
        track_params(max_gap=3)


def test_evaluation_detects_identity_swaps():
    frames, truth = synthetic_flow(seed=5, n_frames=300)
    table, _ = _run(frames)
    t = _truth_for_eval(truth)
    good = evaluate_tracking(table, t, max_distance_px=4, frame_size=(W, H))
    assert good["idf1"] > 0.99 and good["mota"] > 0.99 and good["id_switches"] == 0
    # give every track a new id halfway through: identity metrics must drop, detection not
    swapped = table.copy()
    for tid, g in swapped.groupby("track_id"):
        late = g.index[len(g) // 2:]
        swapped.loc[late, "track_id"] = tid + 10_000
    bad = evaluate_tracking(swapped, t, max_distance_px=4, frame_size=(W, H))
    assert bad["id_switches"] >= truth["cell_id"].nunique() - 2
    assert bad["idf1"] < 0.7
    assert bad["recall"] == pytest.approx(good["recall"])


# --- against the simulator's truth, on recordings of the demo preset ---------------------

def _simulated_runs(tmp_path, mode: str, n: int, noise_factor: float = 1.0,
                    magnification: float = 1.0):
    """Simulate ``n`` demo-preset recordings of ``mode``, track them with the default
    config; yields (tracks table, summary, truth, frame size). ``noise_factor`` and
    ``magnification`` change the camera (more sensor noise, smaller pixels)."""
    import dataclasses

    from rbcflow.background import build_background, save_background
    from rbcflow.config import validate_config
    from rbcflow.params import resolve_chain_params
    from rbcflow.simulate.scenario import plan_dataset, write_video
    from rbcflow.track import read_tracks, track_video

    cfg = validate_config({})
    specs = [s for s in plan_dataset("demo", seed=2024) if s.mode == mode]
    # spread over donors and conditions
    chosen = specs[:: max(1, len(specs) // n)][:n]
    for spec in chosen:
        donor = dataclasses.replace(spec.donor, noise=spec.donor.noise * noise_factor)
        geometry = (spec.geometry if magnification == 1
                    else f"{spec.geometry}@{magnification:g}x")
        spec = dataclasses.replace(spec, donor=donor, geometry=geometry)
        summary = write_video(spec, 2024, tmp_path, "avi_raw")
        row = summary["row"]
        video = tmp_path / row["path"]
        params = resolve_chain_params(cfg, row["fps"], row["um_per_px"])
        model = build_background(video, params.background)
        save_background(model, tmp_path / f"{spec.sample}.npz")
        track_summary = track_video(
            video, tmp_path / f"{spec.sample}.npz", tmp_path / f"{spec.sample}.parquet",
            tmp_path / f"{spec.sample}.tsv", params)
        table, meta = read_tracks(tmp_path / f"{spec.sample}.parquet")
        # the tracks record the threshold and polarity calibrated on this recording
        params = params.calibrated(model)
        assert params.detect.threshold is not None and params.detect.polarity != "auto"
        assert meta["pipeline_id"] == params.pipeline_id and meta["params"] == params.as_dict()
        truth = pd.read_csv(tmp_path / row["truth"], sep="\t")
        yield table, track_summary, truth, tuple(meta["frame_size"])


def _pooled(runs, max_distance_px: float = 6.0) -> dict[str, float]:
    """Metrics of each recording, pooled weighted by truth rows."""
    # a triggered clip whose cell never came has no truth rows: nothing to score
    results = [evaluate_tracking(t, truth, max_distance_px, frame_size=size)
               for t, _, truth, size in runs if len(truth)]
    w = np.array([r["n_truth_rows"] for r in results], dtype=float)
    wi = np.array([r["n_isolated_rows"] for r in results], dtype=float)
    pooled = {k: float(np.average([r[k] for r in results], weights=w))
              for k in ("idf1", "mota", "recall", "precision")}
    pooled["detection_recall_isolated"] = float(np.average(
        [r["detection_recall_isolated"] for r in results], weights=wi))
    pooled["per_video"] = results
    return pooled


@pytest.mark.slow
def test_triggered_recordings_meet_the_tracking_targets(tmp_path):
    # all 48 triggered clips of the demo preset (every donor and condition): a sample
    # makes the pooled figure hinge on how many clips hold two cells that overlap while
    # one overtakes the other (every other clip, i.e. native and FA only: MOTA 0.950)
    m = _pooled(list(_simulated_runs(tmp_path, "triggered", 48)))
    assert m["idf1"] >= 0.95, m
    assert m["mota"] >= 0.95, m
    assert m["detection_recall_isolated"] >= 0.98, m


@pytest.fixture(scope="module")
def continuous_scores(tmp_path_factory):
    """Pooled scores of eight continuous recordings over donors and all four conditions
    (two alone can both be the rare native recording with a long overtaking manoeuvre,
    IDF1 0.81), simulated and tracked once for the two tests below."""
    return _pooled(list(_simulated_runs(tmp_path_factory.mktemp("continuous"),
                                        "continuous", 8)))


@pytest.mark.slow
def test_continuous_recordings_isolated_cells_are_detected(continuous_scores):
    m = continuous_scores
    assert m["detection_recall_isolated"] >= 0.98, m
    # identity metrics on continuous recordings: see the next test
    assert m["idf1"] > 0.5, m


@pytest.mark.slow
def test_continuous_recordings_meet_the_idf1_target(continuous_scores):
    m = continuous_scores
    assert m["idf1"] >= 0.90, m


@pytest.mark.slow
@pytest.mark.parametrize("noise_factor, magnification", [(3.0, 1.0), (1.0, 2.0)],
                         ids=["3x-noise", "2x-magnification"])
def test_another_camera_is_tracked_without_retuning(tmp_path, noise_factor, magnification):
    # the defaults are physical (um, mm/s, ms), and the threshold and blur follow the
    # measured noise (fixed pixel values against these cameras: benchmarks/README.md);
    # the matching distance scales with the pixels
    runs = [*_simulated_runs(tmp_path, "continuous", 3, noise_factor, magnification),
            *_simulated_runs(tmp_path, "triggered", 6, noise_factor, magnification)]
    m = _pooled(runs, max_distance_px=6.0 * magnification)
    assert m["idf1"] >= 0.90, m
    assert m["detection_recall_isolated"] >= 0.95, m


def test_binned_percentiles_equal_numpy_bin_by_bin():
    rng = np.random.default_rng(5)
    for trial in range(200):
        n_bins = int(rng.integers(1, 12))
        n = int(rng.integers(0, 120))
        bins = rng.integers(0, n_bins, n)
        values = (rng.integers(0, 132, n).astype(float) if trial % 2
                  else rng.normal(60.0, 25.0, n))  # ties and non-ties
        count = np.bincount(bins, minlength=n_bins)
        for q in (0.0, 2.0, 37.5, 50.0, 98.0, 100.0):
            got = _binned_percentile(values, bins, count, q)
            for k in range(n_bins):
                if count[k]:
                    assert got[k] == np.percentile(values[bins == k], q), (trial, q, k)
                else:
                    assert np.isnan(got[k])
