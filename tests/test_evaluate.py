"""Evaluation: metrics against hand counts, the donor bootstrap, the metrics.json contract."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    recall_score,
    roc_auc_score,
)
from synthetic_clips import donors_with_both, make_clip_files

from rbcflow.evaluate import (
    PREDICTION_COLUMNS,
    binary_metrics,
    classification_metrics,
    donor_bootstrap_ci,
    donor_bootstrap_class_metrics,
    evaluate_task,
    fold_metrics,
    predicted_labels,
)
from rbcflow.split import split_task
from rbcflow.train import train_task

DA = {"name": "DA", "negative": ["native"], "positive": ["DA"]}


def test_binary_metrics_match_hand_counts():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.7, 0.3, 0.9, 0.8, 0.4, 0.6, 0.95, 0.55])
    m = binary_metrics(labels, p)
    assert m["confusion_matrix"] == [[3, 1], [1, 5]]
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 5 / 6) / 2)
    f1_pos = 2 * 5 / (2 * 5 + 1 + 1)
    f1_neg = 2 * 3 / (2 * 3 + 1 + 1)
    assert m["macro_f1"] == pytest.approx((f1_pos + f1_neg) / 2)
    # AUC: share of (positive, negative) pairs ranked right; 0.4, 0.55, 0.6 < 0.7 miss
    assert m["roc_auc"] == pytest.approx(1 - 3 / 24)
    assert m["roc_curve"]["fpr"][0] == 0 and m["roc_curve"]["tpr"][-1] == 1


def test_donor_bootstrap_is_wider_than_a_clip_binomial_when_donors_differ():
    # 10 donors x 40 clips; half the donors always right, half always wrong: accuracy 0.5
    donors = np.repeat(np.arange(10), 40)
    correct = np.repeat(np.arange(10) % 2 == 0, 40)
    low, high = donor_bootstrap_ci(correct, donors, n_boot=2000, seed=0)
    assert low < 0.5 < high
    binomial_half_width = 1.96 * np.sqrt(0.25 / len(correct))  # 0.049
    # resampling 10 donors: sd of a binomial(10, 0.5) share is 0.158, half width ~0.3
    assert (high - low) / 2 > 4 * binomial_half_width
    assert (high - low) / 2 == pytest.approx(1.96 * np.sqrt(0.25 / 10), rel=0.2)


def test_donor_bootstrap_degenerates_when_every_donor_scores_alike():
    donors = np.repeat(np.arange(6), 10)
    correct = np.tile(np.arange(10) < 7, 6)  # every donor at 70 %
    assert donor_bootstrap_ci(correct, donors, n_boot=500) == pytest.approx((0.7, 0.7))
    a = donor_bootstrap_ci(np.arange(60) % 3 == 0, donors, 300, seed=5)
    assert a == donor_bootstrap_ci(np.arange(60) % 3 == 0, donors, 300, seed=5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    files = make_clip_files(root / "clips", donors_with_both(6), clips_per_sample=8, seed=4)
    split_task(files, DA, root / "DA.tsv", root / "DA_audit.json", 0.5, 0.25, 0.25)
    params = {"model": "r2plus1d", "epochs": 4, "patience": 4, "learning_rate": 0.003}
    train_task(root / "DA.tsv", files, root / "DA", params, seed=2, ablations=True)
    return root, files


def test_metrics_json_follows_the_contract(trained):
    root, files = trained
    metrics = evaluate_task(root / "DA.tsv", files, root / "DA", DA, {"bootstrap": 200})
    on_disk = json.loads((root / "DA" / "metrics.json").read_text())
    assert on_disk["accuracy"] == metrics["accuracy"]
    for key in ("task", "model", "negative", "positive", "accuracy", "test", "counts",
                "per_donor", "ablations", "training"):
        assert key in on_disk
    assert set(on_disk["accuracy"]) == {"train", "validation", "test"}
    for key in ("balanced_accuracy", "macro_f1", "roc_auc", "accuracy_ci95", "confusion_matrix",
                "roc_curve"):
        assert key in on_disk["test"]
    assert set(on_disk["ablations"]) >= {
        "shuffled_time_test_accuracy", "single_frame_test_accuracy"
    }
    assert set(on_disk["training"]) == {"epochs_run", "best_epoch"}
    assert on_disk["model"] == "r2plus1d" and on_disk["training"]["epochs_run"] >= 1

    predictions = pd.read_csv(root / "DA" / "predictions.tsv", sep="\t")
    assert list(predictions.columns) == PREDICTION_COLUMNS
    split = pd.read_csv(root / "DA.tsv", sep="\t")
    assert len(predictions) == len(split)
    test = predictions[predictions["split"] == "test"]
    assert metrics["accuracy"]["test"] == pytest.approx(np.mean(test["predicted"] == test["label"]))
    cm = np.array(metrics["test"]["confusion_matrix"])
    assert cm.sum() == len(test) == metrics["counts"]["test"]["clips"]
    assert metrics["counts"]["test"]["donors"] == test["donor"].nunique()
    low, high = metrics["test"]["accuracy_ci95"]
    assert low <= metrics["accuracy"]["test"] <= high
    per_donor = {d["donor"]: d for d in metrics["per_donor"]}
    assert set(per_donor) == set(test["donor"])
    for donor, part in test.groupby("donor"):
        assert per_donor[donor]["accuracy"] == pytest.approx(
            np.mean(part["predicted"] == part["label"])
        )
    for value in metrics["ablations"].values():
        assert 0 <= value <= 1


def test_a_frame_model_is_its_own_single_frame_baseline(trained, tmp_path):
    root, files = trained
    # a `frame` model's folder has no baseline_frame.keras: the model is its own baseline
    model_dir = tmp_path / "frame_only"
    model_dir.mkdir()
    (model_dir / "model.keras").write_bytes((root / "DA" / "baseline_frame.keras").read_bytes())
    (model_dir / "train_summary.json").write_text('{"model": "frame"}')
    metrics = evaluate_task(root / "DA.tsv", files, model_dir, DA, {"bootstrap": 100})
    assert metrics["ablations"]["single_frame_test_accuracy"] == metrics["accuracy"]["test"]
    assert metrics["training"]["epochs_run"] is None  # not in that train_summary.json


def test_a_missing_baseline_is_an_error_not_the_video_model(trained, tmp_path):
    root, files = trained
    model_dir = tmp_path / "no_baseline"
    model_dir.mkdir()
    (model_dir / "model.keras").write_bytes((root / "DA" / "model.keras").read_bytes())
    (model_dir / "train_summary.json").write_text('{"model": "r2plus1d"}')
    with pytest.raises(FileNotFoundError, match="baseline_frame.keras"):
        evaluate_task(root / "DA.tsv", files, model_dir, DA, {"bootstrap": 100})


def test_metrics_and_saliency_repeat_byte_for_byte(trained):
    """No time, host or commit in metrics.json: the same model and seed give the same bytes."""
    root, files = trained
    params = {"bootstrap": 200, "saliency_clips": 6, "saliency_examples": 3}
    first = evaluate_task(root / "DA.tsv", files, root / "DA", DA, params)
    files_once = {n: (root / "DA" / n).read_bytes() for n in ("metrics.json", "saliency.npy")}
    evaluate_task(root / "DA.tsv", files, root / "DA", DA, params)
    for name, content in files_once.items():
        assert (root / "DA" / name).read_bytes() == content, name
    text = files_once["metrics.json"].decode()
    assert '"created"' not in text and '"seconds"' not in text and "git_revision" not in text
    saliency = first["saliency"]
    assert saliency["n_clips"] == 6 and len(saliency["examples"]) == 3
    assert 0 <= saliency["in_cell_share"] <= 1 and 0 < saliency["cell_area_share"] < 1
    assert {e["label"] for e in saliency["examples"]} == {0, 1}  # both classes shown
    layers = np.load(root / "DA" / "saliency.npy")
    assert layers.shape == (3, 3, 8, 16, 16) and layers.dtype == np.float32
    assert layers[:, 1].max() <= 1 and set(np.unique(layers[:, 2])) <= {0.0, 1.0}


def test_fold_metrics_are_each_folds_test_metrics_with_mean_and_sd():
    rng = np.random.default_rng(0)
    test = pd.DataFrame({"fold": np.repeat([0, 1, 2], 20), "donor": np.repeat(np.arange(6), 10),
                         "label": np.tile([0, 1], 30), "p_positive": rng.uniform(0, 1, 60)})
    summary = fold_metrics(test)
    assert [f["fold"] for f in summary["folds"]] == [0, 1, 2]
    for key in ("accuracy", "macro_f1", "roc_auc"):
        per_fold = [binary_metrics(g["label"], g["p_positive"])[key]
                    for _, g in test.groupby("fold")]
        assert [f[key] for f in summary["folds"]] == per_fold
        assert summary[key]["mean"] == pytest.approx(np.mean(per_fold))
        assert summary[key]["sd"] == pytest.approx(np.std(per_fold, ddof=1))
        assert summary[key]["n_folds"] == 3
    assert fold_metrics(test.assign(fold=-1)) is None


def test_cross_validated_metrics_report_mean_and_sd_over_folds(tmp_path):
    files = make_clip_files(tmp_path / "clips", donors_with_both(6), clips_per_sample=4, seed=6)
    split_task(files, DA, tmp_path / "cv.tsv", tmp_path / "cv.json", cv_folds=3)
    params = {"model": "frame", "epochs": 1, "batch_size": 8, "learning_rate": 0.01}
    train_task(tmp_path / "cv.tsv", files, tmp_path / "m", params, ablations=False)
    metrics = evaluate_task(tmp_path / "cv.tsv", files, tmp_path / "m", DA,
                            {"bootstrap": 100, "ablations": False, "saliency_clips": 4})
    per_fold = metrics["test"]["per_fold"]
    assert len(per_fold["folds"]) == 3 and per_fold["accuracy"]["n_folds"] == 3
    predictions = pd.read_csv(tmp_path / "m" / "predictions.tsv", sep="\t")
    accuracies = [float(np.mean(g["predicted"] == g["label"]))
                  for _, g in predictions.groupby("fold")]
    assert per_fold["accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
    assert per_fold["accuracy"]["sd"] == pytest.approx(np.std(accuracies, ddof=1))
    # the pooled out-of-fold figure stays beside them
    assert metrics["accuracy"]["test"] == pytest.approx(
        np.mean(predictions["predicted"] == predictions["label"]))


def test_multiclass_metrics_match_scikit_learn_on_a_fixed_example():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    predicted = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 0, 3])
    probabilities = np.full((12, 4), 0.1)
    probabilities[np.arange(12), predicted] = 0.7
    m = classification_metrics(labels, probabilities)
    assert m["accuracy"] == pytest.approx(9 / 12)
    # by hand: recalls 2/3, 2/3, 1, 2/3
    assert m["per_class_recall"] == pytest.approx([2 / 3, 2 / 3, 1.0, 2 / 3])
    assert m["balanced_accuracy"] == pytest.approx(np.mean([2 / 3, 2 / 3, 1.0, 2 / 3]))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, predicted))
    assert m["macro_f1"] == pytest.approx(f1_score(labels, predicted, average="macro"))
    assert m["per_class_recall"] == pytest.approx(
        recall_score(labels, predicted, average=None).tolist())
    assert m["confusion_matrix"] == confusion_matrix(labels, predicted).tolist()
    assert m["confusion_matrix"][3] == [1, 0, 0, 2]
    rows = probabilities / probabilities.sum(axis=1, keepdims=True)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(labels, rows, multi_class="ovr"))
    # two classes keep the P(positive) >= 0.5 rule and the binary metrics
    two = np.array([[0.5, 0.5], [0.8, 0.2]])
    assert predicted_labels(two).tolist() == [1, 0]
    assert classification_metrics(np.array([1, 0]), two) == binary_metrics(
        np.array([1, 0]), two[:, 1])


def test_class_metric_intervals_resample_donors_and_skip_replicates_lacking_a_class():
    rng = np.random.default_rng(0)
    donors = np.repeat([f"D{i}" for i in range(9)], 10)
    labels = np.repeat(np.arange(9) % 3, 10)  # each donor one class
    predicted = np.where(rng.random(90) < 0.7, labels, (labels + 1) % 3)
    out = donor_bootstrap_class_metrics(labels, predicted, donors, 3, n_boot=400, seed=2)
    again = donor_bootstrap_class_metrics(labels, predicted, donors, 3, n_boot=400, seed=2)
    assert out == again
    assert 0 < out["replicates_with_every_class"] < 400
    low, high = out["balanced_accuracy_ci95"]
    point = balanced_accuracy_score(labels, predicted)
    assert low <= point <= high and high - low > 0.02
    for k, (lo, hi) in enumerate(out["per_class_recall_ci95"]):
        assert lo <= recall_score(labels, predicted, average=None)[k] <= hi
    # one donor per class: every replicate with all classes is the whole test set
    single = donor_bootstrap_class_metrics(np.array([0, 1, 2]), np.array([0, 1, 1]),
                                           np.array(["a", "b", "c"]), 3, n_boot=300)
    assert single["macro_f1_ci95"][0] == single["macro_f1_ci95"][1]
