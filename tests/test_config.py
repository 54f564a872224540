"""Config and sample-sheet validation: defaults, and one message naming every problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rbcflow.config import (
    SAMPLE_COLUMNS,
    ConfigError,
    check_sample_row,
    load_config,
    load_sample_sheet,
    non_finite_numbers,
    task_classes,
    task_label_map,
    validate_config,
)

REPO = Path(__file__).resolve().parents[1]
HEADER = "\t".join(SAMPLE_COLUMNS)


def write_sheet(folder: Path, rows: list[str], header: str = HEADER) -> Path:
    for name in ("a.avi", "b.avi", "c.avi"):
        (folder / name).write_bytes(b"\0")
    path = folder / "samples.tsv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


GOOD = [
    "S1\ta.avi\tD1\tnative\tin\tday1\t5000\t0.29",
    "S2\tb.avi\tD1\tDA\tabove\tday1\t5000\t0.29",
]


def test_empty_config_gets_every_default():
    config = validate_config({})
    assert config["samples"] == ""
    assert config["background"]["method"] == "median"
    assert config["background"]["n_frames"] == 100
    assert config["ingest"]["fps_tolerance"] == pytest.approx(0.02)
    assert config["split"]["cv_folds"] == 0
    assert [t["name"] for t in config["tasks"]] == ["DA", "FA", "GA", "Mix"]
    assert config["tasks"][3]["positive"] == ["DA", "FA", "GA"]
    assert config["split"]["train"] == pytest.approx(0.7)


def test_shipped_config_is_valid():
    config = load_config(REPO / "config" / "config.yaml")
    assert config["simulate"]["preset"] == "demo"


def test_validation_does_not_modify_the_input():
    raw = {"train": {"epochs": 3}}
    validate_config(raw)
    assert raw == {"train": {"epochs": 3}}


def test_every_config_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as info:
        validate_config(
            {"clips": {"mode": "movie"}, "train": {"epochs": 0}, "unknown_key": 1}
        )
    message = str(info.value)
    assert "clips/mode" in message and "'movie'" in message
    assert "train/epochs" in message
    assert "unknown_key" in message


def test_task_with_unknown_condition_and_bad_fractions():
    with pytest.raises(ConfigError) as info:
        validate_config(
            {
                "split": {"train": 0.5, "validation": 0.2, "test": 0.1},
                "tasks": [{"name": "X", "negative": ["native"], "positive": ["HbS"]}],
            }
        )
    message = str(info.value)
    assert "'HbS'" in message and "tasks/0/positive" in message
    assert "add up to 1" in message


def test_load_config_reports_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("samples: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"train": {"epochs": 2}}))
    assert load_config(good)["train"]["epochs"] == 2


def test_good_sheet_is_loaded_with_absolute_paths(tmp_path):
    sheet = load_sample_sheet(write_sheet(tmp_path, GOOD), conditions=["native", "DA"])
    assert list(sheet.index) == ["S1", "S2"]
    assert Path(sheet.loc["S1", "path"]).is_absolute()
    assert Path(sheet.loc["S1", "path"]) == (tmp_path / "a.avi").resolve()
    assert sheet["fps"].dtype.kind == "f"


def test_every_bad_row_is_named_with_line_and_column(tmp_path):
    rows = [
        GOOD[0],
        "S1\tb.avi\tD2\tDA\tin\tday2\t5000\t0.29",  # duplicate ID
        "../etc\tc.avi\tD3\tnative\tin\tday3\t5000\t0.29",  # path-like ID
        "S4\tmissing.avi\tD4\tnative\tin\tday4\t5000\t0.29",  # file missing
        "S5\ta.avi\tD5\tHbS\tin\tday5\t5000\t0.29",  # unknown condition
        "S6\ta.avi\tD6\tnative\tsideways\tday6\t-5\t0.29",  # bad focus, negative fps
        "S7\ta.avi\tD7\tnative\tin\tday7\tfast\t0",  # fps not a number, zero pixel size
    ]
    with pytest.raises(ConfigError) as info:
        load_sample_sheet(write_sheet(tmp_path, rows), conditions=["native", "DA"])
    message = str(info.value)
    assert "line 3, column sample" in message and "already used on line 2" in message
    assert "line 4, column sample: '../etc'" in message
    assert "line 5, column path: file not found" in message
    assert "line 6, column condition: 'HbS'" in message
    assert "line 7, column focus" in message
    assert "line 7, column fps" in message
    assert "line 8, column fps: 'fast'" in message
    assert "line 8, column um_per_px" in message
    assert "line 2," not in message  # the good row is not blamed


def test_missing_columns_are_named(tmp_path):
    path = write_sheet(tmp_path, ["S1\ta.avi"], header="sample\tpath")
    with pytest.raises(ConfigError, match="missing column.*donor.*condition"):
        load_sample_sheet(path)


def test_empty_sheet_and_missing_sheet(tmp_path):
    with pytest.raises(ConfigError, match="no rows"):
        load_sample_sheet(write_sheet(tmp_path, []))
    with pytest.raises(ConfigError, match="not found"):
        load_sample_sheet(tmp_path / "absent.tsv")


@pytest.mark.parametrize("folds, accepted", [(0, True), (1, False), (2, False), (3, True)])
def test_cv_folds_the_splitter_refuses_are_refused_by_validation(folds, accepted):
    if accepted:
        assert validate_config({"split": {"cv_folds": folds}})["split"]["cv_folds"] == folds
        return
    with pytest.raises(ConfigError, match=f"split/cv_folds: {folds} is not allowed: .*K >= 3"):
        validate_config({"split": {"cv_folds": folds}})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_numbers_anywhere_in_the_config_are_refused(value):
    with pytest.raises(ConfigError) as error:
        validate_config({"ingest": {"fps_tolerance": value}, "split": {"test": value}})
    assert "ingest/fps_tolerance: must be a finite number" in str(error.value)
    assert "split/test: must be a finite number" in str(error.value)


def test_non_finite_numbers_are_found_in_nested_lists():
    assert non_finite_numbers({"a": [1.0, {"b": float("nan")}], "c": 2}) == ["a/1/b"]
    assert non_finite_numbers({"a": [1, 2.5, "nan"]}) == []


@pytest.mark.parametrize("column, value", [("fps", "nan"), ("fps", "inf"),
                                           ("um_per_px", "-inf"), ("um_per_px", "NaN")])
def test_nan_and_inf_in_the_sheet_are_refused(tmp_path, column, value):
    row = GOOD[0].split("\t")
    row[7 if column == "um_per_px" else 6] = value
    with pytest.raises(ConfigError, match=f"line 2, column {column}: '{value}'"):
        load_sample_sheet(write_sheet(tmp_path, ["\t".join(row), GOOD[1]]))


def test_a_recording_described_on_the_command_line_is_checked_like_a_row():
    good = {"sample": "S1", "path": "a.avi", "donor": "D1", "condition": "native",
            "focus": "in", "session": "s", "fps": 1800.0, "um_per_px": 0.3}
    check_sample_row(good, "cli")
    with pytest.raises(ConfigError, match="^invalid recording description: cli: fps: 'nan'"):
        check_sample_row({**good, "fps": float("nan")}, "cli")
    with pytest.raises(ConfigError) as error:
        check_sample_row({**good, "focus": "side", "um_per_px": -1.0}, "cli")
    assert "focus: 'side' is not one of" in str(error.value)
    assert "um_per_px: -1.0 is less than or equal to the minimum of 0" in str(error.value)


FOUR = {"name": "Treatment", "classes": [{"name": c, "conditions": [c]}
                                         for c in ("native", "DA", "FA", "GA")]}


def test_a_task_may_list_its_classes():
    config = validate_config({"tasks": [FOUR, {"name": "DA", "negative": ["native"],
                                               "positive": ["DA"]}]})
    assert task_classes(config["tasks"][0]) == FOUR["classes"]
    assert task_label_map(config["tasks"][0]) == {"native": 0, "DA": 1, "FA": 2, "GA": 3}
    # the two-class form is the classes negative (0) and positive (1)
    assert task_label_map(config["tasks"][1]) == {"native": 0, "DA": 1}
    assert [c["name"] for c in task_classes(config["tasks"][1])] == ["negative", "positive"]


@pytest.mark.parametrize(("task", "expected"), [
    ({"name": "T", "classes": [{"name": "a", "conditions": ["native"]},
                               {"name": "b", "conditions": ["HbS"]}]},
     "tasks/0/classes/1/conditions: condition 'HbS' of task 'T'"),
    ({"name": "T", "classes": [{"name": "a", "conditions": ["native", "DA"]},
                               {"name": "b", "conditions": ["DA"]}]},
     "conditions ['DA'] are in more than one class of task 'T'"),
    ({"name": "T", "classes": [{"name": "a", "conditions": ["native"]},
                               {"name": "a", "conditions": ["DA"]}]},
     "class name 'a' of task 'T' is used more than once"),
    ({"name": "T", "negative": ["native"], "positive": ["DA"],
      "classes": [{"name": "a", "conditions": ["FA"]}, {"name": "b", "conditions": ["GA"]}]},
     "task 'T' gives both classes and negative/positive"),
    ({"name": "T"}, "task 'T' needs negative and positive, or classes"),
    ({"name": "T", "classes": [{"name": "a", "conditions": ["native"]}]},
     "tasks/0/classes"),
    ({"name": "T", "classes": [{"name": "a b", "conditions": ["native"]},
                               {"name": "c", "conditions": ["DA"]}]},
     "tasks/0/classes/0/name"),
    ({"name": "T", "negative": ["native"]}, "'positive' is a dependency of 'negative'"),
], ids=["unknown-condition", "condition-in-two-classes", "duplicate-class", "both-forms",
        "neither-form", "one-class", "unsafe-class-name", "negative-alone"])
def test_class_list_problems_name_the_task_and_key(task, expected):
    with pytest.raises(ConfigError) as info:
        validate_config({"tasks": [task]})
    assert expected in str(info.value)
