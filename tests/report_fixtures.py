"""A small, internally consistent results tree in the formats of docs/architecture.md.

Cells move along +x through a channel; one recording is rendered as a real video (FFV1),
the others exist only as stage outputs. The recordings' files lie in two preprocessing
batches (``results/preprocess/<batch>/``) as the workflow writes them; tracks are the true
cell positions plus jitter, written, counted and scored by the package's own writers (the
QC record, the clip QC table, the tracking scores against the truth), and metrics are
computed from seeded predictions with scikit-learn, so every number the report shows can
be checked against these files.
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
    recall_score,
    roc_auc_score,
    roc_curve,
)

from rbcflow.clipstore import write_clip_file
from rbcflow.config import load_config, load_sample_sheet, task_label_map
from rbcflow.layout import output_paths
from rbcflow.params import resolve_chain_params
from rbcflow.report import ReportInputs

DONORS = ["D01", "D02", "D03", "D04"]
DONOR_SPLIT = {"D01": "train", "D02": "train", "D03": "validation", "D04": "test"}
FOCI = ["in", "above", "below"]
HEIGHT, WIDTH, N_FRAMES = 48, 160, 30
QC_SUSPECT_SAMPLE = "D02_DA"  # its QC record says suspect (too few background frames)
UM_PER_PX = 0.5
FPS = 500.0
VIDEO_SAMPLE = "D01_native"
TRUTH_SAMPLES = ("D01_native", "D02_DA")
MIN_LENGTH = 8
RADIUS = (6.0, 4.0)
#: Preprocessing batches: the first two donors' recordings, then the other two.
BATCHES = {"D01_native+8": DONORS[:2], "D03_native+8": DONORS[2:]}
TRACK_COLUMNS = ["frame", "track_id", "x", "y", "bbox_x", "bbox_y", "bbox_w", "bbox_h",
                 "area_px", "major_px", "minor_px", "orientation_deg", "deformation",
                 "brightness"]


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


def _metrics_without_roc(task: dict, split: pd.DataFrame, predictions: pd.DataFrame,
                         rng: np.random.Generator) -> dict:
    """The metrics every task has: accuracies, donor-bootstrap interval, counts, ..."""
    accuracy = {
        s: float(accuracy_score(g["label"], g["predicted"]))
        for s, g in predictions.groupby("split")
    }
    test = predictions[predictions["split"] == "test"]
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
        "accuracy": {s: accuracy[s] for s in ("train", "validation", "test")},
        "test": {
            "accuracy_ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
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


def _metrics(task: dict, split: pd.DataFrame, predictions: pd.DataFrame,
             rng: np.random.Generator) -> dict:
    test = predictions[predictions["split"] == "test"]
    fpr, tpr, _ = roc_curve(test["label"], test["p_positive"])
    metrics = _metrics_without_roc(task, split, predictions, rng)
    metrics = {"task": metrics["task"], "model": metrics["model"],
               "negative": task["negative"], "positive": task["positive"], **metrics}
    metrics["test"] = {
        "balanced_accuracy": float(balanced_accuracy_score(test["label"], test["predicted"])),
        "macro_f1": float(f1_score(test["label"], test["predicted"], average="macro")),
        "roc_auc": float(roc_auc_score(test["label"], test["p_positive"])),
        **metrics["test"],
        "confusion_matrix": confusion_matrix(test["label"], test["predicted"]).tolist(),
        "roc_curve": {"fpr": fpr.tolist(), "tpr": tpr.tolist()},
    }
    return metrics


def batch_of(donor: str) -> str:
    """The preprocessing batch holding a donor's recordings."""
    return next(name for name, donors in BATCHES.items() if donor in donors)


def _track_outputs(cells: list[dict], rng: np.random.Generator
                   ) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """Tracks table, per-track summary and truth rows of one recording's cells."""
    detections, summary, truth_rows = [], [], []
    for cell in cells:
        points = _positions(cell)
        for frame, x, y in points:
            truth_rows.append({
                "frame": frame, "cell_id": cell["cell_id"], "x": x, "y": y,
                "bbox_x": max(x - RADIUS[0], 0), "bbox_y": y - RADIUS[1],
                "bbox_w": min(x + RADIUS[0], WIDTH - 1) - max(x - RADIUS[0], 0),
                "bbox_h": 2 * RADIUS[1], "angle": 0.0, "major_px": 2 * RADIUS[0],
                "minor_px": 2 * RADIUS[1],
            })
        inside = [p for p in points if RADIUS[0] <= p[1] <= WIDTH - 1 - RADIUS[0]]
        if not inside:
            continue
        for frame, x, y in inside:
            detections.append({"frame": frame, "track_id": cell["cell_id"],
                               "x": x + rng.normal(0, 0.3), "y": y + rng.normal(0, 0.3)})
        summary.append({
            "track_id": cell["cell_id"], "entry_frame": inside[0][0],
            "exit_frame": inside[-1][0], "n_detections": len(inside),
            "velocity_px_per_frame": cell["speed"],
            "velocity_mm_s": cell["speed"] * UM_PER_PX * FPS / 1000.0,
            "flight_distance_px": inside[-1][1] - inside[0][1],
            "centerline_distance_um": abs(cell["y"] - HEIGHT / 2) * UM_PER_PX,
            "status": "kept" if len(inside) >= MIN_LENGTH else "too_short",
        })
    # two stray detections outside any track
    detections += [{"frame": 3, "track_id": -1, "x": 50.0, "y": 12.0},
                   {"frame": 4, "track_id": -1, "x": 90.0, "y": 36.0}]
    tracks = pd.DataFrame(detections).sort_values(["frame", "track_id"], kind="stable")
    n = len(tracks)
    tracks["bbox_x"], tracks["bbox_y"] = (tracks["x"] - 5).round(), (tracks["y"] - 5).round()
    tracks["bbox_w"], tracks["bbox_h"] = 12.0, 8.0
    tracks["area_px"] = 75.0
    tracks["major_px"], tracks["minor_px"] = 12.0, 8.0
    tracks["orientation_deg"] = 0.0
    tracks["deformation"] = rng.uniform(0.01, 0.1, n)
    tracks["brightness"] = rng.uniform(100, 120, n)
    tracks["frame"] = tracks["frame"].astype(np.int64)
    tracks["track_id"] = tracks["track_id"].astype(np.int64)
    return tracks[TRACK_COLUMNS].reset_index(drop=True), pd.DataFrame(summary), truth_rows


def _write_recording(paths: dict, row: dict, c_index: int, tracks: pd.DataFrame,
                     summary: pd.DataFrame, params, rng: np.random.Generator) -> pd.DataFrame:
    """A recording's stage outputs: tracks, clips, clip QC, ingest record and QC record."""
    from rbcflow.clips import qc_table
    from rbcflow.columns import write_tsv
    from rbcflow.qc import judge, qc_limits, recording_record, write_record
    from rbcflow.track import write_tracks

    sample = row["sample"]
    write_tracks(tracks, summary, paths["tracks"], paths["tracks_summary"],
                 {"frame_size": [WIDTH, HEIGHT], "n_frames": N_FRAMES,
                  "params": params.as_dict(), "pipeline_id": params.pipeline_id})
    kept = summary[summary["status"] == "kept"]
    clips = np.stack([_clip(c_index, rng) for _ in range(len(kept))])
    table = pd.DataFrame({
        "clip_id": [f"{sample}/{t}" for t in kept["track_id"]],
        **{key: row[key] for key in ("sample", "donor", "condition", "focus", "session")},
        "track_id": kept["track_id"].to_numpy(),
        "first_frame": kept["entry_frame"].to_numpy(),
        "last_frame": kept["exit_frame"].to_numpy(),
        **{key: kept[key].to_numpy() for key in ("velocity_mm_s", "centerline_distance_um",
                                                 "flight_distance_px")},
    })
    write_clip_file(paths["clips"], clips, table,
                    attrs={"source_sha256": "0" * 64, "sample": sample,
                           "params": params.as_dict(), "pipeline_id": params.pipeline_id})
    write_tsv(qc_table(summary, {}), paths["clips_qc"])
    record = recording_record(sample, N_FRAMES, len(tracks), summary, len(kept),
                              params.pipeline_id)
    # the verdict as assess_recording gives it; one recording's background is too short
    figures = {"n_detections": len(tracks), "kept_tracks": len(kept), "continuous": True,
               "background_frames": 4 if sample == QC_SUSPECT_SAMPLE else 100}
    verdict, flagged = judge(figures, qc_limits())
    write_record({**record, "qc": {"verdict": verdict, "flagged": flagged,
                                   "figures": figures}}, paths["qc"])
    return table


def _write_ingest(paths: dict, row: dict, video: Path, digest: str) -> None:
    paths["ingest_json"].write_text(json.dumps({
        "sample": row["sample"], "path": str(video), "reader": "opencv", "sha256": digest,
        "n_frames": N_FRAMES, "n_frames_header": N_FRAMES, "fps_sheet": FPS, "fps_file": FPS,
        "width": WIDTH, "height": HEIGHT, "dtype": "uint8", "truncated": False,
        "problems": [],
    }))


def _write_video_and_background(video: Path, paths: dict, cells: list[dict], params,
                                rng: np.random.Generator) -> None:
    """The one real recording, and its background as the background stage stores it."""
    import dataclasses

    from rbcflow.background import BackgroundModel, save_background
    from rbcflow.calibrate import difference_histogram, noise_record

    background = background_image()
    frames = list(_render(background, cells, rng))
    write_video(video, frames)
    # the noise histogram the background builder records (threshold and polarity auto)
    noise = noise_record(difference_histogram(frames[:20], background), len(frames[:20]))
    record = {**dataclasses.asdict(params.background), "n_frames_used": N_FRAMES,
              "noise": {**noise, "blurred": []}}
    save_background(BackgroundModel("median", record, background[None]), paths["background"])


def _score_tracking(results: Path, batch: str, paths: dict, truth_path: Path,
                    truth_rows: list[dict], row: dict, config: dict) -> None:
    """The truth table and the recording's tracking scores (rule evaluate_tracking)."""
    from rbcflow.trackeval import evaluate_recording

    truth = pd.DataFrame(truth_rows).assign(condition=row["condition"], donor=row["donor"])
    truth.to_csv(truth_path, sep="\t", index=False)
    evaluate_recording(paths["tracks"], paths["tracks_summary"], truth_path,
                       results / "tracking" / batch / f"{row['sample']}.json",
                       max_distance_px=config["evaluate"]["truth_max_distance_px"])


def _recordings(root: Path, results: Path, config: dict, rng: np.random.Generator
                ) -> tuple[list[dict], dict, list[pd.DataFrame]]:
    """Every recording's files; returns the sheet rows, expected counts and clip tables."""
    params = resolve_chain_params(config, FPS, UM_PER_PX)
    rows, expected, clip_tables = [], {}, []
    for d_index, donor in enumerate(DONORS):
        batch = batch_of(donor)
        for c_index, condition in enumerate(config["conditions"]):
            sample = f"{donor}_{condition}"
            paths = output_paths(results / "preprocess" / batch, sample)
            for path in paths.values():
                path.parent.mkdir(parents=True, exist_ok=True)
            cells = _cells(rng)
            tracks, summary, truth_rows = _track_outputs(cells, rng)
            row = {"sample": sample, "path": f"videos/{sample}.avi", "donor": donor,
                   "condition": condition, "focus": FOCI[(d_index + c_index) % 3],
                   "session": f"S{1 + d_index % 2}", "fps": FPS, "um_per_px": UM_PER_PX,
                   "truth": f"truth/{sample}.tsv" if sample in TRUTH_SAMPLES else ""}
            clip_tables.append(_write_recording(paths, row, c_index, tracks, summary, params,
                                                rng))
            video = root / row["path"]
            if sample == VIDEO_SAMPLE:
                _write_video_and_background(video, paths, cells, params, rng)
            if row["truth"]:
                _score_tracking(results, batch, paths, root / row["truth"], truth_rows, row,
                                config)
            _write_ingest(paths, row, video, f"{d_index:02d}{c_index:02d}" + "ab" * 30)
            rows.append(row)
            kept = int((summary["status"] == "kept").sum())
            expected[sample] = {"detections": len(tracks), "tracks": len(summary),
                                "tracks_kept": kept, "clips": kept, "truth_cells": len(cells)}
    return rows, expected, clip_tables


def _test_examples(split: pd.DataFrame, n: int = 2) -> pd.DataFrame:
    return split[split["split"] == "test"].head(n)


def saliency_outputs(path: Path, examples: pd.DataFrame, rng: np.random.Generator,
                     on_cell: bool = True) -> dict:
    """``saliency.npy`` of a few fixture clips with a map on the cell (``on_cell``) or on
    the frame's top edge, and the ``saliency`` entry of metrics.json measured from them."""
    from rbcflow.saliency import cell_masks, in_cell_share

    clips = np.stack([_clip(i % 2, rng) for i in range(len(examples))]).astype(np.float32)
    size = clips.shape[2]
    yy, xx = np.mgrid[0:size, 0:size]
    centre = (size / 2, size / 2) if on_cell else (1.0, size / 2)
    blob = np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * 3.0**2))
    maps = np.broadcast_to(blob, clips.shape).astype(np.float32)
    masks = cell_masks(clips)
    shares = in_cell_share(maps, masks)
    np.save(path, np.stack([clips, maps, masks.astype(np.float32)], axis=1))
    share, area = float(shares.mean()), float(masks.mean())
    return {
        "method": "Grad-CAM of the predicted class", "n_clips": len(examples),
        "in_cell_share": share, "cell_area_share": area, "enrichment": share / area,
        "spatially_resolved": True,
        "examples": [{"clip_id": row.clip_id, "donor": str(row.donor), "label": int(row.label),
                      "p_positive": 0.5, "fold": -1, "in_cell_share": float(s)}
                     for row, s in zip(examples.itertuples(), shares, strict=True)],
    }


#: A task with more than two classes, added to the config by ``make_results(multiclass=True)``.
MULTICLASS_TASK = {"name": "Treatment", "classes": [
    {"name": c, "conditions": [c]} for c in ("native", "DA", "FA", "GA")]}


def _multiclass_predictions(split: pd.DataFrame, task: dict, rng: np.random.Generator
                            ) -> tuple[pd.DataFrame, dict]:
    """Seeded softmax outputs leaning towards the true class; predictions and metrics."""
    from rbcflow.evaluate import donor_bootstrap_class_metrics

    names = [c["name"] for c in task["classes"]]
    labels = split["label"].to_numpy()
    logits = 1.6 * np.eye(len(names))[labels] + rng.normal(0, 0.9, (len(split), len(names)))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    predictions = pd.DataFrame({
        "clip_id": split["clip_id"], "donor": split["donor"], "split": split["split"],
        "label": labels,
        **{f"p_{n}": probabilities[:, k] for k, n in enumerate(names)},
        "predicted": probabilities.argmax(axis=1),
    })
    test = predictions[predictions["split"] == "test"]
    classes = list(range(len(names)))
    y, p = test["label"], test["predicted"]
    test_metrics = {
        "balanced_accuracy": float(balanced_accuracy_score(y, p)),
        "macro_f1": float(f1_score(y, p, average="macro", labels=classes)),
        "per_class_recall": recall_score(y, p, labels=classes, average=None).tolist(),
        "roc_auc": float(roc_auc_score(y, test[[f"p_{n}" for n in names]].to_numpy(),
                                       multi_class="ovr")),
        "roc_auc_average": "macro one-vs-rest",
        "confusion_matrix": confusion_matrix(y, p, labels=classes).tolist(),
        **donor_bootstrap_class_metrics(y.to_numpy(), p.to_numpy(), test["donor"].to_numpy(),
                                        len(names), n_boot=200, seed=3),
    }
    return predictions, test_metrics


def _task_outputs(results: Path, task: dict, clips: pd.DataFrame,
                  rng: np.random.Generator) -> None:
    """A task's split, audit, predictions, metrics and history."""
    name = task["name"]
    labels = task_label_map(task)
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
    if "classes" in task:
        predictions, multiclass = _multiclass_predictions(split, task, rng)
    else:
        noise = rng.normal(0, 0.22, len(split))
        p = np.clip(0.5 + (split["label"].to_numpy() - 0.5) * 0.7 + noise, 0.001, 0.999)
        predictions = pd.DataFrame({
            "clip_id": split["clip_id"], "donor": split["donor"], "split": split["split"],
            "label": split["label"], "p_positive": p, "predicted": (p >= 0.5).astype(int),
        })
    folder = results / "models" / name
    folder.mkdir(parents=True)
    predictions.to_csv(folder / "predictions.tsv", sep="\t", index=False)
    if "classes" in task:
        metrics = _metrics_without_roc(task, split, predictions, rng) | {
            "classes": task["classes"]}
        metrics["test"].update(multiclass)
    else:
        metrics = _metrics(task, split, predictions, rng)
    metrics["saliency"] = saliency_outputs(folder / "saliency.npy", _test_examples(split),
                                           rng)
    if "classes" in task:  # examples name the predicted class, as evaluate writes them
        for example in metrics["saliency"]["examples"]:
            example["predicted"], example["p_predicted"] = 1, example.pop("p_positive")
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    epochs = np.arange(1, 13)
    pd.DataFrame({
        "epoch": epochs,
        "accuracy": 1 - 0.45 * np.exp(-epochs / 3),
        "loss": 0.7 * np.exp(-epochs / 4),
        "val_accuracy": 0.95 - 0.4 * np.exp(-epochs / 3) + rng.normal(0, 0.01, 12),
        "val_loss": 0.2 + 0.5 * np.exp(-epochs / 4) + rng.normal(0, 0.01, 12),
    }).to_csv(folder / "history.csv", index=False)


def make_results(root: Path, seed: int = 3, benchmarks: bool = True,
                 multiclass: bool = False) -> dict:
    """Write a sample sheet, a video, truth tables and every stage's outputs under ``root``.

    Returns ``results``, ``config``, ``sheet`` (validated), ``inputs`` (the
    :class:`ReportInputs` of the results folder, found by its layout), ``lock_file``,
    ``logs`` (the jobs' benchmark files, with ``benchmarks``) and ``expected`` (the
    counts the report must show: detections, kept tracks and clips per sample). With
    ``multiclass`` the config's tasks end with ``MULTICLASS_TASK``.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    results = root / "results"
    overrides = {"seed": seed, "results": str(results)}
    if multiclass:
        overrides["tasks"] = [*load_config()["tasks"], MULTICLASS_TASK]
    config = load_config(overrides=overrides)
    (root / "videos").mkdir(parents=True)
    (root / "truth").mkdir()
    rows, expected, clip_tables = _recordings(root, results, config, rng)
    sheet_path = root / "samples.tsv"
    pd.DataFrame(rows).to_csv(sheet_path, sep="\t", index=False)
    sheet = load_sample_sheet(sheet_path, conditions=config["conditions"], check_files=False)
    clips = pd.concat(clip_tables, ignore_index=True)
    for task in config["tasks"]:
        _task_outputs(results, task, clips, rng)
    logs = root / "logs"
    if benchmarks:
        write_benchmark(logs / "benchmarks" / "simulate_dataset.tsv", [4.0])
        for batch in BATCHES:
            write_benchmark(logs / "benchmarks" / "preprocess_batch" / f"{batch}.tsv", [1.5])
        for task in config["tasks"]:
            write_benchmark(logs / "benchmarks" / "train_model" / f"{task['name']}.tsv",
                            [20.0, 22.0])
    lock_file = root / "lock.txt"
    lock_file.write_text("numpy==2.0.0\n")
    found = ReportInputs.from_results(results, sheet, [t["name"] for t in config["tasks"]],
                                      config["report"]["pipeline_sample"], lock_file)
    return {"results": results, "config": config, "sheet": sheet, "expected": expected,
            "root": root, "inputs": found, "lock_file": lock_file, "logs": logs}


def write_benchmark(path: Path, seconds: list[float]) -> None:
    """A Snakemake benchmark file: one row per repeat."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"s": s, "h:m:s": f"0:00:{int(s):02d}", "max_rss": 300.0 + s, "max_vms": 900.0,
             "max_uss": 280.0, "max_pss": 290.0, "io_in": 1.0, "io_out": 2.0,
             "mean_load": 95.0, "cpu_time": 0.9 * s} for s in seconds]
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
