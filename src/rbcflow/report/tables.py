"""The report's tables, built from the stage outputs by pure functions.

Table 1 keeps two forms of every number: ``table1.json`` holds the values exactly as
they are in each task's ``metrics.json`` (fractions, full precision), ``table1.csv`` and
``table1.md`` the same numbers rounded for reading (accuracies in percent with one
decimal, as in seed 000's Table 1; F1 and AUC with three decimals). There is one row per
task and model (the task's model first, then the other models of ``train.models``, all
trained on the task's split). With cross-validation the pooled out-of-fold figures come
with the mean and standard deviation over folds of accuracy, macro-F1 and AUC.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from rbcflow.config import task_label_map

SPLITS = ("train", "validation", "test")
PERCENT_DECIMALS = 1
SCORE_DECIMALS = 3

#: Table 1 columns (exact values, as in table1.json).
TABLE1_FIELDS = [
    "task", "model", "negative", "positive", "classes",
    "train_accuracy", "validation_accuracy", "test_accuracy",
    "test_balanced_accuracy", "test_macro_f1", "test_roc_auc",
    "test_accuracy_ci95_low", "test_accuracy_ci95_high",
    "train_donors", "validation_donors", "test_donors",
    "train_clips", "validation_clips", "test_clips",
    "cv_folds",
    "test_accuracy_fold_mean", "test_accuracy_fold_sd",
    "test_macro_f1_fold_mean", "test_macro_f1_fold_sd",
    "test_roc_auc_fold_mean", "test_roc_auc_fold_sd",
    "saliency_in_cell_share", "saliency_cell_area_share",
    # tasks with more than two classes only (None for two-class rows)
    "test_balanced_accuracy_ci95_low", "test_balanced_accuracy_ci95_high",
    "test_macro_f1_ci95_low", "test_macro_f1_ci95_high", "test_per_class_recall",
]
#: Fields that are fractions, shown in percent in the CSV and Markdown.
PERCENT_FIELDS = [
    "train_accuracy", "validation_accuracy", "test_accuracy", "test_balanced_accuracy",
    "test_accuracy_ci95_low", "test_accuracy_ci95_high",
    "test_accuracy_fold_mean", "test_accuracy_fold_sd",
    "saliency_in_cell_share", "saliency_cell_area_share",
    "test_balanced_accuracy_ci95_low", "test_balanced_accuracy_ci95_high",
]
SCORE_FIELDS = ["test_macro_f1", "test_roc_auc", "test_macro_f1_fold_mean",
                "test_macro_f1_fold_sd", "test_roc_auc_fold_mean", "test_roc_auc_fold_sd",
                "test_macro_f1_ci95_low", "test_macro_f1_ci95_high"]
COUNT_FIELDS = [f"{split}_{kind}" for kind in ("donors", "clips") for split in SPLITS]


def _number(value: object) -> float | int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
        return value
    return None


def table1_row(metrics: Mapping) -> dict:
    """One Table-1 row from a task's ``metrics.json``; values are copied, not recomputed."""
    accuracy = metrics.get("accuracy") or {}
    test = metrics.get("test") or {}
    ci = test.get("accuracy_ci95") or [None, None]
    counts = metrics.get("counts") or {}
    row = {
        "task": metrics.get("task"),
        "model": metrics.get("model"),
        "negative": "+".join(metrics.get("negative") or []),
        "positive": "+".join(metrics.get("positive") or []),
        "test_balanced_accuracy": _number(test.get("balanced_accuracy")),
        "test_macro_f1": _number(test.get("macro_f1")),
        "test_roc_auc": _number(test.get("roc_auc")),
        "test_accuracy_ci95_low": _number(ci[0]) if len(ci) > 0 else None,
        "test_accuracy_ci95_high": _number(ci[1]) if len(ci) > 1 else None,
    }
    for split in SPLITS:
        row[f"{split}_accuracy"] = _number(accuracy.get(split))
        split_counts = counts.get(split) or {}
        row[f"{split}_donors"] = _number(split_counts.get("donors"))
        row[f"{split}_clips"] = _number(split_counts.get("clips"))
    row["cv_folds"] = _number(metrics.get("cv_folds"))
    per_fold = test.get("per_fold") or {}
    for name in ("accuracy", "macro_f1", "roc_auc"):
        summary = per_fold.get(name) or {}
        row[f"test_{name}_fold_mean"] = _number(summary.get("mean"))
        row[f"test_{name}_fold_sd"] = _number(summary.get("sd"))
    saliency = metrics.get("saliency") or {}
    row["saliency_in_cell_share"] = _number(saliency.get("in_cell_share"))
    row["saliency_cell_area_share"] = _number(saliency.get("cell_area_share"))
    row.update(_multiclass_fields(metrics))
    return {field: row.get(field) for field in TABLE1_FIELDS}


def _interval(values: object) -> tuple[float | None, float | None]:
    values = list(values or []) + [None, None]
    return _number(values[0]), _number(values[1])


def _multiclass_fields(metrics: Mapping) -> dict:
    """For a task with a class list, the class names; with more than two classes also the
    intervals of balanced accuracy and macro-F1, and per class the recall with its
    interval (``{class: {recall, ci95_low, ci95_high}}``). Nothing for ``negative`` /
    ``positive`` tasks."""
    classes = metrics.get("classes") or []
    if not classes:
        return {}
    fields = {"classes": " / ".join(str(c["name"]) for c in classes)}
    if len(classes) == 2:  # a two-class task written as a class list
        return fields
    test = metrics.get("test") or {}
    for name in ("balanced_accuracy", "macro_f1"):
        low, high = _interval(test.get(f"{name}_ci95"))
        fields[f"test_{name}_ci95_low"], fields[f"test_{name}_ci95_high"] = low, high
    recalls = test.get("per_class_recall") or []
    intervals = test.get("per_class_recall_ci95") or []
    per_class = {}
    for k, spec in enumerate(classes):
        low, high = _interval(intervals[k] if k < len(intervals) else None)
        per_class[str(spec["name"])] = {
            "recall": _number(recalls[k]) if k < len(recalls) else None,
            "ci95_low": low, "ci95_high": high,
        }
    fields["test_per_class_recall"] = per_class
    return fields


def per_class_recall_text(per_class: object) -> str | None:
    """``native 80.0 (60.0–90.0); DA ...``: recall and 95 % interval in percent."""
    if not isinstance(per_class, Mapping) or not per_class:
        return None
    texts = []
    for name, v in per_class.items():
        low, high = (_fmt(_pct(v.get(k)), PERCENT_DECIMALS) for k in ("ci95_low", "ci95_high"))
        interval = "–" if low == "–" else f"{low}–{high}"
        texts.append(f"{name} {_fmt(_pct(v.get('recall')), PERCENT_DECIMALS)} ({interval})")
    return "; ".join(texts)


def _pct(value: object) -> float | None:
    return None if _number(value) is None else round(100.0 * value, PERCENT_DECIMALS)


def table1_exact(
    metrics_by_task: Mapping[str, Mapping],
    extra_by_task: Mapping[str, Mapping[str, Mapping]] | None = None,
) -> list[dict]:
    """Table-1 rows with exact values: per task of ``metrics_by_task`` (in its order) the
    task's model, then its other models (``extra_by_task[task]``: model -> metrics)."""
    rows = []
    for task, metrics in metrics_by_task.items():
        for model_metrics in [metrics, *(extra_by_task or {}).get(task, {}).values()]:
            row = table1_row(model_metrics)
            row["task"] = row["task"] or task
            rows.append(row)
    return rows


def table1_rounded(rows: Sequence[Mapping]) -> pd.DataFrame:
    """Table 1 for reading: fractions in percent (one decimal), scores to three decimals."""
    columns = []
    for field in TABLE1_FIELDS:
        columns.append(f"{field}_pct" if field in PERCENT_FIELDS else field)
    records = []
    for row in rows:
        record = {}
        for field in TABLE1_FIELDS:
            value = row.get(field)
            if field in PERCENT_FIELDS:
                record[f"{field}_pct"] = (
                    None if value is None else round(100.0 * value, PERCENT_DECIMALS)
                )
            elif field in SCORE_FIELDS:
                record[field] = None if value is None else round(value, SCORE_DECIMALS)
            elif field == "test_per_class_recall":
                record[field] = per_class_recall_text(value)
            else:
                record[field] = value
        records.append(record)
    frame = pd.DataFrame(records, columns=columns)
    for field in [*COUNT_FIELDS, "cv_folds"]:
        frame[field] = frame[field].astype("Int64")
    return frame


def _fmt(value: object, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    return f"{value:.{decimals}f}"


def _mean_sd(mean: object, sd: object, decimals: int) -> str:
    if _fmt(mean, decimals) == "–":
        return "–"
    return f"{_fmt(mean, decimals)} ± {_fmt(sd, decimals)}"


def _fmt_count(value: object) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return str(int(value))


def table1_display(rounded: pd.DataFrame) -> pd.DataFrame:
    """Table 1 with the seed paper's headers, as strings (Markdown and HTML)."""
    out = pd.DataFrame()
    out["Task"] = rounded["task"]
    out["Classes"] = [
        c if isinstance(c, str) and c else f"{n} vs {p}"
        for n, p, c in zip(rounded["negative"], rounded["positive"], rounded["classes"],
                           strict=True)]
    out["Training (%)"] = [_fmt(v, PERCENT_DECIMALS) for v in rounded["train_accuracy_pct"]]
    out["Validation (%)"] = [
        _fmt(v, PERCENT_DECIMALS) for v in rounded["validation_accuracy_pct"]
    ]
    out["Test (%)"] = [_fmt(v, PERCENT_DECIMALS) for v in rounded["test_accuracy_pct"]]
    out["Test 95 % CI (%)"] = [
        f"{_fmt(lo, PERCENT_DECIMALS)}–{_fmt(hi, PERCENT_DECIMALS)}"
        for lo, hi in zip(rounded["test_accuracy_ci95_low_pct"],
                          rounded["test_accuracy_ci95_high_pct"], strict=True)
    ]
    out["Balanced acc. (%)"] = [
        _fmt(v, PERCENT_DECIMALS) for v in rounded["test_balanced_accuracy_pct"]
    ]
    out["Macro-F1"] = [_fmt(v, SCORE_DECIMALS) for v in rounded["test_macro_f1"]]
    out["ROC AUC"] = [_fmt(v, SCORE_DECIMALS) for v in rounded["test_roc_auc"]]
    if rounded["test_per_class_recall"].notna().any():  # a task with more than two classes
        out["Balanced acc. 95 % CI (%)"] = _ci_texts(rounded, "test_balanced_accuracy",
                                                     "_pct", PERCENT_DECIMALS)
        out["Macro-F1 95 % CI"] = _ci_texts(rounded, "test_macro_f1", "", SCORE_DECIMALS)
        out["Per-class recall (%) (95 % CI)"] = rounded["test_per_class_recall"].fillna("–")
    if rounded["test_accuracy_fold_mean_pct"].notna().any():
        for header, name, decimals in (("Test (%)", "test_accuracy", PERCENT_DECIMALS),
                                       ("Macro-F1", "test_macro_f1", SCORE_DECIMALS),
                                       ("ROC AUC", "test_roc_auc", SCORE_DECIMALS)):
            suffix = "_pct" if name == "test_accuracy" else ""
            out[f"{header} over folds, mean ± sd"] = [
                _mean_sd(mean, sd, decimals) for mean, sd in zip(
                    rounded[f"{name}_fold_mean{suffix}"], rounded[f"{name}_fold_sd{suffix}"],
                    strict=True)
            ]
    out["In-cell saliency (%)"] = [
        _fmt(v, PERCENT_DECIMALS) for v in rounded["saliency_in_cell_share_pct"]
    ]
    for kind in ("donors", "clips"):
        out[f"{kind.capitalize()} train/val/test"] = [
            "/".join(_fmt_count(rounded.loc[i, f"{split}_{kind}"]) for split in SPLITS)
            for i in rounded.index
        ]
    out["Model"] = rounded["model"].fillna("–")
    if rounded["model"].nunique() > 1:  # several models per task: name each row's model
        out = out[["Task", "Model", *out.columns.drop(["Task", "Model"])]]
    return out


def _ci_texts(rounded: pd.DataFrame, name: str, suffix: str, decimals: int) -> list[str]:
    """``low–high`` per row; ``–`` where the row has no interval (two-class rows)."""
    return [
        "–" if _fmt(lo, decimals) == "–" else f"{_fmt(lo, decimals)}–{_fmt(hi, decimals)}"
        for lo, hi in zip(rounded[f"{name}_ci95_low{suffix}"],
                          rounded[f"{name}_ci95_high{suffix}"], strict=True)
    ]


def to_markdown(frame: pd.DataFrame) -> str:
    """A pipe table (no extra dependency); cells are used as given."""
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    lines = [header, rule]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines) + "\n"


def ablation_table(metrics_by_task: Mapping[str, Mapping]) -> pd.DataFrame:
    """Per task: test accuracy of the video model, with frames shuffled in time, single frame.

    Fractions as in ``metrics.json``; a missing ablation is NaN.
    """
    rows = []
    for task, metrics in metrics_by_task.items():
        ablations = metrics.get("ablations") or {}
        video = _number((metrics.get("accuracy") or {}).get("test"))
        shuffled = _number(ablations.get("shuffled_time_test_accuracy"))
        single = _number(ablations.get("single_frame_test_accuracy"))
        rows.append({
            "task": task,
            "model": metrics.get("model"),
            "video_test_accuracy": video,
            "shuffled_time_test_accuracy": shuffled,
            "single_frame_test_accuracy": single,
            "gain_over_shuffled": None if None in (video, shuffled) else video - shuffled,
            "gain_over_single_frame": None if None in (video, single) else video - single,
        })
    columns = [
        "task", "model", "video_test_accuracy", "shuffled_time_test_accuracy",
        "single_frame_test_accuracy", "gain_over_shuffled", "gain_over_single_frame",
    ]
    return pd.DataFrame(rows, columns=columns).astype(
        {c: float for c in columns[2:]}
    )


def prediction_checks(
    task: str, metrics: Mapping, predictions: pd.DataFrame | None,
    splits: pd.DataFrame | None,
) -> list[dict]:
    """Cross-checks a reviewer would ask for; each ``{check, ok, detail}``.

    - test accuracy in ``metrics.json`` equals the one recomputed from ``predictions.tsv``;
    - no donor is in two splits (``splits/<task>.tsv``);
    - clip counts per split in ``metrics.json`` equal those of the split table.
    """
    checks = []
    if predictions is not None:
        test = predictions[predictions["split"] == "test"]
        if len(test):
            recomputed = float((test["predicted"] == test["label"]).mean())
            reported = _number((metrics.get("accuracy") or {}).get("test"))
            ok = reported is not None and abs(recomputed - reported) < 1e-9
            checks.append({
                "task": task, "check": "test accuracy = predictions.tsv", "ok": ok,
                "detail": f"metrics {reported}, predictions {recomputed:.6g} (n={len(test)})",
            })
    if splits is not None:
        donors_per_split = splits.groupby("donor")["split"].nunique()
        shared = sorted(donors_per_split[donors_per_split > 1].index.astype(str))
        checks.append({
            "task": task, "check": "no donor in two splits", "ok": not shared,
            "detail": "shared: " + ", ".join(shared) if shared else
            f"{splits['donor'].nunique()} donors, each in one split",
        })
        counts = metrics.get("counts") or {}
        observed = splits["split"].value_counts().to_dict()
        expected = {s: (counts.get(s) or {}).get("clips") for s in SPLITS}
        if any(v is not None for v in expected.values()):
            ok = all(expected[s] in (None, observed.get(s, 0)) for s in SPLITS)
            checks.append({
                "task": task, "check": "clip counts = split table", "ok": ok,
                "detail": ", ".join(
                    f"{s}: {expected[s]} vs {observed.get(s, 0)}" for s in SPLITS
                ),
            })
    return checks


def split_audit_table(splits: pd.DataFrame) -> pd.DataFrame:
    """Per split and condition: clips, donors, sessions, samples and clips per focus."""
    grouped = splits.groupby(["split", "condition"], sort=False)
    table = grouped.agg(
        clips=("clip_id", "size"), donors=("donor", "nunique"),
        sessions=("session", "nunique"), samples=("sample", "nunique"),
    )
    focus = pd.crosstab([splits["split"], splits["condition"]], splits["focus"])
    focus.columns = [f"focus {c}" for c in focus.columns]
    table = table.join(focus).fillna(0).reset_index()
    order = {s: i for i, s in enumerate(SPLITS)}
    table["_order"] = table["split"].map(order).fillna(len(order))
    return table.sort_values(["_order", "condition"]).drop(columns="_order").reset_index(
        drop=True
    )


def confounder_separability(clips: pd.DataFrame, tasks: Sequence[Mapping]) -> pd.DataFrame:
    """How well each nuisance variable alone separates a task's classes (ROC AUC).

    A classifier that could reach high accuracy from the cell's position in the channel
    or its speed alone might be learning those instead of the cells; an AUC near 0.5
    means the variable carries no class information. ``separability`` is
    ``max(AUC, 1 - AUC)``. For a task with more than two classes the AUC is that of the
    class the variable separates best from all others (one-vs-rest).
    """
    from sklearn.metrics import roc_auc_score

    features = ["centerline_distance_um", "flight_distance_px", "velocity_mm_s"]
    rows = []
    for task in tasks:
        labels = task_labels(clips, task)
        subset = clips[labels.notna()]
        y = labels.dropna().astype(int).to_numpy()
        for feature in features:
            if feature not in subset.columns:
                continue
            x = pd.to_numeric(subset[feature], errors="coerce").to_numpy()
            keep = np.isfinite(x)
            if keep.sum() < 2 or len(np.unique(y[keep])) < 2:
                continue
            one_vs_rest = [y[keep] == k for k in np.unique(y[keep])]
            if len(one_vs_rest) == 2:  # two classes: the positive class's AUC
                one_vs_rest = one_vs_rest[1:]
            aucs = [float(roc_auc_score(target, x[keep])) for target in one_vs_rest]
            auc = max(aucs, key=lambda a: max(a, 1.0 - a))
            rows.append({
                "task": task["name"], "variable": feature, "n_clips": int(keep.sum()),
                "roc_auc": auc, "separability": max(auc, 1.0 - auc),
            })
    return pd.DataFrame(
        rows, columns=["task", "variable", "n_clips", "roc_auc", "separability"]
    )


def task_labels(clips: pd.DataFrame, task: Mapping) -> pd.Series:
    """The label of each clip's condition (its class's index; two-class form: 0 for the
    negative conditions, 1 for positive), NaN for conditions outside the task."""
    return clips["condition"].map(task_label_map(task)).astype(float)


TEXT_COLUMNS = ("sample", "donor", "condition", "focus", "QC")


def data_summary(per_sample: Sequence[Mapping]) -> pd.DataFrame:
    """One row per sample: frames, detections, tracks, tracks kept, clips, rejections.

    ``per_sample`` items hold ``sample``, ``donor``, ``condition``, ``focus``, ``frames``,
    ``detections``, ``track_status`` (status -> count, from ``<sample>_tracks.tsv``),
    ``clip_qc`` (reason -> count, from ``<sample>_qc.tsv``), ``clips`` and optionally
    ``truth_cells`` and ``qc`` (the QC verdict block: ``QC`` is the verdict, then the
    signs beyond their limits). Missing inputs are NaN.
    """
    track_reasons = sorted({r for s in per_sample for r in (s.get("track_status") or {})} - {
        "kept"})
    clip_reasons = sorted({r for s in per_sample for r in (s.get("clip_qc") or {})})
    rows = []
    for item in per_sample:
        status = item.get("track_status")
        qc = item.get("clip_qc")
        row = {key: item.get(key) for key in ("sample", "donor", "condition", "focus")}
        row["frames"] = item.get("frames")
        row["detections"] = item.get("detections")
        row["truth_cells"] = item.get("truth_cells")
        row["tracks"] = None if status is None else sum(status.values())
        row["tracks_kept"] = None if status is None else status.get("kept", 0)
        for reason in track_reasons:
            row[f"rejected: {reason}"] = None if status is None else status.get(reason, 0)
        for reason in clip_reasons:
            row[f"clip QC: {reason}"] = None if qc is None else qc.get(reason, 0)
        row["clips"] = item.get("clips")
        verdict = item.get("qc")
        row["QC"] = None if not verdict else verdict["verdict"] + "".join(
            f"; {f['sign']}" for f in verdict.get("flagged", []))
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    if frame["truth_cells"].isna().all():
        frame = frame.drop(columns="truth_cells")
    if frame["QC"].isna().all():
        frame = frame.drop(columns="QC")
    numeric = [c for c in frame.columns if c not in TEXT_COLUMNS]
    frame[numeric] = frame[numeric].astype("Float64").round().astype("Int64")
    return frame


def condition_summary(samples: pd.DataFrame, conditions: Sequence[str]) -> pd.DataFrame:
    """Sums of ``data_summary`` per condition (config order), with samples and donors."""
    if samples.empty:
        return samples
    numeric = [c for c in samples.columns if c not in TEXT_COLUMNS]
    grouped = samples.groupby("condition", sort=False)
    table = grouped[numeric].sum(min_count=1)
    if "QC" in samples:
        table["QC not ok"] = grouped["QC"].agg(
            lambda verdicts: int(sum(not str(v).startswith("ok") for v in verdicts.dropna())))
    table.insert(0, "donors", grouped["donor"].nunique())
    table.insert(0, "samples", grouped["sample"].size())
    order = [c for c in conditions if c in table.index] + [
        c for c in table.index if c not in conditions
    ]
    return table.loc[order].reset_index()


def runtime_table(benchmarks: pd.DataFrame) -> pd.DataFrame:
    """Per rule: jobs, total and longest wall time (s), total CPU time (s), peak RSS (MB)."""
    if benchmarks.empty:
        return pd.DataFrame(
            columns=["rule", "jobs", "wall_s_total", "wall_s_max", "cpu_s_total", "max_rss_mb"]
        )
    grouped = benchmarks.groupby("rule", sort=True)
    table = pd.DataFrame({
        "jobs": grouped.size(),
        "wall_s_total": grouped["s"].sum(),
        "wall_s_max": grouped["s"].max(),
        "cpu_s_total": grouped["cpu_time"].sum(min_count=1),
        "max_rss_mb": grouped["max_rss"].max(),
    }).reset_index()
    return table.sort_values("wall_s_total", ascending=False).reset_index(drop=True)


def tracking_table(evaluations: Mapping[str, Mapping]) -> pd.DataFrame:
    """One row per sample with the scalar tracking scores (IDF1, MOTA, ...)."""
    rows = []
    for sample, scores in evaluations.items():
        row = {"sample": sample}
        for key, value in scores.items():
            number = _number(value) if not isinstance(value, np.generic) else value.item()
            if number is not None:
                row[key] = number
        rows.append(row)
    frame = pd.DataFrame(rows)
    preferred = ["sample", "idf1", "mota", "motp", "recall", "precision"]
    ordered = [c for c in preferred if c in frame.columns]
    return frame[ordered + [c for c in frame.columns if c not in ordered]]


def saliency_table(
    metrics_by_task: Mapping[str, Mapping],
    extra_by_task: Mapping[str, Mapping[str, Mapping]] | None = None,
    min_enrichment: float = 1.5,
) -> pd.DataFrame:
    """Per task and model: in-cell share of the Grad-CAM mass, the cell's share of the
    clip area, their ratio, and whether the model gets a warning.

    ``warning`` is True where the maps are resolved in space and the ratio is below
    ``min_enrichment`` (the saliency sits mostly on the channel around the cell, seed
    001's shortcut); maps without spatial resolution (1 x 1 feature cells) cannot say
    where, and get ``resolved`` False and no warning.
    """
    columns = ["task", "model", "n_clips", "in_cell_share", "cell_area_share", "enrichment",
               "resolved", "warning"]
    rows = []
    for task, metrics in metrics_by_task.items():
        for model_metrics in [metrics, *(extra_by_task or {}).get(task, {}).values()]:
            saliency = model_metrics.get("saliency")
            if not saliency:
                continue
            enrichment = _number(saliency.get("enrichment"))
            resolved = bool(saliency.get("spatially_resolved"))
            rows.append({
                "task": task, "model": model_metrics.get("model"),
                "n_clips": saliency.get("n_clips"),
                "in_cell_share": _number(saliency.get("in_cell_share")),
                "cell_area_share": _number(saliency.get("cell_area_share")),
                "enrichment": enrichment, "resolved": resolved,
                "warning": bool(resolved and enrichment is not None
                                and enrichment < min_enrichment),
            })
    return pd.DataFrame(rows, columns=columns)
