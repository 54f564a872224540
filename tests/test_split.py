"""Donor-grouped splitting, K-fold by donor and the confound audit."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from synthetic_clips import donors_one_condition, donors_with_both, make_clip_files

from rbcflow.split import (
    SPLIT_COLUMNS,
    SplitError,
    fold_splits,
    read_split_table,
    split_groups,
    split_task,
)

DA = {"name": "DA", "negative": ["native"], "positive": ["DA"]}
MIX = {"name": "Mix", "negative": ["native"], "positive": ["DA", "FA"]}


@pytest.fixture(scope="module")
def ten_donors(tmp_path_factory):
    """10 donors with native, DA and FA, uneven clip counts (so balancing has work)."""
    outdir = tmp_path_factory.mktemp("clips")
    paths = make_clip_files(outdir, donors_with_both(10, ("DA", "FA")), clips_per_sample=6)
    extra = make_clip_files(  # a second native recording of two donors
        outdir, {"D00": ["native"], "D03": ["native"]}, clips_per_sample=5, seed=9,
        sample_suffix="_b",
    )
    return paths, extra


def _split(tmp_path, files, task=DA, **kwargs):
    return split_task(files, task, tmp_path / "s.tsv", tmp_path / "s_audit.json", **kwargs)


def test_every_donor_in_one_split_and_balanced(tmp_path, ten_donors):
    files = ten_donors[0]
    table = _split(tmp_path, files)
    assert list(table.columns) == SPLIT_COLUMNS
    assert table.groupby("donor")["split"].nunique().max() == 1
    assert set(table["split"]) == {"train", "validation", "test"}
    for split in ("validation", "test"):
        counts = table[table["split"] == split]["label"].value_counts()
        assert counts[0] == counts[1]
    assert set(table["condition"]) == {"native", "DA"}
    assert (table["label"] == (table["condition"] == "DA")).all()
    assert (table["fold"] == -1).all()
    written = read_split_table(tmp_path / "s.tsv")
    pd.testing.assert_frame_equal(written, table, check_dtype=False)


def test_fractions_follow_configuration(tmp_path, ten_donors):
    files = ten_donors[0]
    table = _split(tmp_path, files, train=0.5, validation=0.2, test=0.3)
    donors = table.groupby("split")["donor"].nunique()
    assert donors["test"] == 3 and donors["validation"] == 2 and donors["train"] == 5
    share = table["split"].value_counts(normalize=True)
    assert share["test"] == pytest.approx(0.3, abs=0.05)


def test_same_seed_same_split_other_seed_differs(tmp_path, ten_donors):
    files = ten_donors[0]
    a = _split(tmp_path, files, seed=1)
    b = _split(tmp_path, files, seed=1)
    c = _split(tmp_path, files, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a["split"].equals(c["split"])


def test_majority_class_subsampled_in_test(tmp_path, ten_donors):
    files, extra = ten_donors
    table = _split(tmp_path, files + extra, test=0.3, train=0.5)
    audit = json.loads((tmp_path / "s_audit.json").read_text())
    for split in ("validation", "test"):
        counts = table[table["split"] == split]["label"].value_counts()
        assert counts[0] == counts[1]
    # D00 and D03 have 5 extra native clips; balancing drops exactly those where they land
    dropped = audit["dropped_to_balance"]
    split_of = table.groupby("donor")["split"].first()
    for split in ("validation", "test"):
        expected = 5 * sum(split_of[d] == split for d in ("D00", "D03"))
        assert dropped[split] == expected
    assert len(table) + sum(dropped.values()) == 10 * 12 + 10


def test_cross_validation_tests_every_donor_once(tmp_path, ten_donors):
    files = ten_donors[0]
    table = _split(tmp_path, files, task=MIX, cv_folds=5)
    assert sorted(table["fold"].unique()) == [0, 1, 2, 3, 4]
    assert table.groupby("donor")["fold"].nunique().max() == 1
    assert table["donor"].nunique() == 10
    for fold in range(5):
        counts = table[table["fold"] == fold]["label"].value_counts()
        assert counts[0] == counts[1]
        splits = fold_splits(table["fold"].to_numpy(), fold, 5)
        assert set(table["fold"][splits == "test"]) == {fold}
        assert set(table["fold"][splits == "validation"]) == {(fold + 1) % 5}
    assert (table["split"].to_numpy() == fold_splits(table["fold"].to_numpy(), 0, 5)).all()


def test_too_few_donors_says_how_many(tmp_path):
    files = make_clip_files(tmp_path / "c", donors_with_both(2), clips_per_sample=3)
    with pytest.raises(SplitError, match=r"2 donors .* needs at least 3"):
        _split(tmp_path, files)
    with pytest.raises(SplitError, match=r"2 donors .*5-fold cross-validation needs at least 5"):
        _split(tmp_path, files, cv_folds=5)


def test_class_missing_from_a_split_is_explained(tmp_path):
    # labels tied to donors, 4 donors: two per class cannot fill three splits with both
    files = make_clip_files(tmp_path / "c", donors_one_condition(4), clips_per_sample=3)
    with pytest.raises(SplitError, match="both classes in train, validation and test"):
        _split(tmp_path, files)


def test_labels_tied_to_donors_split_when_sessions_are_the_donors(tmp_path):
    files = make_clip_files(tmp_path / "c", donors_one_condition(8), clips_per_sample=3)
    table = _split(tmp_path, files, train=0.5, validation=0.25, test=0.25)
    assert table.groupby("donor")["split"].nunique().max() == 1
    audit = json.loads((tmp_path / "s_audit.json").read_text())
    assert audit["factors"]["session"]["determines_label"] is True


def test_day_shared_by_donors_of_one_label_fails(tmp_path):
    # the seed paper's situation, with several donors: native on one day, treated on another
    donors = donors_one_condition(8)
    sessions = {(d, c): f"day_{c}" for d, conds in donors.items() for c in conds}
    files = make_clip_files(tmp_path / "c", donors, clips_per_sample=3, sessions=sessions)
    with pytest.raises(SplitError, match="fully determined by session"):
        _split(tmp_path, files)


def test_label_determined_by_session_fails(tmp_path):
    donors = donors_with_both(4)
    sessions = {(d, c): f"day_{c}" for d, conds in donors.items() for c in conds}
    files = make_clip_files(tmp_path / "c", donors, clips_per_sample=3, sessions=sessions)
    with pytest.raises(SplitError, match="fully determined by session"):
        _split(tmp_path, files)
    assert not (tmp_path / "s.tsv").exists()


def test_label_determined_by_focus_fails(tmp_path):
    donors = donors_with_both(4)
    focus = {(d, "DA"): "above" for d in donors}
    files = make_clip_files(tmp_path / "c", donors, clips_per_sample=3, focus=focus)
    with pytest.raises(SplitError, match="fully determined by focus"):
        _split(tmp_path, files)


def test_audit_cross_tables(tmp_path, ten_donors):
    files = ten_donors[0]
    _split(tmp_path, files)
    audit = json.loads((tmp_path / "s_audit.json").read_text())
    donor = audit["factors"]["donor"]
    assert donor["crosstab"]["D00"] == {"0": 6, "1": 6}
    assert donor["determines_label"] is False
    assert audit["factors"]["focus"]["n_values"] == 1
    assert audit["factors"]["session"]["values_with_both_labels"] == 10


def test_group_by_session_joins_donors_sharing_a_session(tmp_path):
    table = pd.DataFrame(
        {"donor": ["A", "B", "C", "D", "E"], "session": ["s1", "s1", "s2", "s3", "s3"]}
    )
    groups = split_groups(table, group_by_session=True)
    assert groups[0] == groups[1] and groups[3] == groups[4]
    assert len(set(groups)) == 3
    assert list(split_groups(table)) == ["A", "B", "C", "D", "E"]


def test_group_by_session_keeps_sessions_in_one_split(tmp_path):
    donors = donors_with_both(8)
    # pairs of donors recorded on the same day
    sessions = {(d, c): f"day{int(d[1:]) // 2}" for d, conds in donors.items() for c in conds}
    files = make_clip_files(tmp_path / "c", donors, clips_per_sample=3, sessions=sessions)
    table = _split(tmp_path, files, group_by_session=True, train=0.5, validation=0.25, test=0.25)
    assert table.groupby("session")["split"].nunique().max() == 1
    assert table.groupby("donor")["split"].nunique().max() == 1
    assert np.all(table.groupby("split")["session"].nunique() >= 1)


THREE = {"name": "Treatment", "classes": [{"name": "native", "conditions": ["native"]},
                                          {"name": "DA", "conditions": ["DA"]},
                                          {"name": "FA", "conditions": ["FA"]}]}


def test_three_classes_are_balanced_in_validation_and_test(tmp_path):
    # every donor gave 6 native, 4 DA and 5 FA clips: each split has clips to drop
    files = [path for seed, (condition, n) in enumerate((("native", 6), ("DA", 4), ("FA", 5)))
             for path in make_clip_files(tmp_path / "clips", {f"D{i:02d}": [condition]
                                                              for i in range(8)},
                                         clips_per_sample=n, seed=seed)]
    table = _split(tmp_path, files, task=THREE)
    assert table.groupby("donor")["split"].nunique().max() == 1
    assert (table["label"] == table["condition"].map({"native": 0, "DA": 1, "FA": 2})).all()
    for split in ("train", "validation", "test"):
        counts = table[table["split"] == split]["label"].value_counts()
        assert sorted(counts.index) == [0, 1, 2]
        if split != "train":
            assert counts.nunique() == 1, (split, counts.to_dict())
    audit = json.loads((tmp_path / "s_audit.json").read_text())
    assert audit["parameters"]["classes"] == THREE["classes"]
    assert "smallest class" in audit["balancing"]
    assert sum(audit["dropped_to_balance"].values()) > 0
    crosstab = audit["factors"]["donor"]["crosstab"]["D00"]
    assert set(crosstab) == {"0", "1", "2"}


def test_three_class_cross_validation_balances_every_fold(tmp_path, ten_donors):
    table = _split(tmp_path, ten_donors[0], task=THREE, cv_folds=3)
    for _, fold in table.groupby("fold"):
        counts = fold["label"].value_counts()
        assert sorted(counts.index) == [0, 1, 2] and counts.nunique() == 1


def test_three_classes_with_one_condition_per_donor_name_every_class(tmp_path):
    donors = {f"D{i:02d}": [("native", "DA", "FA")[i % 3]] for i in range(6)}
    files = make_clip_files(tmp_path / "clips", donors, clips_per_sample=4)
    with pytest.raises(SplitError, match="every class") as info:
        _split(tmp_path, files, task=THREE)
    assert "label 2 occurs in 2" in str(info.value)
