"""The report's data sections: pipeline panels, example clips, confounders, splits, data
summary, tracking accuracy and provenance. Each takes the declared inputs, writes its
tables (always, empty with a header when there is nothing to show) and returns its part
of the page."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from rbcflow import provenance
from rbcflow.io.atomic import write_text_atomic
from rbcflow.qc import warning_text as qc_warning_text
from rbcflow.report import figures as fig
from rbcflow.report import html as H
from rbcflow.report import inputs, tables
from rbcflow.report.inputs import ReportInputs

SPLIT_AUDIT_COLUMNS = ["task", "split", "condition", "clips", "donors", "sessions",
                       "recordings"]
TRACKING_COLUMNS = ["sample", "condition", "idf1", "mota", "motp", "recall", "precision",
                    "id_switches", "fragmentations", "n_truth_cells", "n_tracks"]


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """A table as CSV (atomic, LF line ends)."""
    write_text_atomic(path, frame.to_csv(index=False, lineterminator="\n"))


def json_safe(value: object) -> object:
    """A JSON-ready copy: numpy scalars as Python numbers, non-finite floats as None."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def pipeline_frames(summary: pd.DataFrame, n_frames: int = 10) -> list[int]:
    """Frames spanning the passage of a typical early kept track (early: cheap to stream)."""
    kept = summary[summary["status"] == "kept"].sort_values("entry_frame")
    if kept.empty:
        return list(range(n_frames))
    early = kept.head(20)
    track = early.loc[early["n_detections"].idxmax()]
    first, last = int(track["entry_frame"]), int(track["exit_frame"])
    return sorted({int(round(f)) for f in np.linspace(first, last, min(n_frames,
                                                                      last - first + 1))})


def _pipeline_figure_maker(pipeline: dict, sheet: pd.DataFrame, config):
    """The figure function and caption of the pipeline panels (reads every input now)."""
    from rbcflow.params import resolve_chain_params
    from rbcflow.segment import foreground_at

    sample = pipeline["sample"]
    row = sheet[sheet["sample"] == sample].iloc[0]
    summary = inputs.read_track_summary(pipeline["tracks_summary"])
    if summary is None:
        raise inputs.ReportInputError(f"{pipeline['tracks_summary']}: missing")
    numbers = pipeline_frames(summary)
    frames = inputs.read_video_frames(pipeline["video"], numbers)
    middle = sorted(frames)[len(frames) // 2]
    model = inputs.read_background_model(pipeline["background"])
    params = resolve_chain_params(config, row["fps"], row["um_per_px"]).calibrated(model)
    mask = foreground_at(pipeline["video"], model, params.detect, middle)
    detections = inputs.read_detections(pipeline["tracks"], min(frames), max(frames))
    if detections is None:
        detections = pd.DataFrame(columns=["frame", "track_id", "x", "y"])
    rule = ("MOG2 foreground" if model.method == "mog2" else
            f"|difference| > {params.detect.threshold:g}, {params.detect.polarity}")
    title = f"{sample}: donor {row['donor']}, {row['condition']}, focus {row['focus']}"

    def make():
        return fig.pipeline_figure(frames, model.image_at(middle), mask, detections, rule,
                                   title)

    caption = (
        f"Recording {sample} (seed 000 Fig. 2A-C, with the tracks). A: frames "
        f"{min(frames)}-{max(frames)} superimposed (at each pixel the value farthest from "
        "the background). B: the detector's foreground pixels in the middle frame. C: frame "
        "minus background (red brighter, blue darker). D: the tracks through these frames; "
        "grey crosses: detections in no track."
    )
    return make, caption


def pipeline_section(figures, pipeline: dict | None, sheet: pd.DataFrame, config):
    section = H.Section("pipeline", "Pipeline")
    reason, make, caption = None, None, ""
    if pipeline is None:
        reason = "no recording with a video, background and tracks"
    else:
        try:
            make, caption = _pipeline_figure_maker(pipeline, sheet, config)
        except (inputs.ReportInputError, OSError, ValueError, KeyError) as exc:
            reason = f"{pipeline['sample']}: {exc}"
    figures.write("pipeline_panels", make, reason)
    section.add(figures.embed("pipeline_panels", caption))
    return section


def examples_section(figures, report_inputs: ReportInputs, clip_tables, all_clips, config):
    section = H.Section("examples", "Example clips")
    n_per_condition = int(config["report"]["example_clips"])
    if all_clips is None or all_clips.empty:
        figures.write("example_clips", None, "no clips")
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
            clip = inputs.read_clip_file_clips(report_inputs.samples[sample]["clips"],
                                               [index - offsets[sample][0]])[0]
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


def confounder_section(figures, out: Path, all_clips, task_specs):
    section = H.Section("confounders", "Confounder check")
    section.add(H.paragraph(
        "Where a cell flows (distance from the channel's centre line) and how far it travels "
        "in view (distance of flight, proportional to its speed) should not tell the classes "
        "apart; otherwise a model could learn the flow instead of the cell (seed 000 Fig. 5)."
    ))
    needed = {"centerline_distance_um", "flight_distance_px", "condition"}
    if all_clips is None or not needed <= set(all_clips.columns):
        write_csv(pd.DataFrame(columns=["task", "variable", "auc", "separability"]),
                   out / "confounders.csv")
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
    write_csv(separability, out / "confounders.csv")
    if not separability.empty:
        section.add("<h3>How well each variable alone separates the classes</h3>")
        section.add(H.paragraph(
            "ROC AUC of the variable as a score for the positive class over all clips (a "
            "task with more classes: for the class it separates best from the others); "
            "separability = max(AUC, 1 − AUC): 0.5 means no information, 1 a perfect split."
        ))
        wide = separability.pivot(index="task", columns="variable", values="separability")
        wide = wide.reindex([t["name"] for t in task_specs if t["name"] in wide.index])
        section.add(H.table(wide.reset_index()))
    return section


def splits_section(out: Path, split_tables, audits, task_specs):
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
            block += H.note(f"No split table for task {name}.")
        if name in audits:
            block += H.preformatted(json.dumps(audits[name], indent=2),
                                    summary=f"audit file {name}_audit.json")
        blocks.append(block)
    section.add(H.grid(blocks))
    frame = (pd.concat(audit_frames, ignore_index=True) if audit_frames
             else pd.DataFrame(columns=SPLIT_AUDIT_COLUMNS))
    write_csv(frame[["task"] + [c for c in frame.columns if c != "task"]],
               out / "split_audit.csv")
    return section


def _sample_record(sample, row, files, tracking_file) -> tuple[dict, dict | None]:
    meta = inputs.read_json(files["ingest_json"]) if files else None
    qc = inputs.read_json(files["qc"]) if files else None
    clip_qc = inputs.read_clip_qc(files["clips_qc"]) if files else None
    scores = inputs.read_json(tracking_file) if tracking_file else None
    record = {
        "sample": sample, "donor": str(row["donor"]), "condition": row["condition"],
        "focus": row["focus"],
        "frames": None if meta is None else meta.get("n_frames"),
        "detections": None if qc is None else qc.get("n_detections"),
        "track_status": None if qc is None else qc.get("tracks"),
        "clip_qc": None if clip_qc is None
        else clip_qc.groupby("reason")["count"].sum().to_dict(),
        "clips": None if qc is None else qc.get("n_clips"),
        "truth_cells": None if scores is None else scores.get("n_truth_cells_in_view"),
        "qc": None if qc is None else qc.get("qc"),
    }
    return record, meta


def data_section(out: Path, report_inputs: ReportInputs, sheet: pd.DataFrame, config):
    section = H.Section("data", "Data summary")
    per_sample, ingest = [], {}
    for _, row in sheet.iterrows():
        sample = row["sample"]
        record, meta = _sample_record(sample, row, report_inputs.samples.get(sample),
                                      report_inputs.tracking.get(sample))
        per_sample.append(record)
        if meta is not None:
            ingest[sample] = meta
    samples = tables.data_summary(per_sample)
    by_condition = tables.condition_summary(samples, config["conditions"])
    write_csv(samples, out / "data_summary_samples.csv")
    write_csv(by_condition, out / "data_summary_conditions.csv")
    section.add(H.paragraph(
        "Detections: blobs found in all frames; tracks: linked detections, kept or rejected "
        "(reason); clips: clips written; clip QC: the clip stage's own counts. Cells in truth "
        "(simulated data only): distinct cells the simulator put in view."
    ))
    if samples.empty:
        section.add(H.note("The sample sheet is empty."))
        return section, ingest
    absent = [c for c in ("frames", "detections", "tracks", "clips")
              if c in samples and samples[c].isna().all()]
    if absent:
        section.add(H.note("Not available for any sample: " + ", ".join(absent)
                           + " (the stage outputs are missing)."))
    warnings = [qc_warning_text(r["sample"], r["qc"]["verdict"], r["qc"]["flagged"])
                for r in per_sample if r.get("qc") and r["qc"].get("verdict") != "ok"]
    if warnings:
        # the QC stage's own warning lines, so the page and the log say the same
        section.add(H.note(f"{len(warnings)} of {len(per_sample)} recordings are not judged "
                           "ok by QC (sign, value, limit and the knob to turn):"))
        for text in warnings:
            section.add(H.note(text))
    section.add("<h3>Per condition</h3>")
    section.add(H.table(by_condition, decimals=0))
    section.add("<h3>Per recording</h3>")
    section.add(H.table(samples, decimals=0))
    return section, ingest


def tracking_section(out: Path, report_inputs: ReportInputs, sheet: pd.DataFrame):
    section = H.Section("tracking", "Tracking accuracy")
    scores = {s: loaded for s, path in report_inputs.tracking.items()
              if (loaded := inputs.read_json(path)) is not None}
    if not scores:
        write_csv(pd.DataFrame(columns=TRACKING_COLUMNS), out / "tracking_accuracy.csv")
        section.add(H.note(
            "No tracking accuracy: the recordings have no ground truth (only simulated data "
            "do) or it was not evaluated."
        ))
        return section
    frame = tables.tracking_table(scores)
    conditions = sheet.set_index("sample")["condition"].to_dict()
    frame.insert(1, "condition", [conditions.get(s, "") for s in frame["sample"]])
    write_csv(frame, out / "tracking_accuracy.csv")
    distance = next(iter(scores.values())).get("max_distance_px")
    section.add(H.paragraph(
        "Kept tracks compared with the simulator's truth (CLEAR MOT and identity metrics; a "
        f"track point matches a cell within {distance:g} px). IDF1: share of detections "
        "attributed to the right cell; MOTA: 1 − (misses + false positives + identity "
        "switches) / cells."
    ))
    shown = [c for c in TRACKING_COLUMNS if c in frame.columns]
    section.add(H.table(frame[shown]))
    section.add(H.paragraph("All scores: tracking_accuracy.csv.", "meta"))
    return section


def provenance_section(out: Path, config, ingest: dict, report_inputs: ReportInputs):
    section = H.Section("provenance", "Provenance")
    lock = report_inputs.lock_file
    record = provenance.stable_provenance(
        lock_file=str(lock) if lock else None,
        lock_sha256=provenance.sha256_file(lock) if lock and lock.is_file() else None,
        config=json_safe(dict(config)),
        data=[{"sample": s, "path": m.get("path"), "sha256": m.get("sha256"),
               "n_frames": m.get("n_frames")} for s, m in ingest.items()],
    )
    write_text_atomic(out / "provenance.json",
                      json.dumps(json_safe(record), indent=2, allow_nan=False,
                                 sort_keys=True) + "\n")
    section.add(H.key_value_table({
        "rbcflow": record["rbcflow_version"],
        "lock file": f"{lock} sha256 {record['lock_sha256']}" if lock else "not given",
        "packages": ", ".join(f"{k} {v}" for k, v in record["packages"].items()),
        "run details": "the jobs' logs (the config's logs folder); rbcflow runtimes",
    }))
    section.add("<h3>Input data</h3>")
    if ingest:
        data = pd.DataFrame(record["data"])
        data["sha256"] = [f"{h[:16]}…" if isinstance(h, str) else h for h in data["sha256"]]
        section.add(H.table(data))
        section.add(H.paragraph("Full hashes: provenance.json.", "meta"))
    else:
        section.add(H.note("No ingest records: no data hashes."))
    section.add(H.preformatted(yaml.safe_dump(json_safe(dict(config)), sort_keys=True),
                               summary="configuration (all parameters, defaults filled in)"))
    return section


SALIENCY_COLUMNS = ["task", "model", "n_clips", "in_cell_share", "cell_area_share",
                    "enrichment", "resolved", "warning"]


def _saliency_captions(metrics: dict) -> list[str]:
    captions = []
    for example in (metrics.get("saliency") or {}).get("examples", []):
        share = example.get("in_cell_share")
        shown = "–" if share is None else f"{100 * share:.0f} %"
        if "p_positive" in example:
            probability = f"p={example['p_positive']:.2f}"
        else:  # more than two classes: the predicted class and its probability
            probability = f"pred. {example['predicted']}, p={example['p_predicted']:.2f}"
        captions.append(f"label {example['label']}, {probability}\n"
                        f"on cell {shown}")
    return captions


def saliency_section(figures, out: Path, loaded: dict, config):
    """Grad-CAM examples per task, the in-cell share per task and model, and a warning
    for every model whose saliency sits mostly outside the cell."""
    section = H.Section("saliency", "Saliency")
    threshold = float(config.get("report", {}).get("min_saliency_enrichment", 1.5))
    table = tables.saliency_table(loaded["metrics"], loaded["extra_metrics"], threshold)
    write_csv(table, out / "saliency.csv")
    section.add(H.paragraph(
        "Where each model looks: Grad-CAM of the predicted class on a sample of test clips "
        "(the model that tested a clip explains it), and the share of the map's mass that "
        "lies on the cell (its outline estimated from the clip: the region departing from "
        "the clip border's grey level nearest the centre, grown by 2 px). A model that "
        "reads the cell puts more of its saliency there than the cell's share of the clip "
        "area; seed 001's first model looked at the channel instead."
    ))
    examples = {}
    for task, layers in loaded["saliency"].items():
        if task not in loaded["metrics"]:
            continue  # a task without metrics is not reported
        metrics = loaded["metrics"][task]
        share = (metrics.get("saliency") or {}).get("in_cell_share")
        label = f"{task} ({metrics.get('model')})" + (
            "" if share is None else f"\n{100 * share:.0f} % on cell")
        examples[label] = (layers, _saliency_captions(metrics))
    figures.write("saliency", lambda: fig.saliency_figure(examples),
                  None if examples else "no saliency maps (evaluate.saliency_clips: 0?)")
    section.add(figures.embed(
        "saliency",
        "Example test clips of each task's model over time (columns: frames), the "
        "Grad-CAM map over each frame (red) and the estimated cell outline (cyan); left: "
        "the task, its in-cell share, and each clip's label, P(positive) and own share.",
    ))
    if table.empty:
        section.add(H.note("No model has saliency results in its metrics.json."))
        return section
    shown = pd.DataFrame({
        "Task": table["task"], "Model": table["model"], "Clips": table["n_clips"],
        "Saliency on cell (%)": 100 * table["in_cell_share"].astype(float),
        "Cell area (%)": 100 * table["cell_area_share"].astype(float),
        "Ratio": table["enrichment"].astype(float),
    })
    section.add(H.table(shown, decimals=1))
    for _, row in table.iterrows():
        if row["warning"]:
            section.add(H.note(
                f"Warning: {row['task']} / {row['model']}: saliency sits mostly outside "
                f"the cell: {100 * row['in_cell_share']:.0f} % of the Grad-CAM mass is on "
                f"the cell, which covers {100 * row['cell_area_share']:.0f} % of the clip "
                f"(ratio {row['enrichment']:.2f} < {threshold:g}). The model may be "
                "reading the channel or background rather than the cell."
            ))
        elif not row["resolved"]:
            section.add(H.note(
                f"{row['task']} / {row['model']}: the maps have no spatial resolution "
                "(one feature cell per frame): they say when, not where; no in-cell check."
            ))
    return section
