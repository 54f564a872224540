"""Evaluation of a trained task: Table-1 accuracies, test metrics, donor bootstrap, ablations.

Confidence intervals resample test *donors*, not clips: clips of one donor are correlated,
so a binomial interval over clips is too narrow. With a cross-validated split every clip
is predicted by the model of the fold that tested it (out-of-fold), so every donor is
tested once and the interval covers all donors.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    roc_auc_score,
    roc_curve,
)

from rbcflow.dataset import attach_locations, read_clip_batch
from rbcflow.io.atomic import write_text_atomic
from rbcflow.params import section_with_defaults
from rbcflow.provenance import provenance_record
from rbcflow.split import SPLITS, fold_splits, read_split_table

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["clip_id", "donor", "split", "label", "p_positive", "predicted"]


def donor_bootstrap_ci(
    correct: np.ndarray,
    donors: np.ndarray,
    n_boot: int = 1000,
    seed: int = 42,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of accuracy when resampling donors with replacement.

    Each replicate draws as many donors as there are, with replacement, and pools their
    clips; accuracy is correct clips over clips of the replicate.
    """
    correct = np.asarray(correct, dtype=float)
    unique, inverse = np.unique(np.asarray(donors), return_inverse=True)
    hits = np.bincount(inverse, weights=correct, minlength=len(unique))
    clips = np.bincount(inverse, minlength=len(unique)).astype(float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(unique), size=(n_boot, len(unique)))
    accuracy = hits[draws].sum(axis=1) / clips[draws].sum(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(accuracy, [tail, 100 - tail])
    return float(low), float(high)


def predict_probabilities(
    model,
    located: pd.DataFrame,
    batch_size: int = 32,
    shuffle_time_seed: int | None = None,
) -> np.ndarray:
    """P(positive) for each clip of ``located``, streamed in batches.

    With ``shuffle_time_seed``, the frames of every clip are put in a random order (one
    permutation per clip, seeded) before prediction: the time-shuffle ablation.
    """
    files, rows = located["file"].to_numpy(), located["row"].to_numpy()
    rng = np.random.default_rng(shuffle_time_seed) if shuffle_time_seed is not None else None
    out = np.empty(len(located), dtype=np.float64)
    for start in range(0, len(located), batch_size):
        index = np.arange(start, min(start + batch_size, len(located)))
        clips = read_clip_batch(files[index], rows[index]).astype(np.float32)
        if rng is not None:
            for i in range(len(clips)):
                clips[i] = clips[i][rng.permutation(clips.shape[1])]
        probabilities = np.asarray(model.predict_on_batch(clips[..., None]), dtype=np.float64)
        out[index] = probabilities[:, 1]
    return out


def binary_metrics(labels: np.ndarray, p_positive: np.ndarray) -> dict:
    """Accuracy, balanced accuracy, macro-F1, ROC AUC, confusion matrix and ROC curve."""
    labels = np.asarray(labels, dtype=int)
    predicted = (np.asarray(p_positive) >= 0.5).astype(int)
    both = len(np.unique(labels)) == 2
    metrics = {
        "accuracy": float(np.mean(predicted == labels)) if len(labels) else None,
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)) if both else None,
        "macro_f1": float(f1_score(labels, predicted, average="macro", labels=[0, 1])),
        "roc_auc": float(roc_auc_score(labels, p_positive)) if both else None,
        "confusion_matrix": confusion_matrix(labels, predicted, labels=[0, 1]).tolist(),
        "roc_curve": {"fpr": [], "tpr": []},
    }
    if both:
        fpr, tpr, _ = roc_curve(labels, p_positive)
        metrics["roc_curve"] = {
            "fpr": [round(float(v), 5) for v in fpr], "tpr": [round(float(v), 5) for v in tpr]
        }
    return metrics


def _runs(model_dir: Path, n_folds: int) -> list[tuple[int, Path]]:
    if n_folds == 0:
        return [(-1, model_dir)]
    return [(fold, model_dir / f"fold{fold}") for fold in range(n_folds)]


def _predict_runs(located: pd.DataFrame, model_dir: Path, n_folds: int, ablations: bool,
                  seed: int, batch_size: int, model_name: str | None) -> dict[str, list]:
    """Predictions of every run (one, or one per fold) on its splits and ablations.

    Returns per-split accuracies of each run and the prediction tables: ``test``,
    ``other`` (train and validation, without CV), ``shuffled`` and ``frame`` (ablations).
    """
    from rbcflow.models import load_model

    parts: dict[str, list] = {"test": [], "other": [], "shuffled": [], "frame": []}
    parts.update({f"accuracy_{split}": [] for split in SPLITS})
    for fold, run_dir in _runs(model_dir, n_folds):
        run = located.copy()
        if n_folds:
            run["split"] = fold_splits(run["fold"].to_numpy(), fold, n_folds)
        model = load_model(run_dir / "model.keras")
        for split in SPLITS:
            part = run[run["split"] == split]
            p = predict_probabilities(model, part, batch_size)
            correct = (p >= 0.5) == part["label"].to_numpy()
            parts[f"accuracy_{split}"].append(float(np.mean(correct)))
            if split == "test":
                parts["test"].append(part.assign(p_positive=p, fold=fold))
            elif not n_folds:  # with CV a clip is train or validation in several runs
                parts["other"].append(part.assign(p_positive=p, fold=fold))
        if ablations:
            test = run[run["split"] == "test"]
            shuffled = predict_probabilities(model, test, batch_size, shuffle_time_seed=seed)
            parts["shuffled"].append(test.assign(p_positive=shuffled))
            frame_path = run_dir / "baseline_frame.keras"
            if model_name == "frame":  # a single-frame model is its own baseline
                frame_model = model
            elif frame_path.exists():
                frame_model = load_model(frame_path)
            else:
                raise FileNotFoundError(
                    f"{frame_path}: the single-frame baseline is missing (train with "
                    "evaluate.ablations: true, or turn the ablations off)")
            parts["frame"].append(test.assign(p_positive=predict_probabilities(frame_model, test)))
    return parts


def _pooled_accuracy(parts: list[pd.DataFrame]) -> float | None:
    if not parts:
        return None
    pooled = pd.concat(parts)
    return float(np.mean((pooled["p_positive"] >= 0.5) == pooled["label"]))


def _counts(located: pd.DataFrame, test: pd.DataFrame, n_folds: int) -> dict:
    counts = {
        split: {
            "donors": int(located.loc[located["split"] == split, "donor"].nunique()),
            "clips": int((located["split"] == split).sum()),
        }
        for split in SPLITS
    }
    if n_folds:
        counts["test"] = {"donors": int(test["donor"].nunique()), "clips": int(len(test))}
    return counts


def _test_metrics(test: pd.DataFrame, bootstrap: int, seed: int) -> dict:
    labels = test["label"].to_numpy()
    predicted = (test["p_positive"].to_numpy() >= 0.5).astype(int)
    metrics = binary_metrics(labels, test["p_positive"].to_numpy())
    metrics["accuracy_ci95"] = list(
        donor_bootstrap_ci(predicted == labels, test["donor"].to_numpy(), bootstrap, seed)
    )
    metrics["n_test_donors"] = int(test["donor"].nunique())
    return metrics


def evaluate_task(
    split_tsv: str | Path,
    clip_files: Sequence[str | Path],
    model_dir: str | Path,
    task: Mapping,
    params: Mapping | None = None,
    seed: int = 42,
    batch_size: int = 32,
) -> dict:
    """Evaluate a trained task and write ``metrics.json`` and ``predictions.tsv``.

    ``predictions.tsv`` holds every clip of every split; with cross-validation, the
    out-of-fold test predictions with their ``fold``.

    Parameters
    ----------
    split_tsv, clip_files : as for ``train_task``.
    model_dir : ``results/models/<task>/`` as written by ``train_task``.
    task : the task's ``{"name", "negative", "positive"}``.
    params : the config's ``evaluate`` section (``bootstrap``, ``ablations``).
    seed : seeds the bootstrap and the frame shuffle of the ablation.

    Returns
    -------
    The metrics (the contents of ``metrics.json``).
    """
    params = section_with_defaults("evaluate", params)
    model_dir = Path(model_dir)
    table = read_split_table(split_tsv)
    located = attach_locations(table, clip_files)
    n_folds = int(table["fold"].max()) + 1
    summary_path = model_dir / "train_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    parts = _predict_runs(located, model_dir, n_folds, params["ablations"], seed, batch_size,
                          summary.get("model"))
    test = pd.concat(parts["test"], ignore_index=True)
    test_metrics = _test_metrics(test, params["bootstrap"], seed)
    overall_accuracy = test_metrics.pop("accuracy")
    per_donor = [
        {
            "donor": str(donor), "split": "test", "n_clips": int(len(part)),
            "accuracy": float(np.mean((part["p_positive"] >= 0.5) == part["label"])),
        }
        for donor, part in test.groupby("donor")
    ]
    metrics = {
        "task": task["name"],
        "model": summary.get("model"),
        "negative": list(task["negative"]),
        "positive": list(task["positive"]),
        "accuracy": {
            "train": float(np.mean(parts["accuracy_train"])),
            "validation": float(np.mean(parts["accuracy_validation"])),
            "test": overall_accuracy,
        },
        "test": test_metrics,
        "counts": _counts(located, test, n_folds),
        "per_donor": per_donor,
        "ablations": {
            "shuffled_time_test_accuracy": _pooled_accuracy(parts["shuffled"]),
            "single_frame_test_accuracy": _pooled_accuracy(parts["frame"]),
        },
        "training": {
            "epochs_run": summary.get("epochs_run"),
            "best_epoch": summary.get("best_epoch"),
            "seconds": summary.get("seconds"),
        },
        "cv_folds": n_folds,
        "evaluation": {"bootstrap": params["bootstrap"], "seed": seed, "unit": "donor"},
        "provenance": provenance_record(split_tsv=str(split_tsv), model_dir=str(model_dir)),
    }
    predictions = pd.concat([*parts["other"], test], ignore_index=True)
    predictions["predicted"] = (predictions["p_positive"] >= 0.5).astype(int)
    columns = PREDICTION_COLUMNS + (["fold"] if n_folds else [])
    write_text_atomic(
        model_dir / "predictions.tsv", predictions[columns].to_csv(sep="\t", index=False)
    )
    write_text_atomic(model_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    log.info(
        "task %s: test accuracy %.3f (95%% CI %.3f-%.3f over %d donors)", task["name"],
        overall_accuracy, *test_metrics["accuracy_ci95"], test_metrics["n_test_donors"],
    )
    return metrics
