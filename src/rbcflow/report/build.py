"""Assemble the report: read every stage's outputs, write tables, figures and index.html.

Only the per-task ``metrics.json`` files are essential; every other input is optional and
its absence is stated in the page where its section would be.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from rbcflow import provenance
from rbcflow.io.atomic import write_text_atomic
from rbcflow.report import figures as fig
from rbcflow.report import html as H
from rbcflow.report import inputs, tables

log = logging.getLogger(__name__)

REPORT_DEFAULTS = {"pipeline_sample": "", "example_clips": 4, "truth_max_distance_px": 10.0}

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
}


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    write_text_atomic(path, frame.to_csv(index=False, lineterminator="\n"))


def _write_json(data: object, path: Path) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def _json_safe(value: object) -> object:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


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
    results_dir: str | Path,
    config: Mapping,
    sample_sheet: pd.DataFrame,
    out_dir: str | Path,
    tracking_eval: Mapping[str, Mapping] | None = None,
    *,
    detect_gpu: bool = True,
    lock_file: str | Path | None = None,
    dvc_lock: str | Path | None = None,
) -> Path:
    """Write Table 1, the ablation table, figures and ``index.html``; return the page's path.

    Parameters
    ----------
    results_dir : the workflow's results folder (``models/``, ``splits/``, ``tracks/``, ...).
    config : the validated config (tasks, conditions, seed, detect and ``report`` keys).
    sample_sheet : the validated sample sheet (``rbcflow.config.load_sample_sheet``).
    out_dir : the report folder (``results/report``).
    tracking_eval : sample -> tracking scores; when None, they are computed with
        ``rbcflow.trackeval.evaluate_tracking`` for samples whose sheet row has a truth file.
    detect_gpu : ask TensorFlow (imported only then) whether it sees a GPU.
    lock_file, dvc_lock : ``requirements/lock.txt`` and ``dvc.lock`` (default: in the
        current folder, where Snakemake runs).
    """
    results, out = Path(results_dir), Path(out_dir)
    figure_dir = out / "figures"
    figure_dir.mkdir(parents=True, exist_ok=True)
    settings = REPORT_DEFAULTS | dict(config.get("report") or {})
    task_specs = list(config["tasks"])
    sheet = sample_sheet.reset_index(drop=True)
    figures = _Figures(figure_dir)

    metrics: dict[str, dict] = {}
    missing_tasks = []
    for task in task_specs:
        loaded = inputs.read_metrics(results, task["name"])
        if loaded is None:
            missing_tasks.append(task["name"])
        else:
            metrics[task["name"]] = loaded
    histories = {t: h for t in metrics if (h := inputs.read_history(results, t)) is not None}
    predictions = {
        t: p for t in metrics if (p := inputs.read_predictions(results, t)) is not None
    }
    split_tables, audits = {}, {}
    for task in task_specs:
        split, audit = inputs.read_split(results, task["name"])
        if split is not None:
            split_tables[task["name"]] = split
        if audit is not None:
            audits[task["name"]] = audit

    clip_tables = {
        s: c for s in sheet["sample"] if (c := inputs.read_clip_table(results, s)) is not None
    }
    all_clips = pd.concat(clip_tables.values(), ignore_index=True) if clip_tables else None

    sections = [
        _table1_section(results, out, metrics, missing_tasks, predictions, split_tables),
        _ablation_section(out, metrics),
        _learning_section(figures, metrics, histories),
        _test_section(figures, metrics, predictions),
        _pipeline_section(figures, results, sheet, config, settings),
        _examples_section(figures, results, clip_tables, all_clips, config, settings),
        _confounder_section(figures, out, all_clips, task_specs),
        _splits_section(out, split_tables, audits, task_specs),
    ]
    summary_section, ingest = _data_section(out, results, sheet, config)
    sections.append(summary_section)
    sections.append(_tracking_section(out, results, sheet, tracking_eval, ingest, settings))
    prov_section, record = _provenance_section(
        out, results, config, ingest, detect_gpu, lock_file, dvc_lock
    )
    sections.append(prov_section)

    meta = (
        f"{len(metrics)} task(s), {len(sheet)} recording(s), "
        f"{sheet['donor'].nunique()} donor(s) · code {record['git_revision'] or 'unknown'} · "
        f"generated {record['created']}"
    )
    footer = (
        "Generated by rbcflow report from the files under "
        f"{results}; every number is read from the stage outputs named in each section."
    )
    page = H.page("rbcflow report: red blood cell classification from video", meta,
                  sections, footer)
    index = out / "index.html"
    write_text_atomic(index, page)
    log.info("report: %s (%d KiB)", index, index.stat().st_size // 1024)
    return index


# --- sections ----------------------------------------------------------------------------


def _table1_section(results, out, metrics, missing_tasks, predictions, split_tables):
    section = H.Section("table1", "Table 1")
    rows = tables.table1_exact(metrics)
    rounded = tables.table1_rounded(rows)
    sources = {
        task: {
            "path": str(results / "models" / task / "metrics.json"),
            "sha256": provenance.sha256_file(results / "models" / task / "metrics.json"),
        }
        for task in metrics
    }
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
        "donor are not independent). Splits are by donor: no donor is in two splits."
    ))
    if missing_tasks:
        section.add(H.note(
            f"No metrics.json for task(s) {', '.join(missing_tasks)}: not in the table."
        ))
    models = sorted({str(r["model"]) for r in rows if r["model"]})
    if models:
        section.add(H.paragraph(f"Model: {', '.join(models)}."))
    if rows:
        section.add(H.table(display.drop(columns="Model"), css_class="table1"))
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
    best = {t: (metrics[t].get("training") or {}).get("best_epoch") for t in histories}
    reason = None if histories else "no history.csv found under results/models/<task>/"
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
        elif task in predictions:
            from sklearn.metrics import roc_curve

            rows = predictions[task][predictions[task]["split"] == "test"]
            if rows["label"].nunique() == 2:
                fpr, tpr, _ = roc_curve(rows["label"], rows["p_positive"])
                curves[task] = (fpr, tpr, test.get("roc_auc"))
    figures.write("roc_curves", lambda: fig.roc_curves_figure(curves),
                  None if curves else "no ROC curve in metrics.json nor test predictions")
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


def _pick_pipeline_sample(results: Path, sheet: pd.DataFrame, wanted: str) -> str | None:
    candidates = [wanted] if wanted else list(sheet["sample"])
    for sample in candidates:
        row = sheet[sheet["sample"] == sample]
        if row.empty:
            continue
        if (Path(row["path"].iloc[0]).exists()
                and (results / "background" / f"{sample}.npz").is_file()
                and (results / "tracks" / f"{sample}_tracks.tsv").is_file()):
            return sample
    return None


def _pipeline_frames(summary: pd.DataFrame, n_frames: int = 10) -> list[int]:
    """Frames spanning the passage of a typical early kept track (early: cheap to stream)."""
    kept = summary[summary["status"] == "kept"].sort_values("entry_frame")
    if kept.empty:
        return list(range(n_frames))
    early = kept.head(20)
    track = early.loc[early["n_detections"].idxmax()]
    first, last = int(track["entry_frame"]), int(track["exit_frame"])
    return sorted({int(round(f)) for f in np.linspace(first, last, min(n_frames,
                                                                      last - first + 1))})


def _pipeline_section(figures, results, sheet, config, settings):
    section = H.Section("pipeline", "Pipeline")
    sample = _pick_pipeline_sample(results, sheet, settings["pipeline_sample"])
    reason, make = None, None
    caption = ""
    if sample is None:
        reason = ("no sample with its video, background (.npz) and track summary"
                  + (f" (asked for {settings['pipeline_sample']!r})"
                     if settings["pipeline_sample"] else ""))
    else:
        try:
            row = sheet[sheet["sample"] == sample].iloc[0]
            summary = inputs.read_track_summary(results, sample)
            numbers = _pipeline_frames(summary)
            frames = inputs.read_video_frames(row["path"], numbers)
            images, starts = inputs.read_background(results, sample)
            background = inputs.background_for_frame(images, starts, sorted(frames)[len(frames)
                                                                                  // 2])
            detections = inputs.read_detections(results, sample, min(frames), max(frames))
            if detections is None:
                detections = pd.DataFrame(columns=["frame", "track_id", "x", "y"])
            detect = config.get("detect") or {}
            title = (f"{sample}: donor {row['donor']}, {row['condition']}, focus {row['focus']}")

            def make():
                return fig.pipeline_figure(
                    frames, background, detections, float(detect.get("threshold", 6.0)),
                    str(detect.get("polarity", "absolute")), title,
                )

            caption = (
                f"Recording {sample} (seed 000 Fig. 2A-C, with the tracks). A: frames "
                f"{min(frames)}-{max(frames)} superimposed (at each pixel the value farthest "
                "from the background). B: pixels whose difference to the background exceeds "
                "the detection threshold. C: frame minus background (red brighter, blue "
                "darker). D: the tracks through these frames; grey crosses: detections in no "
                "track."
            )
        except (inputs.ReportInputError, OSError, ValueError, KeyError) as exc:
            reason = f"{sample}: {exc}"
    figures.write("pipeline_panels", make, reason)
    section.add(figures.embed("pipeline_panels", caption))
    return section


def _examples_section(figures, results, clip_tables, all_clips, config, settings):
    section = H.Section("examples", "Example clips")
    n_per_condition = int(settings["example_clips"])
    if all_clips is None or all_clips.empty:
        figures.write("example_clips", None, "no clip files under results/clips/")
        section.add(figures.embed("example_clips", ""))
        return section
    rng = np.random.default_rng(int(config.get("seed", 0)))
    offsets, start = {}, 0
    for sample, table in clip_tables.items():
        offsets[sample] = (start, start + len(table))
        start += len(table)
    conditions = [c for c in config["conditions"] if c in set(all_clips["condition"])]
    examples, labels = {}, {}
    for condition in conditions:
        rows = np.flatnonzero(all_clips["condition"].to_numpy() == condition)
        chosen = np.sort(rng.choice(rows, size=min(n_per_condition, rows.size), replace=False))
        items = []
        for index in chosen:
            sample = next(s for s, (a, b) in offsets.items() if a <= index < b)
            clip = inputs.read_clip_file_clips(results, sample, [index - offsets[sample][0]])[0]
            record = all_clips.iloc[index]
            items.append((clip, f"{record['clip_id']}\n{record['velocity_mm_s']:.2f} mm/s"))
        examples[condition] = items
        velocity = pd.to_numeric(all_clips.iloc[rows]["velocity_mm_s"], errors="coerce")
        labels[condition] = (
            f"{condition}\nv = {velocity.mean():.2f} ± {velocity.std(ddof=1):.2f} mm/s\n"
            f"({rows.size} clips)"
        )
    figures.write("example_clips", lambda: fig.example_clips_figure(examples, labels))
    section.add(figures.embed(
        "example_clips",
        f"{n_per_condition} clips per condition drawn at random (seed {config.get('seed', 0)}), "
        "each shown as its frames superimposed (seed 000 Fig. 4); row labels: mean ± standard "
        "deviation of cell velocity over all clips of the condition.",
    ))
    return section


def _confounder_section(figures, out, all_clips, task_specs):
    section = H.Section("confounders", "Confounder check")
    section.add(H.paragraph(
        "Where a cell flows (distance from the channel's centre line) and how far it travels "
        "in view (distance of flight, proportional to its speed) should not tell the classes "
        "apart; otherwise a model could learn the flow instead of the cell (seed 000 Fig. 5)."
    ))
    needed = {"centerline_distance_um", "flight_distance_px", "condition"}
    if all_clips is None or not needed <= set(all_clips.columns):
        figures.write("confounder_check", None, "no clip tables")
        section.add(figures.embed("confounder_check", ""))
        return section
    figures.write("confounder_check", lambda: fig.confounder_figure(all_clips, task_specs))
    section.add(figures.embed(
        "confounder_check",
        "Every clip of each task's conditions: distance from the channel centre line against "
        "distance of flight, by class.",
    ))
    separability = tables.confounder_separability(all_clips, task_specs)
    _write_csv(separability, out / "confounders.csv")
    if not separability.empty:
        section.add("<h3>How well each variable alone separates the classes</h3>")
        section.add(H.paragraph(
            "ROC AUC of the variable as a score for the positive class over all clips; "
            "separability = max(AUC, 1 − AUC): 0.5 means no information, 1 a perfect split."
        ))
        wide = separability.pivot(index="task", columns="variable", values="separability")
        wide = wide.reindex([t["name"] for t in task_specs if t["name"] in wide.index])
        section.add(H.table(wide.reset_index()))
    return section


def _splits_section(out, split_tables, audits, task_specs):
    section = H.Section("splits", "Splits")
    section.add(H.paragraph(
        "Clips, donors, sessions and recordings per split and condition, and clips per focus "
        "(a classifier must not be able to use focus or recording day as a shortcut)."
    ))
    audit_frames, blocks = [], []
    for task in task_specs:
        name = task["name"]
        block = f"<h3>{H.esc(name)}</h3>"
        if name in split_tables:
            audit = tables.split_audit_table(split_tables[name])
            block += H.table(audit, decimals=0)
            audit_frames.append(audit.assign(task=name))
        else:
            block += H.note(f"No results/splits/{name}.tsv.")
        if name in audits:
            block += H.preformatted(json.dumps(audits[name], indent=2),
                                    summary=f"audit file {name}_audit.json")
        blocks.append(block)
    section.add(H.grid(blocks))
    if audit_frames:
        frame = pd.concat(audit_frames, ignore_index=True)
        _write_csv(frame[["task"] + [c for c in frame.columns if c != "task"]],
                   out / "split_audit.csv")
    return section


def _data_section(out, results, sheet, config):
    section = H.Section("data", "Data summary")
    per_sample, ingest = [], {}
    for _, row in sheet.iterrows():
        sample = row["sample"]
        meta = inputs.read_json(results / "ingest" / f"{sample}.json")
        if meta is not None:
            ingest[sample] = meta
        summary = inputs.read_track_summary(results, sample)
        qc = inputs.read_clip_qc(results, sample)
        clips = inputs.read_clip_table(results, sample)
        truth_cells = None
        if "truth" in sheet.columns and row.get("truth"):
            truth_path = Path(row["truth"])
            if truth_path.is_file():
                truth_cells = int(pd.read_csv(truth_path, sep="\t", usecols=["cell_id"])
                                  ["cell_id"].nunique())
        per_sample.append({
            "sample": sample, "donor": str(row["donor"]), "condition": row["condition"],
            "focus": row["focus"],
            "frames": None if meta is None else meta.get("n_frames"),
            "detections": inputs.count_detections(results, sample),
            "track_status": None if summary is None
            else summary["status"].value_counts().to_dict(),
            "clip_qc": None if qc is None
            else qc.groupby("reason")["count"].sum().to_dict(),
            "clips": None if clips is None else len(clips),
            "truth_cells": truth_cells,
        })
    samples = tables.data_summary(per_sample)
    by_condition = tables.condition_summary(samples, config["conditions"])
    section.add(H.paragraph(
        "Detections: blobs found in all frames; tracks: linked detections, kept or rejected "
        "(reason); clips: clips written; clip QC: the clip stage's own counts. Cells in truth "
        "(simulated data only): distinct cells the simulator put in view."
    ))
    if samples.empty:
        section.add(H.note("The sample sheet is empty."))
        return section, ingest
    _write_csv(samples, out / "data_summary_samples.csv")
    _write_csv(by_condition, out / "data_summary_conditions.csv")
    absent = [c for c in ("frames", "detections", "tracks", "clips")
              if c in samples and samples[c].isna().all()]
    if absent:
        section.add(H.note("Not available for any sample: " + ", ".join(absent)
                           + " (the stage outputs are missing)."))
    section.add("<h3>Per condition</h3>")
    section.add(H.table(by_condition, decimals=0))
    section.add("<h3>Per recording</h3>")
    section.add(H.table(samples, decimals=0))
    return section, ingest


def _tracking_scores(results, sheet, ingest, max_distance):
    try:
        from rbcflow.trackeval import evaluate_tracking
    except ImportError:
        return {}
    scores = {}
    if "truth" not in sheet.columns:
        return scores
    for _, row in sheet.iterrows():
        sample = row["sample"]
        truth = inputs.read_truth(row.get("truth") or "")
        tracks_path = results / "tracks" / f"{sample}.parquet"
        if truth is None or not tracks_path.is_file():
            continue
        summary = inputs.read_track_summary(results, sample)
        kept = None if summary is None else summary.loc[summary["status"] == "kept", "track_id"]
        meta = ingest.get(sample) or {}
        size = (meta["width"], meta["height"]) if meta.get("width") and meta.get(
            "height") else None
        tracks = pd.read_parquet(tracks_path, columns=["frame", "track_id", "x", "y"])
        scores[sample] = evaluate_tracking(
            tracks, truth, max_distance, frame_size=size,
            track_ids=None if kept is None else kept.to_numpy(),
        )
    return scores


def _tracking_section(out, results, sheet, tracking_eval, ingest, settings):
    section = H.Section("tracking", "Tracking accuracy")
    scores = (dict(tracking_eval) if tracking_eval is not None
              else _tracking_scores(results, sheet, ingest,
                                    float(settings["truth_max_distance_px"])))
    if not scores:
        section.add(H.note(
            "No tracking accuracy: the recordings have no ground truth (only simulated data "
            "do) or their tracks are missing."
        ))
        return section
    frame = tables.tracking_table(scores)
    conditions = sheet.set_index("sample")["condition"].to_dict()
    frame.insert(1, "condition", [conditions.get(s, "") for s in frame["sample"]])
    _write_csv(frame, out / "tracking_accuracy.csv")
    section.add(H.paragraph(
        "Kept tracks compared with the simulator's truth (CLEAR MOT and identity metrics; a "
        f"track point matches a cell within {settings['truth_max_distance_px']:g} px). IDF1: "
        "share of detections attributed to the right cell; MOTA: 1 − (misses + false "
        "positives + identity switches) / cells."
    ))
    shown = [c for c in ("sample", "condition", "idf1", "mota", "motp", "recall", "precision",
                         "id_switches", "fragmentations", "n_truth_cells", "n_tracks")
             if c in frame.columns]
    section.add(H.table(frame[shown]))
    section.add(H.paragraph("All scores: tracking_accuracy.csv.", "meta"))
    return section


def _gpus() -> list[str] | None:
    try:
        import tensorflow as tf
    except ImportError:
        return None
    return [device.name for device in tf.config.list_physical_devices("GPU")]


def _find(path: str | Path | None, name: str) -> Path | None:
    if path is not None:
        return Path(path) if Path(path).is_file() else None
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (root / name).is_file():
            return root / name
    return None


def _provenance_section(out, results, config, ingest, detect_gpu, lock_file, dvc_lock):
    section = H.Section("provenance", "Provenance")
    lock = _find(lock_file, "requirements/lock.txt")
    dvc = _find(dvc_lock, "dvc.lock")
    hardware = provenance.hardware()
    if detect_gpu:
        gpus = _gpus()
        hardware["gpus"] = "TensorFlow not installed" if gpus is None else (
            ", ".join(gpus) or "none seen by TensorFlow")
    record = provenance.provenance_record(
        lock_file=str(lock) if lock else None,
        lock_sha256=provenance.sha256_file(lock) if lock else None,
        hardware=hardware,
        config=_json_safe(dict(config)),
        data=[{"sample": s, "path": m.get("path"), "sha256": m.get("sha256"),
               "n_frames": m.get("n_frames")} for s, m in ingest.items()],
        dvc_lock=inputs.read_dvc_lock(dvc) if dvc else [],
    )
    runtimes = tables.runtime_table(inputs.read_benchmarks(results))
    record["runtimes"] = _json_safe(runtimes.to_dict(orient="records"))
    _write_json(_json_safe(record), out / "provenance.json")
    _write_csv(runtimes, out / "runtimes.csv")

    section.add(H.key_value_table({
        "code version (git)": record["git_revision"] or "unknown (not a git checkout)",
        "rbcflow": record["rbcflow_version"],
        "generated (UTC)": record["created"],
        "lock file": f"{lock} sha256 {record['lock_sha256']}" if lock else "not found",
        **{f"hardware: {k}": v for k, v in hardware.items()},
        "packages": ", ".join(f"{k} {v}" for k, v in record["packages"].items()),
    }))
    section.add("<h3>Runtimes per stage</h3>")
    if runtimes.empty:
        section.add(H.note("No Snakemake benchmark files under results/benchmarks/: no "
                           "runtimes (they exist after a workflow run)."))
    else:
        shown = runtimes.rename(columns={
            "rule": "stage (rule)", "jobs": "jobs", "wall_s_total": "wall time total (s)",
            "wall_s_max": "longest job (s)", "cpu_s_total": "CPU time total (s)",
            "max_rss_mb": "peak memory (MB)"})
        section.add(H.table(shown, decimals=1))
    section.add("<h3>Input data</h3>")
    if ingest:
        data = pd.DataFrame(record["data"])
        data["sha256"] = [f"{h[:16]}…" if isinstance(h, str) else h for h in data["sha256"]]
        section.add(H.table(data))
        section.add(H.paragraph("Full hashes: provenance.json.", "meta"))
    else:
        section.add(H.note("No ingest records (results/ingest/*.json): no data hashes."))
    if record["dvc_lock"]:
        section.add(H.preformatted(
            "\n".join(f"{e['md5']}  {e['path']}  ({e['stage']})" for e in record["dvc_lock"]),
            summary=f"hashes recorded in {dvc}",
        ))
    section.add(H.preformatted(yaml.safe_dump(_json_safe(dict(config)), sort_keys=False),
                               summary="configuration (all parameters, defaults filled in)"))
    return section, record

