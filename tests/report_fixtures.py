"""A small, internally consistent results tree in the formats of docs/architecture.md.

Cells move along +x through a channel; one recording is rendered as a real video (FFV1),
the others exist only as stage outputs. Tracks are the true cell positions plus jitter,
metrics are computed from seeded predictions with scikit-learn, so every number the report
shows can be checked against these files.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    roc_auc_score,
    roc_curve,
)

from rbcflow.clipstore import write_clip_file
from rbcflow.config import load_config, load_sample_sheet

DONORS = ["D01", "D02", "D03", "D04"]
DONOR_SPLIT = {"D01": "train", "D02": "train", "D03": "validation", "D04": "test"}
FOCI = ["in", "above", "below"]
HEIGHT, WIDTH, N_FRAMES = 48, 160, 30
UM_PER_PX = 0.5
FPS = 500.0
VIDEO_SAMPLE = "D01_native"
TRUTH_SAMPLES = ("D01_native", "D02_DA")
MIN_LENGTH = 8
RADIUS = (6.0, 4.0)


def _cells(rng: np.random.Generator, n_cells: int = 6) -> list[dict]:
    """Cells entering at staggered frames, 4-6 px per frame, each at its own height."""
    cells = []
    for cell_id in range(n_cells):
        cells.append({
            "cell_id": cell_id,
            "start": int(cell_id * 4 + rng.integers(0, 3)),
            "x0": -8.0,
            "y": float(rng.uniform(16, 32)),
            "speed": float(rng.uniform(4.0, 6.0)),
        })
    return cells


def _positions(cell: dict) -> list[tuple[int, float, float]]:
    out = []
    for frame in range(cell["start"], N_FRAMES):
        x = cell["x0"] + cell["speed"] * (frame - cell["start"])
        if x - RADIUS[0] > WIDTH - 1:
            break
        if x + RADIUS[0] >= 0:
            out.append((frame, x, cell["y"]))
    return out


def background_image() -> np.ndarray:
    """A channel: bright lumen between darker walls, with a gentle illumination gradient."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    image = 150.0 + 20.0 * xx / WIDTH
    image[(yy < 8) | (yy >= HEIGHT - 8)] = 90.0
    return image.astype(np.float32)


def _render(background: np.ndarray, cells: list[dict], rng: np.random.Generator) -> np.ndarray:
    frames = np.repeat(background[None], N_FRAMES, axis=0).copy()
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    for cell in cells:
        for frame, x, y in _positions(cell):
            inside = ((xx - x) / RADIUS[0]) ** 2 + ((yy - y) / RADIUS[1]) ** 2 <= 1
            frames[frame][inside] -= 45.0
    frames += rng.normal(0, 1.5, frames.shape)
    return np.clip(np.round(frames), 0, 255).astype(np.uint8)


def write_video(path: Path, frames: np.ndarray) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), FPS,
                             (WIDTH, HEIGHT), isColor=False)
    for frame in frames:
        writer.write(frame)
    writer.release()


def _clip(condition_index: int, rng: np.random.Generator, t: int = 8, size: int = 24):
    """A dark cell on a grey background; its aspect and wobble depend on the condition."""
    yy, xx = np.mgrid[0:size, 0:size]
    clip = np.full((t, size, size), 160.0)
    for k in range(t):
        a = 7.0 + condition_index + np.sin(k / 2) * (1 + condition_index)
        b = 5.0
        inside = ((xx - size / 2) / a) ** 2 + ((yy - size / 2) / b) ** 2 <= 1
        clip[k][inside] = 110.0
    clip += rng.normal(0, 2, clip.shape)
    return np.clip(clip, 0, 255).astype(np.uint8)


def _metrics(task: dict, split: pd.DataFrame, predictions: pd.DataFrame,
             rng: np.random.Generator) -> dict:
    accuracy = {
        s: float(accuracy_score(g["label"], g["predicted"]))
        for s, g in predictions.groupby("split")
    }
    test = predictions[predictions["split"] == "test"]
    fpr, tpr, _ = roc_curve(test["label"], test["p_positive"])
    boot = []
    for _ in range(200):
        donors = rng.choice(test["donor"].unique(), size=test["donor"].nunique())
        sample = pd.concat([test[test["donor"] == d] for d in donors])
        boot.append(accuracy_score(sample["label"], sample["predicted"]))
    per_donor = [
        {"donor": str(d), "split": s, "n_clips": int(len(g)),
         "accuracy": float(accuracy_score(g["label"], g["predicted"]))}
        for (d, s), g in predictions.groupby(["donor", "split"])
    ]
    return {
        "task": task["name"], "model": "r2plus1d",
        "negative": task["negative"], "positive": task["positive"],
        "accuracy": {s: accuracy[s] for s in ("train", "validation", "test")},
        "test": {
            "balanced_accuracy": float(balanced_accuracy_score(test["label"],
                                                               test["predicted"])),
            "macro_f1": float(f1_score(test["label"], test["predicted"], average="macro")),
            "roc_auc": float(roc_auc_score(test["label"], test["p_positive"])),
            "accuracy_ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
            "confusion_matrix": confusion_matrix(test["label"], test["predicted"]).tolist(),
            "roc_curve": {"fpr": fpr.tolist(), "tpr": tpr.tolist()},
        },
        "counts": {
            s: {"donors": int(g["donor"].nunique()), "clips": int(len(g))}
            for s, g in split.groupby("split")
        },
        "per_donor": per_donor,
        "ablations": {
            "shuffled_time_test_accuracy": round(accuracy["test"] - 0.08, 4),
            "single_frame_test_accuracy": round(accuracy["test"] - 0.15, 4),
        },
        "training": {"epochs_run": 12, "best_epoch": 9, "seconds": 3.5},
    }


def make_results(root: Path, seed: int = 3, benchmarks: bool = True) -> dict:
    """Write a sample sheet, a video, truth tables and every stage's outputs under ``root``.

    Returns ``results``, ``config``, ``sheet`` (validated), ``truth`` (the counts the
    report must show: detections, kept tracks and clips per sample).
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    results = root / "results"
    config = load_config(overrides={"seed": seed, "results": str(results)})
    conditions = config["conditions"]
    rows, expected = [], {}
    (root / "videos").mkdir(parents=True)
    (root / "truth").mkdir()
    background = background_image()
    all_clip_tables = []
    for d_index, donor in enumerate(DONORS):
        for c_index, condition in enumerate(conditions):
            sample = f"{donor}_{condition}"
            cells = _cells(rng)
            detections, summary, truth_rows = [], [], []
            for cell in cells:
                points = _positions(cell)
                for frame, x, y in points:
                    truth_rows.append({
                        "frame": frame, "cell_id": cell["cell_id"], "x": x, "y": y,
                        "bbox_x": max(x - RADIUS[0], 0), "bbox_y": y - RADIUS[1],
                        "bbox_w": min(x + RADIUS[0], WIDTH - 1) - max(x - RADIUS[0], 0),
                        "bbox_h": 2 * RADIUS[1], "angle": 0.0, "major_px": 2 * RADIUS[0],
                        "minor_px": 2 * RADIUS[1], "condition": condition, "donor": donor,
                    })
                inside = [p for p in points if RADIUS[0] <= p[1] <= WIDTH - 1 - RADIUS[0]]
                if not inside:
                    continue
                status = "kept" if len(inside) >= MIN_LENGTH else "too_short"
                for frame, x, y in inside:
                    detections.append({
                        "frame": frame, "track_id": cell["cell_id"],
                        "x": x + rng.normal(0, 0.3), "y": y + rng.normal(0, 0.3),
                    })
                flight = inside[-1][1] - inside[0][1]
                summary.append({
                    "track_id": cell["cell_id"], "entry_frame": inside[0][0],
                    "exit_frame": inside[-1][0], "n_detections": len(inside),
                    "velocity_px_per_frame": cell["speed"],
                    "velocity_mm_s": cell["speed"] * UM_PER_PX * FPS / 1000.0,
                    "flight_distance_px": flight,
                    "centerline_distance_um": abs(cell["y"] - HEIGHT / 2) * UM_PER_PX,
                    "status": status,
                })
            # two stray detections outside any track
            detections += [{"frame": 3, "track_id": -1, "x": 50.0, "y": 12.0},
                           {"frame": 4, "track_id": -1, "x": 90.0, "y": 36.0}]
            tracks = pd.DataFrame(detections).sort_values(["frame", "track_id"])
            n = len(tracks)
            for column in ("bbox_x", "bbox_y"):
                tracks[column] = (tracks["x" if column == "bbox_x" else "y"] - 5).round()
            tracks["bbox_w"], tracks["bbox_h"] = 12.0, 8.0
            tracks["area_px"] = 75.0
            tracks["major_px"], tracks["minor_px"] = 12.0, 8.0
            tracks["orientation_deg"] = 0.0
            tracks["deformation"] = rng.uniform(0.01, 0.1, n)
            tracks["brightness"] = rng.uniform(100, 120, n)
            tracks = tracks[["frame", "track_id", "x", "y", "bbox_x", "bbox_y", "bbox_w",
                             "bbox_h", "area_px", "major_px", "minor_px", "orientation_deg",
                             "deformation", "brightness"]]
            (results / "tracks").mkdir(parents=True, exist_ok=True)
            tracks.to_parquet(results / "tracks" / f"{sample}.parquet", index=False)
            summary = pd.DataFrame(summary)
            summary.to_csv(results / "tracks" / f"{sample}_tracks.tsv", sep="\t", index=False)

            focus = FOCI[(d_index + c_index) % 3]
            session = f"S{1 + d_index % 2}"
            kept = summary[summary["status"] == "kept"]
            clips = np.stack([_clip(c_index, rng) for _ in range(len(kept))])
            table = pd.DataFrame({
                "clip_id": [f"{sample}/{t}" for t in kept["track_id"]],
                "sample": sample, "donor": donor, "condition": condition, "focus": focus,
                "session": session, "track_id": kept["track_id"].to_numpy(),
                "first_frame": kept["entry_frame"].to_numpy(),
                "last_frame": kept["exit_frame"].to_numpy(),
                "velocity_mm_s": kept["velocity_mm_s"].to_numpy(),
                "centerline_distance_um": kept["centerline_distance_um"].to_numpy(),
                "flight_distance_px": kept["flight_distance_px"].to_numpy(),
            })
            write_clip_file(results / "clips" / f"{sample}.h5", clips, table,
                            attrs={"source_sha256": "0" * 64, "params": {"n_frames": 8}})
            pd.DataFrame({"reason": ["written", "short_track"],
                          "count": [len(kept), len(summary) - len(kept)]}).to_csv(
                results / "clips" / f"{sample}_qc.tsv", sep="\t", index=False)
            all_clip_tables.append(table)

            video = root / "videos" / f"{sample}.avi"
            if sample == VIDEO_SAMPLE:
                write_video(video, _render(background, cells, rng))
                (results / "background").mkdir(parents=True, exist_ok=True)
                np.savez(results / "background" / f"{sample}.npz", images=background[None],
                         start_frames=np.array([0], dtype=np.int64),
                         params=np.array([json.dumps({"method": "median"})]))
            truth = ""
            if sample in TRUTH_SAMPLES:
                truth = f"truth/{sample}.tsv"
                pd.DataFrame(truth_rows).to_csv(root / truth, sep="\t", index=False)
            (results / "ingest").mkdir(parents=True, exist_ok=True)
            (results / "ingest" / f"{sample}.json").write_text(json.dumps({
                "sample": sample, "path": str(video), "reader": "opencv",
                "sha256": f"{d_index:02d}{c_index:02d}" + "ab" * 30, "n_frames": N_FRAMES,
                "n_frames_header": N_FRAMES, "fps_sheet": FPS, "fps_file": FPS,
                "width": WIDTH, "height": HEIGHT, "dtype": "uint8", "truncated": False,
                "problems": [],
            }))
            rows.append({"sample": sample, "path": f"videos/{sample}.avi", "donor": donor,
                         "condition": condition, "focus": focus, "session": session,
                         "fps": FPS, "um_per_px": UM_PER_PX, "truth": truth})
            expected[sample] = {"detections": n, "tracks": len(summary),
                                "tracks_kept": len(kept), "clips": len(kept),
                                "truth_cells": len(cells)}

    sheet_path = root / "samples.tsv"
    pd.DataFrame(rows).to_csv(sheet_path, sep="\t", index=False)
    sheet = load_sample_sheet(sheet_path, conditions=conditions, check_files=False)

    clips = pd.concat(all_clip_tables, ignore_index=True)
    for task in config["tasks"]:
        name = task["name"]
        labels = {c: 0 for c in task["negative"]} | {c: 1 for c in task["positive"]}
        split = clips[clips["condition"].isin(labels)].copy()
        split["label"] = split["condition"].map(labels)
        split["split"] = split["donor"].map(DONOR_SPLIT)
        split["fold"] = -1
        split = split[["clip_id", "sample", "donor", "session", "focus", "condition",
                       "label", "split", "fold"]]
        (results / "splits").mkdir(parents=True, exist_ok=True)
        split.to_csv(results / "splits" / f"{name}.tsv", sep="\t", index=False)
        (results / "splits" / f"{name}_audit.json").write_text(json.dumps({
            "task": name, "grouped_by": ["donor"],
            "donors": {s: sorted(g["donor"].unique()) for s, g in split.groupby("split")},
            "shared_donors": [],
        }))
        noise = rng.normal(0, 0.22, len(split))
        p = np.clip(0.5 + (split["label"].to_numpy() - 0.5) * 0.7 + noise, 0.001, 0.999)
        predictions = pd.DataFrame({
            "clip_id": split["clip_id"], "donor": split["donor"], "split": split["split"],
            "label": split["label"], "p_positive": p, "predicted": (p >= 0.5).astype(int),
        })
        folder = results / "models" / name
        folder.mkdir(parents=True)
        predictions.to_csv(folder / "predictions.tsv", sep="\t", index=False)
        (folder / "metrics.json").write_text(json.dumps(_metrics(task, split, predictions, rng),
                                                         indent=2))
        epochs = np.arange(1, 13)
        pd.DataFrame({
            "epoch": epochs,
            "accuracy": 1 - 0.45 * np.exp(-epochs / 3),
            "loss": 0.7 * np.exp(-epochs / 4),
            "val_accuracy": 0.95 - 0.4 * np.exp(-epochs / 3) + rng.normal(0, 0.01, 12),
            "val_loss": 0.2 + 0.5 * np.exp(-epochs / 4) + rng.normal(0, 0.01, 12),
        }).to_csv(folder / "history.csv", index=False)

    if benchmarks:
        write_benchmark(results / "benchmarks" / "simulate_dataset.tsv", [4.0])
        for sample in ("D01_native", "D02_DA"):
            write_benchmark(results / "benchmarks" / "track_cells" / f"{sample}.tsv", [1.5])
        for task in config["tasks"]:
            write_benchmark(results / "benchmarks" / "train_model" / f"{task['name']}.tsv",
                            [20.0, 22.0])
    return {"results": results, "config": config, "sheet": sheet, "expected": expected,
            "root": root}


def write_benchmark(path: Path, seconds: list[float]) -> None:
    """A Snakemake benchmark file: one row per repeat."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"s": s, "h:m:s": f"0:00:{int(s):02d}", "max_rss": 300.0 + s, "max_vms": 900.0,
             "max_uss": 280.0, "max_pss": 290.0, "io_in": 1.0, "io_out": 2.0,
             "mean_load": 95.0, "cpu_time": 0.9 * s} for s in seconds]
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
