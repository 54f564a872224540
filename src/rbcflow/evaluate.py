"""Evaluation of a trained task: Table-1 accuracies, test metrics, donor bootstrap, ablations.

Confidence intervals resample test *donors*, not clips: clips of one donor are correlated,
so a binomial interval over clips is too narrow. With a cross-validated split every clip
is predicted by the model of the fold that tested it (out-of-fold), so every donor is
tested once and the interval covers all donors. The test metrics of each fold's model on
its own test donors are also given, with their mean and standard deviation over folds (as
seed 002 reports cross-validation).

Grad-CAM saliency (``rbcflow.saliency``) on a seeded sample of test clips gives the share
of the maps' mass on the cell; a few of those clips, their maps and cell masks are kept in
``saliency.npy`` for the report's figure.
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
    recall_score,
    roc_auc_score,
    roc_curve,
)

from rbcflow.config import task_classes
from rbcflow.dataset import attach_locations, read_clip_batch
from rbcflow.io.atomic import atomic_path, write_text_atomic
from rbcflow.params import section_with_defaults
from rbcflow.provenance import stable_provenance
from rbcflow.split import SPLITS, fold_splits, read_split_table

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["clip_id", "donor", "split", "label", "p_positive", "predicted"]
#: Metrics summarised over cross-validation folds (mean and sd in ``test.per_fold``).
FOLD_METRICS = ("accuracy", "macro_f1", "roc_auc")
#: Layers of ``saliency.npy`` (n_examples, 3, T, H, W): the clip, its map, its cell mask.
SALIENCY_LAYERS = ("clip", "gradcam", "cell_mask")


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
    """Class probabilities (n_clips, n_classes) for the clips of ``located``, in batches.

    With ``shuffle_time_seed``, the frames of every clip are put in a random order (one
    permutation per clip, seeded) before prediction: the time-shuffle ablation.
    """
    files, rows = located["file"].to_numpy(), located["row"].to_numpy()
    rng = np.random.default_rng(shuffle_time_seed) if shuffle_time_seed is not None else None
    out = np.empty((len(located), int(model.outputs[0].shape[-1])), dtype=np.float64)
    for start in range(0, len(located), batch_size):
        index = np.arange(start, min(start + batch_size, len(located)))
        clips = read_clip_batch(files[index], rows[index]).astype(np.float32)
        if rng is not None:
            for i in range(len(clips)):
                clips[i] = clips[i][rng.permutation(clips.shape[1])]
        probabilities = np.asarray(model.predict_on_batch(clips[..., None]), dtype=np.float64)
        out[index] = probabilities
    return out


def probability_columns(class_names: Sequence[str]) -> list[str]:
    """``p_<class>`` for each class (a two-class ``predictions.tsv`` keeps ``p_positive``
    only: ``prediction_columns``)."""
    return [f"p_{name}" for name in class_names]


def predicted_labels(probabilities: np.ndarray) -> np.ndarray:
    """The predicted class of each row: P(positive) >= 0.5 for two classes, else argmax."""
    probabilities = np.asarray(probabilities, dtype=float)
    if probabilities.shape[1] == 2:
        return (probabilities[:, 1] >= 0.5).astype(int)
    return np.argmax(probabilities, axis=1).astype(int)


def _with_probabilities(part: pd.DataFrame, probabilities: np.ndarray,
                        class_names: Sequence[str], **columns) -> pd.DataFrame:
    probs = dict(zip(probability_columns(class_names), probabilities.T, strict=True))
    return part.assign(**probs, predicted=predicted_labels(probabilities), **columns)


def _probabilities_of(frame: pd.DataFrame, class_names: Sequence[str]) -> np.ndarray:
    if len(class_names) == 2:
        p = frame["p_positive"].to_numpy(dtype=float)
        return np.stack([1 - p, p], axis=1)
    return frame[probability_columns(class_names)].to_numpy(dtype=float)


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


def multiclass_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """Accuracy, balanced accuracy, macro-F1, per-class recall, macro one-vs-rest ROC AUC
    and the confusion matrix of a task with K > 2 classes (argmax prediction).

    The AUC is None unless every class occurs among ``labels`` (one-vs-rest needs each).
    """
    labels = np.asarray(labels, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    classes = list(range(probabilities.shape[1]))
    predicted = predicted_labels(probabilities)
    every = set(np.unique(labels)) == set(classes)
    recall = recall_score(labels, predicted, labels=classes, average=None, zero_division=np.nan)
    return {
        "accuracy": float(np.mean(predicted == labels)) if len(labels) else None,
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)) if every else None,
        "macro_f1": float(f1_score(labels, predicted, average="macro", labels=classes,
                                   zero_division=0)),
        "per_class_recall": [None if np.isnan(r) else float(r) for r in recall],
        # rows renormalised: the float32 softmax sums to 1 only to ~1e-7
        "roc_auc": float(roc_auc_score(labels, probabilities / probabilities.sum(
            axis=1, keepdims=True), multi_class="ovr", average="macro", labels=classes))
        if every else None,
        "roc_auc_average": "macro one-vs-rest",
        "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist(),
    }


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """``binary_metrics`` of P(positive) for two classes, ``multiclass_metrics`` above."""
    probabilities = np.asarray(probabilities, dtype=float)
    if probabilities.shape[1] == 2:
        return binary_metrics(labels, probabilities[:, 1])
    return multiclass_metrics(labels, probabilities)


def donor_bootstrap_class_metrics(
    labels: np.ndarray,
    predicted: np.ndarray,
    donors: np.ndarray,
    n_classes: int,
    n_boot: int = 1000,
    seed: int = 42,
    level: float = 0.95,
) -> dict:
    """Donor-bootstrap percentile intervals of balanced accuracy, macro-F1 and each
    class's recall, from the replicates ``donor_bootstrap_ci`` draws (same seed, same
    donors).

    A replicate is the test clips of the drawn donors, each donor's clips weighted by how
    often it was drawn. Where donors gave one condition each, a replicate can lack a class:
    its recall is then undefined and balanced accuracy and macro-F1 would average over
    fewer classes, so such replicates are left out of those intervals (and of that class's
    recall); ``replicates_with_every_class`` says how many remained.
    """
    labels, predicted = np.asarray(labels, dtype=int), np.asarray(predicted, dtype=int)
    unique, inverse = np.unique(np.asarray(donors), return_inverse=True)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(unique), size=(n_boot, len(unique)))
    classes = list(range(n_classes))
    recalls = np.full((n_boot, n_classes), np.nan)
    balanced, macro_f1 = [], []
    for replicate, draw in enumerate(draws):
        weight = np.bincount(draw, minlength=len(unique))[inverse].astype(float)
        keep = weight > 0
        y, p, w = labels[keep], predicted[keep], weight[keep]
        recall = recall_score(y, p, labels=classes, average=None, sample_weight=w,
                              zero_division=np.nan)
        recalls[replicate] = recall
        if np.isfinite(recall).all():
            balanced.append(balanced_accuracy_score(y, p, sample_weight=w))
            macro_f1.append(f1_score(y, p, labels=classes, average="macro", sample_weight=w,
                                     zero_division=0))
    tail = (1 - level) / 2 * 100

    def interval(values) -> list[float | None]:
        values = np.asarray(values, dtype=float)
        values = values[np.isfinite(values)]
        if not values.size:
            return [None, None]
        return [float(v) for v in np.percentile(values, [tail, 100 - tail])]

    return {
        "balanced_accuracy_ci95": interval(balanced),
        "macro_f1_ci95": interval(macro_f1),
        "per_class_recall_ci95": [interval(recalls[:, k]) for k in classes],
        "replicates_with_every_class": len(balanced),
    }


def _runs(model_dir: Path, n_folds: int) -> list[tuple[int, Path]]:
    if n_folds == 0:
        return [(-1, model_dir)]
    return [(fold, model_dir / f"fold{fold}") for fold in range(n_folds)]


def _predict_runs(located: pd.DataFrame, model_dir: Path, n_folds: int, ablations: bool,
                  seed: int, batch_size: int, model_name: str | None,
                  class_names: Sequence[str]) -> dict[str, list]:
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
            predicted = _with_probabilities(part, p, class_names, fold=fold)
            correct = predicted["predicted"].to_numpy() == part["label"].to_numpy()
            parts[f"accuracy_{split}"].append(float(np.mean(correct)))
            if split == "test":
                parts["test"].append(predicted)
            elif not n_folds:  # with CV a clip is train or validation in several runs
                parts["other"].append(predicted)
        if ablations:
            test = run[run["split"] == "test"]
            shuffled = predict_probabilities(model, test, batch_size, shuffle_time_seed=seed)
            parts["shuffled"].append(_with_probabilities(test, shuffled, class_names))
            frame_path = run_dir / "baseline_frame.keras"
            if model_name == "frame":  # a single-frame model is its own baseline
                frame_model = model
            elif frame_path.exists():
                frame_model = load_model(frame_path)
            else:
                raise FileNotFoundError(
                    f"{frame_path}: the single-frame baseline is missing (train with "
                    "evaluate.ablations: true, or turn the ablations off)")
            parts["frame"].append(_with_probabilities(
                test, predict_probabilities(frame_model, test), class_names))
    return parts


def _pooled_accuracy(parts: list[pd.DataFrame]) -> float | None:
    if not parts:
        return None
    pooled = pd.concat(parts)
    return float(np.mean(pooled["predicted"] == pooled["label"]))


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


def _test_metrics(test: pd.DataFrame, bootstrap: int, seed: int,
                  class_names: Sequence[str]) -> dict:
    labels = test["label"].to_numpy()
    predicted = test["predicted"].to_numpy()
    donors = test["donor"].to_numpy()
    metrics = classification_metrics(labels, _probabilities_of(test, class_names))
    metrics["accuracy_ci95"] = list(
        donor_bootstrap_ci(predicted == labels, donors, bootstrap, seed)
    )
    if len(class_names) > 2:
        metrics.update(donor_bootstrap_class_metrics(labels, predicted, donors,
                                                     len(class_names), bootstrap, seed))
    metrics["n_test_donors"] = int(test["donor"].nunique())
    return metrics


def fold_metrics(test: pd.DataFrame,
                 class_names: Sequence[str] = ("negative", "positive")) -> dict | None:
    """Test metrics of each fold's model on its test clips, and their mean and sample
    standard deviation over folds; None without cross-validation."""
    if "fold" not in test.columns or not len(test) or int(test["fold"].max()) < 0:
        return None
    folds = []
    for fold, part in test.groupby("fold", sort=True):
        metrics = classification_metrics(part["label"].to_numpy(),
                                         _probabilities_of(part, class_names))
        folds.append({"fold": int(fold), "clips": int(len(part)),
                      "donors": int(part["donor"].nunique()),
                      **{key: metrics[key] for key in FOLD_METRICS}})
    summary: dict = {"folds": folds}
    for key in FOLD_METRICS:
        values = [f[key] for f in folds if f[key] is not None]
        summary[key] = {
            "mean": float(np.mean(values)) if values else None,
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            "n_folds": len(values),
        }
    return summary


def _example_positions(labels: np.ndarray, n: int, n_classes: int = 2) -> np.ndarray:
    """Up to ``n`` positions, half of each class where both have enough, in order (with
    more classes: the classes in turn, each clip its class's next one)."""
    if n_classes > 2:
        by_class = [list(np.flatnonzero(labels == c)) for c in range(n_classes)]
        taken: list[int] = []
        while len(taken) < n and any(by_class):
            for rows in by_class:
                if rows and len(taken) < n:
                    taken.append(rows.pop(0))
        return np.sort(np.asarray(taken, dtype=int))
    by_class = [np.flatnonzero(labels == c) for c in (1, 0)]
    wanted = [(n + 1) // 2, n // 2]
    for c in (0, 1):  # a class short of clips leaves its places to the other
        spare = wanted[c] - len(by_class[c])
        if spare > 0:
            wanted[c] -= spare
            wanted[1 - c] += spare
    taken = np.concatenate([by_class[c][: wanted[c]] for c in (0, 1)])
    return np.sort(taken).astype(int)


def saliency_summary(test: pd.DataFrame, model_dir: Path, n_folds: int, n_clips: int,
                     n_examples: int, seed: int,
                     class_names: Sequence[str] = ("negative", "positive"),
                     ) -> tuple[dict | None, np.ndarray | None]:
    """Grad-CAM of the predicted class on up to ``n_clips`` test clips (drawn with
    ``seed``; each clip explained by the model that tested it) and how much of it lies on
    the cell (``rbcflow.saliency.cell_masks``).

    Returns the summary for ``metrics.json`` (mean in-cell share, the cell's share of the
    clip area, their ratio, the examples) and the examples' clips, maps and masks as one
    (n_examples, 3, T, H, W) float32 array (``SALIENCY_LAYERS``); (None, None) when
    ``n_clips`` is 0 or there is no test clip.
    """
    from rbcflow.models import load_model
    from rbcflow.saliency import cell_masks, gradcam, in_cell_share, spatially_resolved

    if n_clips == 0 or not len(test):
        return None, None
    rng = np.random.default_rng(seed)
    chosen = test.iloc[np.sort(rng.permutation(len(test))[:n_clips])].reset_index(drop=True)
    clips = read_clip_batch(chosen["file"].to_numpy(), chosen["row"].to_numpy())
    clips = clips.astype(np.float32)
    maps = np.zeros(clips.shape, np.float32)
    for fold, run_dir in _runs(model_dir, n_folds):
        index = np.flatnonzero(chosen["fold"].to_numpy() == fold)
        if len(index):
            maps[index] = gradcam(load_model(run_dir / "model.keras"), clips[index])
    masks = cell_masks(clips)
    shares = in_cell_share(maps, masks)
    area = float(masks.mean())
    share = float(np.nanmean(shares)) if np.isfinite(shares).any() else None
    examples = _example_positions(chosen["label"].to_numpy(), n_examples, len(class_names))
    summary = {
        "method": "Grad-CAM of the predicted class", "n_clips": int(len(chosen)),
        "in_cell_share": share, "cell_area_share": area,
        "enrichment": share / area if share is not None and area > 0 else None,
        "spatially_resolved": spatially_resolved(maps),
        "examples": [
            {"clip_id": str(chosen.loc[i, "clip_id"]), "donor": str(chosen.loc[i, "donor"]),
             "label": int(chosen.loc[i, "label"]),
             **_example_probability(chosen.iloc[i], class_names),
             "fold": int(chosen.loc[i, "fold"]),
             "in_cell_share": None if np.isnan(shares[i]) else float(shares[i])}
            for i in examples
        ],
    }
    layers = np.stack([clips[examples], maps[examples], masks[examples].astype(np.float32)],
                      axis=1)
    return summary, layers


def _example_probability(row: pd.Series, class_names: Sequence[str]) -> dict:
    """P(positive) of a two-class example; the predicted class and its probability else."""
    if len(class_names) == 2:
        return {"p_positive": float(row["p_positive"])}
    predicted = int(row["predicted"])
    return {"predicted": predicted, "p_predicted": float(row[f"p_{class_names[predicted]}"])}


def write_saliency_examples(layers: np.ndarray | None, path: Path) -> None:
    """``saliency.npy`` (always written, so the workflow can declare it; (0,) when empty)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.zeros(0, np.float32) if layers is None else layers)


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
    task : the task as configured (``negative``/``positive`` or ``classes``).
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
    class_names = [c["name"] for c in task_classes(task)]
    parts = _predict_runs(located, model_dir, n_folds, params["ablations"], seed, batch_size,
                          summary.get("model"), class_names)
    test = pd.concat(parts["test"], ignore_index=True)
    test_metrics = _test_metrics(test, params["bootstrap"], seed, class_names)
    test_metrics["per_fold"] = fold_metrics(test, class_names)
    overall_accuracy = test_metrics.pop("accuracy")
    saliency, saliency_layers = saliency_summary(
        test, model_dir, n_folds, params["saliency_clips"], params["saliency_examples"], seed,
        class_names,
    )
    per_donor = [
        {
            "donor": str(donor), "split": "test", "n_clips": int(len(part)),
            "accuracy": float(np.mean(part["predicted"] == part["label"])),
        }
        for donor, part in test.groupby("donor")
    ]
    metrics = {
        "task": task["name"],
        "model": summary.get("model"),
        **_class_record(task),
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
        "saliency": saliency,
        "training": {
            "epochs_run": summary.get("epochs_run"),
            "best_epoch": summary.get("best_epoch"),
        },
        "cv_folds": n_folds,
        "evaluation": {"bootstrap": params["bootstrap"], "seed": seed, "unit": "donor"},
        "provenance": stable_provenance(split_tsv=str(split_tsv), model_dir=str(model_dir)),
    }
    predictions = pd.concat([*parts["other"], test], ignore_index=True)
    columns = prediction_columns(class_names) + (["fold"] if n_folds else [])
    write_text_atomic(
        model_dir / "predictions.tsv", predictions[columns].to_csv(sep="\t", index=False)
    )
    write_saliency_examples(saliency_layers, model_dir / "saliency.npy")
    write_text_atomic(model_dir / "metrics.json",
                      json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    log.info(
        "task %s: test accuracy %.3f (95%% CI %.3f-%.3f over %d donors)", task["name"],
        overall_accuracy, *test_metrics["accuracy_ci95"], test_metrics["n_test_donors"],
    )
    return metrics


def prediction_columns(class_names: Sequence[str]) -> list[str]:
    """Columns of ``predictions.tsv``: ``PREDICTION_COLUMNS`` for two classes, one
    ``p_<class>`` per class in place of ``p_positive`` for more."""
    if len(class_names) == 2:
        return list(PREDICTION_COLUMNS)
    return [*PREDICTION_COLUMNS[:4], *probability_columns(class_names), "predicted"]


def _class_record(task: Mapping) -> dict:
    """The task's classes as ``metrics.json`` records them: both sides of a two-class
    task given as ``negative``/``positive``, else the class list."""
    if "classes" in task:
        return {"classes": task_classes(task)}
    return {"negative": list(task["negative"]), "positive": list(task["positive"])}


MODELS_TABLE_COLUMNS = ["model", "metrics", "test_accuracy", "test_macro_f1", "test_roc_auc",
                        "in_cell_share"]


def write_models_table(metrics_files: Mapping[str, str | Path], path: str | Path) -> pd.DataFrame:
    """A task's models side by side (model -> its ``metrics.json``; the task's model
    first), one row each with its test accuracy, macro-F1, ROC AUC and in-cell saliency
    share, written as a tab-separated table."""
    rows = []
    for model, metrics_path in metrics_files.items():
        metrics = json.loads(Path(metrics_path).read_text())
        test = metrics.get("test") or {}
        rows.append({
            "model": model, "metrics": str(metrics_path),
            "test_accuracy": (metrics.get("accuracy") or {}).get("test"),
            "test_macro_f1": test.get("macro_f1"), "test_roc_auc": test.get("roc_auc"),
            "in_cell_share": (metrics.get("saliency") or {}).get("in_cell_share"),
        })
    table = pd.DataFrame(rows, columns=MODELS_TABLE_COLUMNS)
    write_text_atomic(Path(path), table.to_csv(sep="\t", index=False, lineterminator="\n"))
    return table
