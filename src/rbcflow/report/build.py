"""Assemble the report: read the declared inputs, write tables, figures and index.html.

Only the per-task ``metrics.json`` files are essential; every other input is optional and
its absence is stated in the page where its section would be. The page holds no time,
host or commit, so the same results give the same bytes (run-specific facts belong in the
workflow's logs; ``rbcflow runtimes`` tabulates the jobs' benchmark files).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from rbcflow import __version__, provenance
from rbcflow.io.atomic import write_text_atomic
from rbcflow.report import figures as fig
from rbcflow.report import html as H
from rbcflow.report import inputs, tables
from rbcflow.report.inputs import ReportInputs
from rbcflow.report.sections import json_safe as _json_safe
from rbcflow.report.sections import write_csv as _write_csv

log = logging.getLogger(__name__)

#: Figures always written (a placeholder stating the reason when data are missing), so a
#: workflow can declare them as outputs.
FIGURES = {
    "learning_curves": "Learning curves",
    "confusion_matrices": "Confusion matrices (test)",
    "roc_curves": "ROC curves (test)",
    "per_donor_accuracy": "Accuracy per donor",
    "pipeline_panels": "Pipeline panels",
    "example_clips": "Example clips",
    "confounder_check": "Confounder check",
    "saliency": "Grad-CAM saliency on test clips",
}
#: Tables always written next to index.html (empty, with a header, when data are missing).
TABLES = ("table1.csv", "table1.md", "table1.json", "ablations.csv", "confounders.csv",
          "split_audit.csv", "data_summary_samples.csv", "data_summary_conditions.csv",
          "tracking_accuracy.csv", "provenance.json", "saliency.csv")


def _write_json(data: object, path: Path) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


class _Figures:
    """Writes each figure (or a placeholder) once and embeds it in the page."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.missing: dict[str, str] = {}

    def write(self, name: str, make, reason_if_missing: str | None = None) -> Path:
        path = self.folder / f"{name}.png"
        if reason_if_missing is not None:
            self.missing[name] = reason_if_missing
            fig.save_figure(fig.placeholder_figure(f"{FIGURES[name]}: {reason_if_missing}"), path)
        else:
            fig.save_figure(make(), path)
        return path

    def embed(self, name: str, caption: str) -> str:
        if name in self.missing:
            return H.note(f"{FIGURES[name]}: not shown, {self.missing[name]}.")
        return H.image(self.folder / f"{name}.png", caption, FIGURES[name])


def build_report(
    config: Mapping,
    sample_sheet: pd.DataFrame,
    report_inputs: ReportInputs,
    out_dir: str | Path,
) -> Path:
    """Write Table 1, the other tables, the figures and ``index.html``; return the page.

    Parameters
    ----------
    config : the validated config (tasks, conditions, seed, ``report`` keys).
    sample_sheet : the validated sample sheet (``rbcflow.config.load_sample_sheet``).
    report_inputs : every file to read (see :class:`rbcflow.report.inputs.ReportInputs`).
    out_dir : the report folder (``results/report``).
    """
    from rbcflow.report import sections

    out = Path(out_dir)
    figures = _Figures(out / "figures")
    figures.folder.mkdir(parents=True, exist_ok=True)
    sheet = sample_sheet.reset_index(drop=True)
    task_specs = list(config["tasks"])
    loaded = _read_task_files(report_inputs, task_specs)
    clip_tables = {s: c for s, files in report_inputs.samples.items()
                   if (c := inputs.read_clip_table(files["clips"])) is not None}
    all_clips = pd.concat(clip_tables.values(), ignore_index=True) if clip_tables else None
    page_sections = [
        _table1_section(out, report_inputs, loaded),
        _ablation_section(out, loaded["metrics"]),
        _learning_section(figures, loaded["metrics"], loaded["history"]),
        _test_section(figures, loaded["metrics"], loaded["predictions"]),
        sections.saliency_section(figures, out, loaded, config),
        sections.pipeline_section(figures, report_inputs.pipeline, sheet, config),
        sections.examples_section(figures, report_inputs, clip_tables, all_clips, config),
        sections.confounder_section(figures, out, all_clips, task_specs),
        sections.splits_section(out, loaded["split"], loaded["audit"], task_specs),
    ]
    data_section, ingest = sections.data_section(out, report_inputs, sheet, config)
    page_sections += [data_section, sections.tracking_section(out, report_inputs, sheet),
                      sections.provenance_section(out, config, ingest, report_inputs)]
    meta = (f"{len(loaded['metrics'])} task(s), {len(sheet)} recording(s), "
            f"{sheet['donor'].nunique()} donor(s) · rbcflow {__version__}")
    footer = ("Generated by rbcflow report; every number is read from the stage outputs "
              "named in each section.")
    page = H.page("rbcflow report: red blood cell classification from video", meta,
                  page_sections, footer)
    index = out / "index.html"
    write_text_atomic(index, page)
    log.info("report: %s (%d KiB)", index, index.stat().st_size // 1024)
    return index


def _read_task_files(report_inputs: ReportInputs, task_specs) -> dict[str, dict]:
    """Each task's metrics, history, predictions, split and audit (absent ones left out)."""
    readers = {"metrics": inputs.read_json, "history": inputs.read_history,
               "predictions": inputs.read_predictions, "split": inputs.read_split,
               "audit": inputs.read_json, "saliency": inputs.read_saliency}
    loaded: dict[str, dict] = {kind: {} for kind in readers}
    loaded["missing"] = []
    # the other models of train.models: task -> model -> metrics / saliency examples
    loaded["extra_metrics"], loaded["extra_saliency"] = {}, {}
    for task in task_specs:
        name = task["name"]
        files = report_inputs.tasks.get(name, {})
        for kind, read in readers.items():
            path = files.get(kind)
            value = read(path) if path is not None else None
            if value is not None:
                loaded[kind][name] = value
        if name not in loaded["metrics"]:
            loaded["missing"].append(name)
            continue
        extra_files = report_inputs.extra_models.get(name, {})
        listed = inputs.read_models_table(files["models"]) if "models" in files else None
        order = list(extra_files) if listed is None else [
            m for m in listed["model"].iloc[1:] if m in extra_files]
        for model in order:
            model_files = extra_files[model]
            metrics = inputs.read_json(model_files["metrics"])
            if metrics is None:
                loaded["missing"].append(f"{name}/{model}")
                continue
            loaded["extra_metrics"].setdefault(name, {})[model] = metrics
            layers = inputs.read_saliency(model_files["saliency"])
            if layers is not None:
                loaded["extra_saliency"].setdefault(name, {})[model] = layers
    return loaded


# --- sections ----------------------------------------------------------------------------


def _table1_section(out, report_inputs, loaded):
    section = H.Section("table1", "Table 1")
    metrics, missing_tasks = loaded["metrics"], loaded["missing"]
    predictions, split_tables = loaded["predictions"], loaded["split"]
    extra = loaded["extra_metrics"]
    rows = tables.table1_exact(metrics, extra)
    rounded = tables.table1_rounded(rows)
    sources = {}
    for task in metrics:
        path = report_inputs.tasks[task]["metrics"]
        sources[task] = {"path": str(path), "sha256": provenance.sha256_file(path)}
        for model in extra.get(task, {}):
            path = report_inputs.extra_models[task][model]["metrics"]
            sources[f"{task}/{model}"] = {"path": str(path),
                                          "sha256": provenance.sha256_file(path)}
    _write_json(
        {
            "description": "Table 1; values copied from each task's metrics.json "
                           "(fractions, not percent)",
            "columns": tables.TABLE1_FIELDS,
            "rows": _json_safe(rows),
            "sources": sources,
        },
        out / "table1.json",
    )
    _write_csv(rounded, out / "table1.csv")
    display = tables.table1_display(rounded)
    write_text_atomic(out / "table1.md", tables.to_markdown(display))

    section.add(H.paragraph(
        "Accuracy of each task's classifier on its training, validation and test clips, in "
        "percent, as in seed 000's Table 1; with the test balanced accuracy, macro-F1, ROC "
        "AUC and the 95 % interval of test accuracy from resampling donors (clips of one "
        "donor are not independent). Splits are by donor: no donor is in two splits. With "
        "several models per task (train.models) each has its row, all trained and tested "
        "on the task's split. With cross-validation the test figures are pooled over the "
        "out-of-fold predictions, and the mean ± sd over folds (sample sd) of each fold's "
        "model on its own test donors stands beside them. In-cell saliency: the share of "
        "the Grad-CAM mass on the cell (see Saliency)."
    ))
    if any(r.get("test_per_class_recall") for r in rows):
        section.add(H.paragraph(
            "A task with more than two classes is predicted by the most probable class; its "
            "row adds the donor-bootstrap 95 % intervals of balanced accuracy and macro-F1 and "
            "each class's recall with its interval (replicates lacking a class are left out "
            "of these), and its ROC AUC is the macro average of one-vs-rest AUCs. The "
            "confusion matrices are under Test results."
        ))
    if missing_tasks:
        section.add(H.note(
            f"No metrics.json for task(s) {', '.join(missing_tasks)}: not in the table."
        ))
    models = list(dict.fromkeys(str(r["model"]) for r in rows if r["model"]))
    if len(models) == 1:
        section.add(H.paragraph(f"Model: {models[0]}."))
        display = display.drop(columns="Model")
    if rows:
        section.add(H.table(display, css_class="table1"))
    else:
        section.add(H.note("No task has a metrics.json yet: there is no Table 1."))

    checks = []
    for task, task_metrics in metrics.items():
        checks += tables.prediction_checks(
            task, task_metrics, predictions.get(task), split_tables.get(task)
        )
    if checks:
        frame = pd.DataFrame(checks)
        failed = frame[~frame["ok"]]
        wide = frame.pivot(index="task", columns="check", values="ok").reindex(
            list(dict.fromkeys(frame["task"])))
        shown = wide.map(lambda ok: "–" if pd.isna(ok) else H.badge(bool(ok))).reset_index()
        section.add("<h3>Consistency checks</h3>")
        section.add(H.table(shown, raw_html_columns=list(wide.columns)))
        for _, row in failed.iterrows():
            section.add(H.note(f"{row['task']}: {row['check']} failed ({row['detail']})."))
    return section


def _ablation_section(out, metrics):
    section = H.Section("ablations", "Ablations")
    ablations = tables.ablation_table(metrics)
    _write_csv(ablations, out / "ablations.csv")
    section.add(H.paragraph(
        "Test accuracy of the video model, of the same model with the frames of every test "
        "clip shuffled in time (what motion contributes), and of a single-frame baseline "
        "(what one image of the cell contributes)."
    ))
    if ablations.empty:
        section.add(H.note("No metrics: no ablations."))
        return section
    shown = pd.DataFrame({
        "Task": ablations["task"],
        "Video model (%)": 100 * ablations["video_test_accuracy"],
        "Frames shuffled (%)": 100 * ablations["shuffled_time_test_accuracy"],
        "Single frame (%)": 100 * ablations["single_frame_test_accuracy"],
        "Gain over shuffled (points)": 100 * ablations["gain_over_shuffled"],
        "Gain over single frame (points)": 100 * ablations["gain_over_single_frame"],
    })
    section.add(H.table(shown, decimals=1))
    if ablations[["shuffled_time_test_accuracy", "single_frame_test_accuracy"]].isna().any(
            axis=None):
        section.add(H.note("Some ablations are missing from metrics.json (shown as –); "
                           "set evaluate.ablations: true to compute them."))
    return section


def _learning_section(figures, metrics, histories):
    section = H.Section("learning", "Learning curves")
    histories = {t: h for t, h in histories.items() if t in metrics}
    best = {t: (metrics[t].get("training") or {}).get("best_epoch") for t in histories}
    reason = None if histories else "no task has a history.csv"
    figures.write("learning_curves", lambda: fig.learning_curves_figure(histories, best),
                  reason)
    section.add(figures.embed(
        "learning_curves",
        "Accuracy (top) and loss (bottom) on training and validation clips per epoch, one "
        "column per task (seed 000 Fig. 3A-D). Dashed line: the epoch whose weights were "
        "kept.",
    ))
    return section


def _test_section(figures, metrics, predictions):
    section = H.Section("test", "Test results")
    has_cm = any((m.get("test") or {}).get("confusion_matrix") for m in metrics.values())
    figures.write("confusion_matrices", lambda: fig.confusion_matrices_figure(metrics),
                  None if has_cm else "no confusion matrix in metrics.json")
    section.add(figures.embed(
        "confusion_matrices",
        "Test clips by true and predicted class; cell colour and percentage: share of the "
        "true class.",
    ))
    curves = {}
    for task, task_metrics in metrics.items():
        test = task_metrics.get("test") or {}
        roc = test.get("roc_curve") or {}
        if roc.get("fpr") and roc.get("tpr"):
            curves[task] = (np.asarray(roc["fpr"]), np.asarray(roc["tpr"]), test.get("roc_auc"))

    figures.write("roc_curves", lambda: fig.roc_curves_figure(curves),
                  None if curves else "no ROC curve in metrics.json")
    section.add(figures.embed(
        "roc_curves", "ROC curves on the test clips; AUC as reported in metrics.json."
    ))
    per_donor = {}
    for task, task_metrics in metrics.items():
        if task_metrics.get("per_donor"):
            per_donor[task] = pd.DataFrame(task_metrics["per_donor"]).astype({"donor": str})
        elif task in predictions:
            frame = predictions[task].assign(correct=lambda p: p["predicted"] == p["label"])
            per_donor[task] = (
                frame.groupby(["donor", "split"])
                .agg(n_clips=("clip_id", "size"), accuracy=("correct", "mean"))
                .reset_index().astype({"donor": str})
            )
    figures.write("per_donor_accuracy", lambda: fig.per_donor_figure(per_donor),
                  None if per_donor else "no per-donor results")
    section.add(figures.embed(
        "per_donor_accuracy",
        "Accuracy on each donor's clips, coloured by the split the donor belongs to; the "
        "number above a bar is the donor's clip count. A model that works for some donors "
        "only shows here, not in the pooled accuracy.",
    ))
    return section
