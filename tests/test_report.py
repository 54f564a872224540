"""The report: Table 1 equals the metrics files, the page is self-contained, and missing
optional inputs are stated instead of breaking the report."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_fixtures import QC_SUSPECT_SAMPLE, make_results, write_benchmark

from rbcflow.layout import SAMPLE_FILES
from rbcflow.provenance import sha256_file
from rbcflow.report import FIGURES, TABLES, ReportInputs, build_report, inputs, tables
from rbcflow.report import figures as fig


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A fixture results tree and the report built from it (built once: ~6 s)."""
    root = tmp_path_factory.mktemp("report")
    data = make_results(root)
    out = data["results"] / "report"
    data["index"] = build_report(data["config"], data["sheet"], data["inputs"], out)
    data["out"] = out
    return data


def _copy(built, tmp_path, without=()) -> tuple[Path, ReportInputs]:
    """A copy of the results (less the report and the ``without`` patterns) and its inputs."""
    results = tmp_path / "results"
    shutil.copytree(built["results"], results,
                    ignore=shutil.ignore_patterns("report", *without))
    found = ReportInputs.from_results(results, built["sheet"],
                                      [t["name"] for t in built["config"]["tasks"]],
                                      lock_file=built["lock_file"])
    return results, found


def _metrics(data, task):
    return json.loads((data["results"] / "models" / task / "metrics.json").read_text())


def test_table1_json_equals_metrics_exactly(built):
    table = json.loads((built["out"] / "table1.json").read_text())
    assert [row["task"] for row in table["rows"]] == ["DA", "FA", "GA", "Mix"]
    for row in table["rows"]:
        m = _metrics(built, row["task"])
        for split in ("train", "validation", "test"):
            assert row[f"{split}_accuracy"] == m["accuracy"][split]
            assert row[f"{split}_donors"] == m["counts"][split]["donors"]
            assert row[f"{split}_clips"] == m["counts"][split]["clips"]
        assert row["test_balanced_accuracy"] == m["test"]["balanced_accuracy"]
        assert row["test_macro_f1"] == m["test"]["macro_f1"]
        assert row["test_roc_auc"] == m["test"]["roc_auc"]
        assert [row["test_accuracy_ci95_low"], row["test_accuracy_ci95_high"]] == \
            m["test"]["accuracy_ci95"]
        assert table["sources"][row["task"]]["sha256"]


def test_table1_csv_and_markdown_are_the_metrics_in_percent(built):
    csv = pd.read_csv(built["out"] / "table1.csv")
    md = (built["out"] / "table1.md").read_text()
    assert list(csv["task"]) == ["DA", "FA", "GA", "Mix"]
    for _, row in csv.iterrows():
        m = _metrics(built, row["task"])
        for split in ("train", "validation", "test"):
            # rounded to one decimal of a percent: within half a unit of that decimal
            assert abs(row[f"{split}_accuracy_pct"] - 100 * m["accuracy"][split]) <= 0.05 + 1e-9
            assert row[f"{split}_clips"] == m["counts"][split]["clips"]
        assert abs(row["test_roc_auc"] - m["test"]["roc_auc"]) <= 0.0005 + 1e-12
        line = next(x for x in md.splitlines() if x.startswith(f"| {row['task']} |"))
        assert f"| {100 * m['accuracy']['test']:.1f} |" in line


def test_seed_table1_values_render_as_in_the_paper(tmp_path):
    """Seed 000's Table 1 (DA 99.5 / 99 / 98, ...) fed in as metrics comes out unchanged."""
    paper = {"DA": (0.995, 0.99, 0.98), "FA": (1.0, 0.89, 0.93), "GA": (1.0, 0.89, 0.93),
             "Mix": (0.985, 0.88, 0.87)}
    metrics = {t: {"task": t, "negative": ["native"], "positive": [t],
                   "accuracy": dict(zip(("train", "validation", "test"), v, strict=True))}
               for t, v in paper.items()}
    rounded = tables.table1_rounded(tables.table1_exact(metrics))
    md = tables.to_markdown(tables.table1_display(rounded))
    assert "| DA | native vs DA | 99.5 | 99.0 | 98.0 |" in md
    assert "| Mix | native vs Mix | 98.5 | 88.0 | 87.0 |" in md
    assert rounded["test_macro_f1"].isna().all()  # absent, not invented


def test_ablations_csv_equals_metrics(built):
    ablations = pd.read_csv(built["out"] / "ablations.csv")
    for _, row in ablations.iterrows():
        m = _metrics(built, row["task"])
        assert row["video_test_accuracy"] == m["accuracy"]["test"]
        assert row["shuffled_time_test_accuracy"] == \
            m["ablations"]["shuffled_time_test_accuracy"]
        assert row["single_frame_test_accuracy"] == m["ablations"]["single_frame_test_accuracy"]
        assert row["gain_over_single_frame"] == pytest.approx(
            m["accuracy"]["test"] - m["ablations"]["single_frame_test_accuracy"])


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links, self.scripts, self.ids = [], [], 0, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag in ("a", "link") and "href" in attrs:
            self.links.append(attrs["href"])
        if tag == "script":
            self.scripts += 1
        if "id" in attrs:
            self.ids.append(attrs["id"])


def test_page_is_self_contained(built):
    text = built["index"].read_text(encoding="utf-8")
    parser = _Collector()
    parser.feed(text)
    assert len(parser.images) == len(FIGURES)  # every figure drawn and embedded
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert parser.scripts == 0
    assert all(href.startswith("#") and href[1:] in parser.ids for href in parser.links)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    for name in FIGURES:
        png = built["out"] / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_folder_holds_exactly_the_declared_outputs(built):
    # the rule declares every table and figure: each is written, and nothing else is
    written = {p.relative_to(built["out"]).as_posix() for p in built["out"].rglob("*")
               if p.is_file()}
    assert written == {*TABLES, "index.html", *(f"figures/{name}.png" for name in FIGURES)}


def test_inputs_found_by_layout_equal_the_workflows_declared_files(built):
    found = built["inputs"]
    assert list(found.samples) == list(built["sheet"]["sample"])
    for sample, files in found.samples.items():
        assert set(files) == set(SAMPLE_FILES)
        assert all(path.is_file() for path in files.values()), sample
        assert files["qc"].parent.parent.parent == built["results"] / "preprocess"
    assert sorted(found.tracking) == ["D01_native", "D02_DA"]
    assert found.pipeline["sample"] == "D01_native" and found.pipeline["video"].is_file()
    # the rule passes the same files as plain values (its params)
    declared = {
        "tasks": {t: {k: str(v) for k, v in f.items()} for t, f in found.tasks.items()},
        "samples": {s: {k: str(v) for k, v in f.items()} for s, f in found.samples.items()},
        "tracking": {s: str(v) for s, v in found.tracking.items()},
        "pipeline": {k: str(v) for k, v in found.pipeline.items()},
        "lock_file": str(found.lock_file),
    }
    assert ReportInputs.from_mapping(json.loads(json.dumps(declared))) == found


def test_data_summary_counts_equal_the_stage_outputs(built):
    summary = pd.read_csv(built["out"] / "data_summary_samples.csv").set_index("sample")
    for sample, expected in built["expected"].items():
        for column in ("detections", "tracks", "tracks_kept", "clips"):
            assert summary.loc[sample, column] == expected[column], (sample, column)
        assert summary.loc[sample, "rejected: too_short"] == \
            expected["tracks"] - expected["tracks_kept"]
    assert summary.loc["D01_native", "truth_cells"] == built["expected"]["D01_native"][
        "truth_cells"]
    by_condition = pd.read_csv(built["out"] / "data_summary_conditions.csv")
    assert list(by_condition["condition"]) == ["native", "DA", "FA", "GA"]
    # the QC verdicts: one recording is suspect, and the page names it and its knob
    assert summary.loc[QC_SUSPECT_SAMPLE, "QC"] == "suspect; background_frames"
    assert (summary.drop(index=QC_SUSPECT_SAMPLE)["QC"] == "ok").all()
    assert by_condition.set_index("condition")["QC not ok"].to_dict() == {
        "native": 0, "DA": 1, "FA": 0, "GA": 0}
    page = (built["out"] / "index.html").read_text()
    assert "1 of" in page and f"{QC_SUSPECT_SAMPLE}: QC suspect: background_frames 4" in page
    assert by_condition["clips"].sum() == summary["clips"].sum()
    assert (by_condition["donors"] == 4).all()


def test_tracking_accuracy_against_truth(built):
    """Tracks are the true positions plus 0.3 px jitter: no false match, no identity switch;
    the table shows the scores of the tracking files (rule evaluate_tracking) unchanged."""
    scores = pd.read_csv(built["out"] / "tracking_accuracy.csv").set_index("sample")
    assert set(scores.index) == {"D01_native", "D02_DA"}
    assert (scores["precision"] == 1.0).all()
    assert (scores["id_switches"] == 0).all()
    assert (scores["idf1"] > 0.9).all()
    assert scores.loc["D02_DA", "condition"] == "DA"
    for sample, path in built["inputs"].tracking.items():
        recorded = json.loads(path.read_text())
        for key in ("idf1", "mota", "recall", "precision", "id_switches", "n_truth_cells"):
            assert scores.loc[sample, key] == pytest.approx(recorded[key], rel=1e-12), key
    assert "Tracking accuracy" in built["index"].read_text()


def test_runtimes_command_tabulates_the_benchmark_files(built):
    from typer.testing import CliRunner

    from rbcflow.cli import app

    # runtimes are facts of a run: the report holds none, ``rbcflow runtimes`` shows them
    runtimes = tables.runtime_table(inputs.read_benchmarks(built["logs"])).set_index("rule")
    # train_model: 4 tasks, each the mean of two repeats (20 s, 22 s)
    assert runtimes.loc["train_model", "jobs"] == 4
    assert runtimes.loc["train_model", "wall_s_total"] == pytest.approx(84.0)
    assert runtimes.loc["preprocess_batch", "jobs"] == 2
    assert runtimes.loc["simulate_dataset", "jobs"] == 1
    result = CliRunner().invoke(app, ["runtimes", str(built["logs"])])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.strip().startswith("train_model"))
    assert line.split()[1:3] == ["4", "84.0"]
    page = built["index"].read_text()
    assert 'id="runtimes"' not in page and "wall_s" not in page and "max_rss" not in page
    empty = CliRunner().invoke(app, ["runtimes", str(built["root"] / "nothing")])
    assert empty.exit_code == 1 and "no benchmark files" in empty.output


def test_provenance_holds_versions_and_hashes_but_no_time_host_or_commit(built):
    import socket

    record = json.loads((built["out"] / "provenance.json").read_text())
    assert record["config"]["seed"] == built["config"]["seed"]
    assert len(record["data"]) == 16
    assert record["data"][0]["sha256"].startswith("0000")
    assert record["lock_file"] == str(built["lock_file"])
    assert record["lock_sha256"] == sha256_file(built["lock_file"])
    assert record["packages"]["numpy"] == np.__version__
    assert not {"created", "git_revision", "host", "hostname", "hardware"} & set(record)
    page = built["index"].read_text()
    host = socket.gethostname()
    if len(host) >= 6:  # a short name could occur in any text
        assert host not in page and host not in json.dumps(record)
    assert not re.search(r"20\d\d-\d\d-\d\d[T ]\d\d:\d\d", page)  # no time stamp


def test_consistency_check_catches_a_wrong_metric(built, tmp_path):
    results, found = _copy(built, tmp_path)
    path = results / "models" / "FA" / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["accuracy"]["test"] = 0.5
    path.write_text(json.dumps(metrics))
    index = build_report(built["config"], built["sheet"], found, results / "report")
    text = index.read_text()
    assert "FA: test accuracy = predictions.tsv failed" in text
    assert text.count("badge bad") == 1


def test_missing_optional_inputs_are_stated(built, tmp_path):
    results, _ = _copy(built, tmp_path, without=("background", "*.h5", "splits", "tracking"))
    shutil.rmtree(results / "models" / "GA")  # a task not trained yet
    found = ReportInputs.from_results(results, built["sheet"],
                                      [t["name"] for t in built["config"]["tasks"]])
    assert found.tracking == {} and found.lock_file is None
    index = build_report(built["config"], built["sheet"], found, results / "report")
    text = index.read_text()
    assert "No metrics.json for task(s) GA" in text
    assert "no ground truth" in text
    assert "Pipeline panels: not shown, D01_native:" in text
    assert "Example clips: not shown, no clips" in text
    assert "No split table for task DA" in text
    table = json.loads((results / "report" / "table1.json").read_text())
    assert [r["task"] for r in table["rows"]] == ["DA", "FA", "Mix"]
    # declared tables and figures exist even without their data (a placeholder says why,
    # a table has its header)
    assert all((results / "report" / "figures" / f"{n}.png").is_file() for n in FIGURES)
    assert all((results / "report" / name).is_file() for name in TABLES)
    scores = pd.read_csv(results / "report" / "tracking_accuracy.csv")
    assert scores.empty and list(scores.columns)[:3] == ["sample", "condition", "idf1"]
    record = json.loads((results / "report" / "provenance.json").read_text())
    assert record["lock_file"] is None and record["lock_sha256"] is None


def test_a_task_with_history_but_no_metrics_is_left_out(built, tmp_path):
    # training finished, evaluation did not: the task is left out of Table 1 and said so
    results, found = _copy(built, tmp_path)
    (results / "models" / "GA" / "metrics.json").unlink()
    index = build_report(built["config"], built["sheet"], found, results / "report")
    assert "No metrics.json for task(s) GA" in index.read_text()
    table = json.loads((results / "report" / "table1.json").read_text())
    assert [r["task"] for r in table["rows"]] == ["DA", "FA", "Mix"]


def test_declared_tracking_scores_are_shown(built, tmp_path):
    # the report shows the tracking files it is given, for any recording of the sheet
    scores = {"idf1": 0.8125, "mota": 0.75, "recall": 0.9, "precision": 0.95,
              "max_distance_px": 10.0}
    (tmp_path / "D03_GA.json").write_text(json.dumps(scores))
    found = ReportInputs(**{**vars(built["inputs"]),
                            "tracking": {"D03_GA": tmp_path / "D03_GA.json"}})
    build_report(built["config"], built["sheet"], found, tmp_path / "report")
    table = pd.read_csv(tmp_path / "report" / "tracking_accuracy.csv")
    assert list(table["sample"]) == ["D03_GA"] and table.loc[0, "condition"] == "GA"
    assert table.loc[0, "idf1"] == 0.8125
    assert "0.812" in (tmp_path / "report" / "index.html").read_text()


def test_report_is_deterministic(built, tmp_path):
    # no time, host or commit in any output: the same inputs give the same bytes
    out = tmp_path / "again"
    build_report(built["config"], built["sheet"], built["inputs"], out)
    for name in (*TABLES, "index.html", *(f"figures/{n}.png" for n in FIGURES)):
        assert (out / name).read_bytes() == (built["out"] / name).read_bytes(), name


def test_cli_report(built, tmp_path):
    from typer.testing import CliRunner

    from rbcflow.cli import app

    config = tmp_path / "config.yaml"
    # the keys in the order the fixture gave them: the page and provenance.json show the
    # configuration in its own order
    config.write_text(f"seed: {built['config']['seed']}\nresults: {built['results']}\n")
    out = tmp_path / "cli_report"
    result = CliRunner().invoke(app, [
        "report", "--config", str(config), "--samples", str(built["root"] / "samples.tsv"),
        "--out", str(out), "--lock-file", str(built["lock_file"]),
    ])
    assert result.exit_code == 0, result.output
    # it finds the same files by the results' layout and writes the same report
    for name in (*TABLES, "index.html"):
        assert (out / name).read_bytes() == (built["out"] / name).read_bytes(), name


# --- pure functions ----------------------------------------------------------------------


def test_superimpose_keeps_dark_and_bright_cells():
    frames = np.full((3, 4, 4), 100.0)
    frames[0, 1, 1] = 40.0   # dark cell in frame 0
    frames[2, 2, 3] = 190.0  # bright cell in frame 2
    frames[1, 1, 1] = 70.0   # less dark than frame 0 at the same pixel
    out = fig.superimpose(frames, 100.0)
    assert out[1, 1] == 40.0 and out[2, 3] == 190.0 and out[0, 0] == 100.0


def test_pipeline_mask_is_the_detectors_foreground(tmp_path):
    # panel B shows what the tracker sees (rbcflow.segment.foreground_at), polarity included
    from report_fixtures import HEIGHT, WIDTH, write_video

    from rbcflow.background import BackgroundModel
    from rbcflow.params import detect_params
    from rbcflow.segment import foreground_at

    background = np.full((HEIGHT, WIDTH), 100.0, np.float32)
    frames = np.full((3, HEIGHT, WIDTH), 100, np.uint8)
    frames[2, 10:20, 10:20] = 90  # darker by more than the threshold
    frames[2, 10:20, 60:70] = 110  # brighter
    frames[2, 10:20, 110:120] = 95  # darker, within the threshold
    frames[1, 30:40, 10:20] = 60  # another frame's cell
    write_video(tmp_path / "v.avi", frames)
    model = BackgroundModel("median", {}, background[None])
    dark = np.zeros((HEIGHT, WIDTH), bool)
    dark[10:20, 10:20] = True
    bright = np.zeros_like(dark)
    bright[10:20, 60:70] = True
    for polarity, expected in (("dark", dark), ("bright", bright), ("absolute", dark | bright)):
        mask = foreground_at(tmp_path / "v.avi", model,
                             detect_params(polarity=polarity, threshold=6, blur_sigma=0.0), 2)
        assert mask.dtype == np.uint8 and np.array_equal(mask.astype(bool), expected), polarity


def test_confounder_separability_against_theory():
    rng = np.random.default_rng(0)
    n = 400
    condition = np.where(np.arange(n) < n // 2, "native", "DA")
    clips = pd.DataFrame({
        "condition": condition,
        # independent of the class: AUC near 0.5
        "centerline_distance_um": rng.uniform(0, 10, n),
        # perfectly separating: AUC 1 (or 0)
        "flight_distance_px": np.where(condition == "DA", 100.0, 50.0) + rng.uniform(0, 1, n),
        "velocity_mm_s": rng.normal(1, 0.1, n),
    })
    table = tables.confounder_separability(
        clips, [{"name": "DA", "negative": ["native"], "positive": ["DA"]}]
    ).set_index("variable")
    assert table.loc["flight_distance_px", "separability"] == 1.0
    assert abs(table.loc["centerline_distance_um", "roc_auc"] - 0.5) < 0.1


def test_split_audit_counts():
    splits = pd.DataFrame({
        "clip_id": [f"s{i}" for i in range(6)],
        "sample": ["a", "a", "b", "c", "c", "d"],
        "donor": ["D1", "D1", "D2", "D3", "D3", "D4"],
        "session": ["S1"] * 6, "focus": ["in", "above", "in", "in", "below", "in"],
        "condition": ["native", "native", "DA", "native", "DA", "DA"],
        "split": ["train", "train", "train", "test", "test", "validation"],
    })
    audit = tables.split_audit_table(splits)
    assert list(audit["split"]) == ["train", "train", "validation", "test", "test"]
    row = audit[(audit["split"] == "train") & (audit["condition"] == "native")].iloc[0]
    assert (row["clips"], row["donors"], row["focus in"], row["focus above"]) == (2, 1, 1, 1)


def test_benchmarks_in_both_layouts(tmp_path):
    write_benchmark(tmp_path / "benchmarks" / "render_report.tsv", [2.0])
    write_benchmark(tmp_path / "benchmarks" / "cut_clips" / "S1.tsv", [1.0, 3.0])
    table = inputs.read_benchmarks(tmp_path).set_index("rule")
    assert table.loc["render_report", "job"] == ""
    assert table.loc["cut_clips", "job"] == "S1"
    assert table.loc["cut_clips", "s"] == 2.0  # repeats averaged


def test_background_of_a_frame_is_its_window(tmp_path):
    from rbcflow.background import BackgroundModel, save_background

    images = np.stack([np.full((2, 2), v, np.float32) for v in (1, 2, 3)])
    save_background(BackgroundModel("rolling_median", {}, images, np.array([0, 10, 20])),
                    tmp_path / "bg.npz")
    model = inputs.read_background_model(tmp_path / "bg.npz")
    assert [model.image_at(f)[0, 0] for f in (0, 9, 10, 25)] == [1, 1, 2, 3]
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(inputs.ReportInputError, match="junk.npz"):
        inputs.read_background_model(tmp_path / "junk.npz")


def test_malformed_input_names_the_file(tmp_path):
    path = tmp_path / "models" / "DA"
    path.mkdir(parents=True)
    (path / "history.csv").write_text("epoch,accuracy\n1,0.5\n")
    with pytest.raises(inputs.ReportInputError, match="history.csv.*val_accuracy"):
        inputs.read_history(path / "history.csv")
    (path / "metrics.json").write_text("{not json")
    with pytest.raises(inputs.ReportInputError, match="metrics.json: not valid JSON"):
        inputs.read_json(path / "metrics.json")
    assert inputs.read_history(path / "absent.csv") is None


def test_read_video_frames_streams_the_wanted_frames(tmp_path):
    from report_fixtures import HEIGHT, WIDTH, write_video

    frames = np.stack([np.full((HEIGHT, WIDTH), 10 * i, np.uint8) for i in range(8)])
    write_video(tmp_path / "v.avi", frames)
    got = inputs.read_video_frames(tmp_path / "v.avi", [5, 2])
    assert sorted(got) == [2, 5]
    assert got[2].shape == (HEIGHT, WIDTH) and int(got[5].mean()) == 50


def test_figure_is_written_atomically(tmp_path):
    path = fig.save_figure(fig.placeholder_figure("nothing"), tmp_path / "a.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_placeholder_reason_reaches_the_page(built):
    text = built["index"].read_text()
    assert "not shown" not in text  # the full fixture has every input
    assert Path(built["out"] / "split_audit.csv").is_file()


def test_table1_has_a_row_per_task_and_model(built, tmp_path):
    """train.models: the other models' metrics (models/<task>/extra/<model>/) get their own
    rows next to the task's model, named in a Model column, and their sources are hashed."""
    from report_fixtures import saliency_outputs

    results, _ = _copy(built, tmp_path)
    rng = np.random.default_rng(0)
    main = _metrics(built, "DA")
    for offset, model in enumerate(("slowfast", "convlstm"), start=1):
        folder = results / "models" / "DA" / "extra" / model
        folder.mkdir(parents=True)
        metrics = {**main, "model": model,
                   "accuracy": {**main["accuracy"], "test": main["accuracy"]["test"] - offset / 20}}
        examples = pd.DataFrame({"clip_id": ["a", "b"], "donor": ["d1", "d2"], "label": [0, 1]})
        metrics["saliency"] = saliency_outputs(folder / "saliency.npy", examples, rng,
                                               on_cell=model == "slowfast")
        (folder / "metrics.json").write_text(json.dumps(metrics))
    pd.DataFrame({"model": ["r2plus1d", "convlstm", "slowfast"], "metrics": ["", "", ""]}).to_csv(
        results / "models" / "DA" / "extra" / "models.tsv", sep="\t", index=False)
    found = ReportInputs.from_results(results, built["sheet"],
                                      [t["name"] for t in built["config"]["tasks"]],
                                      lock_file=built["lock_file"])
    assert set(found.extra_models["DA"]) == {"slowfast", "convlstm"}
    out = results / "report"
    index = build_report(built["config"], built["sheet"], found, out)
    table = json.loads((out / "table1.json").read_text())
    # the task's model first, then the others in the order of models.tsv
    assert [(r["task"], r["model"]) for r in table["rows"]][:4] == [
        ("DA", "r2plus1d"), ("DA", "convlstm"), ("DA", "slowfast"), ("FA", "r2plus1d")]
    assert table["rows"][2]["test_accuracy"] == main["accuracy"]["test"] - 1 / 20
    assert table["sources"]["DA/slowfast"]["sha256"] == sha256_file(
        results / "models" / "DA" / "extra" / "slowfast" / "metrics.json")
    md = (out / "table1.md").read_text()
    assert md.splitlines()[0].startswith("| Task | Model |")
    # the model whose map lies on the channel wall is warned about, the others are not
    saliency = pd.read_csv(out / "saliency.csv")
    flagged = saliency.loc[saliency["warning"], ["task", "model"]].values.tolist()
    assert flagged == [["DA", "convlstm"]]
    html = index.read_text()
    assert html.count("saliency sits mostly outside the cell") == 1
    assert "DA / convlstm" in html


def test_cross_validated_rows_show_mean_and_sd_over_folds():
    per_fold = {"accuracy": {"mean": 0.8, "sd": 0.05}, "macro_f1": {"mean": 0.75, "sd": 0.042},
                "roc_auc": {"mean": 0.9, "sd": 0.04}}
    metrics = {"DA": {"task": "DA", "model": "r2plus1d", "negative": ["native"],
                      "positive": ["DA"], "cv_folds": 5,
                      "accuracy": {"train": 0.9, "validation": 0.85, "test": 0.81},
                      "test": {"macro_f1": 0.79, "roc_auc": 0.88, "per_fold": per_fold}}}
    rows = tables.table1_exact(metrics)
    assert rows[0]["test_accuracy_fold_mean"] == 0.8 and rows[0]["test_roc_auc_fold_sd"] == 0.04
    display = tables.table1_display(tables.table1_rounded(rows))
    assert display.loc[0, "Test (%) over folds, mean ± sd"] == "80.0 ± 5.0"
    assert display.loc[0, "Macro-F1 over folds, mean ± sd"] == "0.750 ± 0.042"
    assert display.loc[0, "ROC AUC over folds, mean ± sd"] == "0.900 ± 0.040"
    assert display.loc[0, "Test (%)"] == "81.0"  # the pooled figure beside them
    # without folds the columns are left out
    plain = {"DA": {**metrics["DA"], "test": {"macro_f1": 0.79}}}
    assert "Test (%) over folds, mean ± sd" not in tables.table1_display(
        tables.table1_rounded(tables.table1_exact(plain))).columns


def test_confusion_matrix_figure_of_a_four_class_task_names_its_classes():
    metrics = {"Treatment": {
        "classes": [{"name": n, "conditions": [n]} for n in ("native", "DA", "FA", "GA")],
        "test": {"confusion_matrix": (np.eye(4, dtype=int) * 5 + 1).tolist()}}}
    figure = fig.confusion_matrices_figure(metrics)
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["native", "DA", "FA", "GA"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["native", "DA", "FA", "GA"]
    assert sum(t.get_text().startswith("6\n") for t in ax.texts) == 4  # the diagonal


def test_table1_row_of_a_class_list_task():
    classes = [{"name": n, "conditions": [n]} for n in ("native", "DA", "FA")]
    metrics = {"task": "T", "classes": classes, "accuracy": {"test": 0.6},
               "test": {"balanced_accuracy": 0.55, "balanced_accuracy_ci95": [0.4, 0.7],
                        "macro_f1": 0.5, "macro_f1_ci95": [0.3, 0.65],
                        "per_class_recall": [0.9, 0.5, 0.25],
                        "per_class_recall_ci95": [[0.8, 1.0], [0.2, 0.7], [None, None]]}}
    row = tables.table1_row(metrics)
    assert row["classes"] == "native / DA / FA"
    assert (row["test_balanced_accuracy_ci95_low"], row["test_macro_f1_ci95_high"]) == (0.4, 0.65)
    assert row["test_per_class_recall"]["FA"] == {"recall": 0.25, "ci95_low": None,
                                                  "ci95_high": None}
    display = tables.table1_display(tables.table1_rounded([row]))
    assert display.loc[0, "Classes"] == "native / DA / FA"
    assert display.loc[0, "Per-class recall (%) (95 % CI)"] == (
        "native 90.0 (80.0–100.0); DA 50.0 (20.0–70.0); FA 25.0 (–)")
    assert display.loc[0, "Balanced acc. 95 % CI (%)"] == "40.0–70.0"
    # two classes as a list: named, no per-class columns
    two = tables.table1_row({**metrics, "classes": classes[:2]})
    assert two["classes"] == "native / DA" and two["test_per_class_recall"] is None
    binary = tables.table1_display(tables.table1_rounded([tables.table1_row(
        {"task": "DA", "negative": ["native"], "positive": ["DA"]})]))
    assert "Per-class recall (%) (95 % CI)" not in binary.columns
    assert binary.loc[0, "Classes"] == "native vs DA"
