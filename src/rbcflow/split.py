"""Donor-grouped splitting, K-fold cross-validation by donor, and the confound audit.

Clips of one donor are correlated (same blood, same day, same optics), so a clip-level
random split lets a model score on donor identity instead of the condition. Every donor
(and, optionally, every recording session) therefore lands in exactly one split.

Class balance in validation and test follows seed 001 ("a uniform class distribution is
maintained in the test and validation sets"): donors are chosen so the classes are as even
as possible, then every larger class of validation and test is subsampled at random to the
size of the smallest (with two classes: the majority to the minority class). The dropped
clips are not moved to training (their donors are validation or test donors); the audit
counts them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

from rbcflow.clipstore import read_clip_table
from rbcflow.config import task_classes, task_label_map
from rbcflow.io.atomic import write_text_atomic
from rbcflow.provenance import stable_provenance

log = logging.getLogger(__name__)

SPLIT_COLUMNS = [
    "clip_id", "sample", "donor", "session", "focus", "condition", "label", "split", "fold",
]
SPLITS = ("train", "validation", "test")
AUDIT_FACTORS = ("donor", "session", "focus")
# Factors whose values fully determining the label make the task unlearnable honestly:
# a model would learn the recording day or the focus, and grouping cannot undo that.
FATAL_FACTORS = ("session", "focus")
N_CANDIDATES = 200


class SplitError(ValueError):
    """The clips of a task cannot be split honestly; the message says why."""


def task_clip_table(clip_files: Sequence[str | Path], task: Mapping) -> pd.DataFrame:
    """The clip tables of all files, restricted to the task's conditions, with a label.

    The label is the index of the condition's class (``rbcflow.config.task_classes``):
    0 for the two-class form's ``negative`` conditions, 1 for ``positive``.
    """
    tables = [read_clip_table(path) for path in clip_files]
    if not tables:
        raise SplitError(f"task {task['name']}: no clip files given")
    table = pd.concat(tables, ignore_index=True)
    duplicated = table["clip_id"][table["clip_id"].duplicated()]
    if len(duplicated):
        raise SplitError(
            f"task {task['name']}: clip_id {duplicated.iloc[0]!r} occurs in more than one "
            "clip file; clip IDs must be unique"
        )
    labels = task_label_map(task)
    table = table[table["condition"].isin(labels)].copy()
    if table.empty:
        raise SplitError(
            f"task {task['name']}: no clips of conditions {sorted(labels)} "
            f"in {len(clip_files)} clip file(s)"
        )
    table["label"] = table["condition"].map(labels).astype(int)
    for label, spec in enumerate(task_classes(task)):
        if not (table["label"] == label).any():
            raise SplitError(
                f"task {task['name']}: no clips of the {spec['name']} condition(s) "
                f"{sorted(spec['conditions'])}; every class is needed"
            )
    return table.reset_index(drop=True)


def split_groups(table: pd.DataFrame, group_by_session: bool = False) -> np.ndarray:
    """Group ID per clip: the donor, or the connected component of donors and sessions.

    With ``group_by_session``, a session shared by two donors ties them into one group, so
    that every donor and every session ends up in a single split.
    """
    donors = table["donor"].astype(str).to_numpy()
    if not group_by_session:
        return donors
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for donor, session in zip(donors, table["session"].astype(str), strict=True):
        root_a, root_b = find("donor:" + donor), find("session:" + session)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)
    return np.array([find("donor:" + d) for d in donors])


def confound_audit(table: pd.DataFrame, task_name: str = "task") -> dict:
    """Cross-tables of label against donor, session and focus, and what they imply.

    A factor *determines* the label when each of its values occurs with one label only
    (and the factor has more than one value). Determination by donor is expected when
    each donor gave one condition and is handled by grouping; by session or focus it is a
    confound no split can remove, and ``check_confounds`` refuses it.
    """
    audit: dict[str, object] = {"task": task_name, "n_clips": int(len(table)), "factors": {}}
    labels = list(range(max(2, int(table["label"].max()) + 1 if len(table) else 2)))
    for factor in AUDIT_FACTORS:
        cross = pd.crosstab(table[factor].astype(str), table["label"])
        cross = cross.reindex(columns=labels, fill_value=0)
        labels_per_value = (cross > 0).sum(axis=1)
        determines = bool(len(cross) > 1 and labels_per_value.max() == 1)
        audit["factors"][factor] = {
            "crosstab": {
                str(value): {str(label): int(row[label]) for label in labels}
                for value, row in cross.iterrows()
            },
            "n_values": int(len(cross)),
            # more than one label (both, for two classes)
            "values_with_both_labels": int((labels_per_value >= 2).sum()),
            "determines_label": determines,
        }
    donors_per_session = table.groupby(table["session"].astype(str))["donor"].nunique()
    audit["sessions_nested_in_donors"] = bool(donors_per_session.max() == 1)
    return audit


def check_confounds(audit: Mapping) -> None:
    """Raise ``SplitError`` when the label is fully determined by session or focus.

    The one exception: sessions nested in donors that each gave one condition, where the
    session carries no information beyond the donor and grouping handles both.
    """
    problems = []
    # One session per donor and one condition per donor: the session says no more than
    # the donor, and donor grouping already keeps it out of the evaluation.
    session_is_donor = audit["sessions_nested_in_donors"] and (
        audit["factors"]["donor"]["determines_label"]
    )
    for factor in FATAL_FACTORS:
        info = audit["factors"][factor]
        if factor == "session" and session_is_donor:
            continue
        if info["determines_label"]:
            by_label: dict[str, list[str]] = {}
            for value, counts in info["crosstab"].items():
                by_label.setdefault(next(k for k, n in counts.items() if n), []).append(value)
            problems.append(
                f"the label is fully determined by {factor}: " + ", ".join(
                    f"label {label} only in {factor} {values}"
                    for label, values in sorted(by_label.items(), key=lambda i: int(i[0])))
            )
    if problems:
        raise SplitError(
            f"task {audit['task']}: " + "; ".join(problems) + ". A model could learn the "
            "recording conditions instead of the cells, and no split can separate the two. "
            "Record both conditions in each session (and at each focus), or add samples "
            "that do."
        )


def _n_classes(labels: np.ndarray) -> int:
    """Classes of a task from its labels 0..K-1 (at least two)."""
    return max(2, int(np.max(labels)) + 1) if len(labels) else 2


def _balance(
    table: pd.DataFrame, mask: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """Drop random clips of every class but the smallest inside ``mask`` down to the
    smallest class's size; return the keep mask and how many were dropped."""
    keep = np.ones(len(table), dtype=bool)
    labels = table["label"].to_numpy()
    index = [np.flatnonzero(mask & (labels == label)) for label in range(_n_classes(labels))]
    n_keep = min(len(i) for i in index)
    dropped = 0
    for rows in index:
        if len(rows) > n_keep:
            drop = rng.choice(rows, size=len(rows) - n_keep, replace=False)
            keep[drop] = False
            dropped += len(drop)
    return keep, dropped


def _candidate_score(
    labels: np.ndarray, assignment: np.ndarray, targets: Mapping[str, float]
) -> float | None:
    """Deviation of a train/validation/test assignment from the targets (None: invalid).

    Each split must hold every class. The score adds the distance of each split's share
    of the clips kept after balancing from its target fraction and the share of clips
    that balancing would drop.
    """
    kept = {}
    n_classes = _n_classes(labels)
    for name in SPLITS:
        counts = np.bincount(labels[assignment == name], minlength=n_classes)
        if counts.min() == 0:
            return None
        kept[name] = counts.sum() if name == "train" else n_classes * counts.min()
    total = sum(kept.values())
    deviation = sum(abs(kept[name] / total - targets[name]) for name in SPLITS)
    return deviation + (len(labels) - total) / len(labels)


def _holdout_assignment(
    table: pd.DataFrame,
    groups: np.ndarray,
    fractions: Mapping[str, float],
    seed: int,
    task_name: str,
) -> np.ndarray:
    """Best of ``N_CANDIDATES`` seeded group-shuffle splits into train/validation/test."""
    labels = table["label"].to_numpy()
    unique_groups = np.unique(groups)
    # Whole numbers of groups, rounded (GroupShuffleSplit's ceil of a float share turns
    # 0.2 / 0.7 * 7 = 2.0000000000000004 into 3).
    n_test = min(max(1, round(fractions["test"] * len(unique_groups))), len(unique_groups) - 2)
    n_rest = len(unique_groups) - n_test
    validation_share = fractions["validation"] / (fractions["train"] + fractions["validation"])
    n_validation = min(max(1, round(validation_share * n_rest)), n_rest - 1)
    outer = GroupShuffleSplit(n_splits=N_CANDIDATES, test_size=n_test, random_state=seed)
    best, best_score = None, np.inf
    placeholder = np.zeros(len(table))
    for candidate, (rest, test) in enumerate(outer.split(placeholder, labels, groups)):
        inner = GroupShuffleSplit(
            n_splits=1, test_size=n_validation, random_state=seed + 1 + candidate
        )
        train_rel, validation_rel = next(inner.split(rest, labels[rest], groups[rest]))
        assignment = np.empty(len(table), dtype=object)
        assignment[test] = "test"
        assignment[rest[train_rel]] = "train"
        assignment[rest[validation_rel]] = "validation"
        score = _candidate_score(labels, assignment, fractions)
        if score is not None and score < best_score:
            best, best_score = assignment, score
    if best is None:
        by_label = {
            label: sorted(set(groups[labels == label])) for label in range(_n_classes(labels))
        }
        occurs = ", ".join(f"label {label} occurs in {len(g)} ({g})"
                           for label, g in by_label.items())
        every = "both classes" if len(by_label) == 2 else "every class"
        raise SplitError(
            f"task {task_name}: none of {N_CANDIDATES} donor-grouped splits puts {every} "
            f"in train, validation and test. There are {len(unique_groups)} donor groups; "
            f"{occurs}. Each class needs donors in all three splits: at least 3 donors with "
            "every condition of the task, or 3 per class."
        )
    return best


def _cv_folds(
    table: pd.DataFrame, groups: np.ndarray, n_folds: int, seed: int, task_name: str
) -> np.ndarray:
    """Test fold per clip from a seeded ``StratifiedGroupKFold`` over the groups."""
    labels = table["label"].to_numpy()
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = np.full(len(table), -1, dtype=int)
    for fold, (_, test) in enumerate(splitter.split(np.zeros(len(table)), labels, groups)):
        folds[test] = fold
    for fold in range(n_folds):
        counts = np.bincount(labels[folds == fold], minlength=_n_classes(labels))
        if counts.min() == 0:
            raise SplitError(
                f"task {task_name}: fold {fold} of {n_folds} has no clips of label "
                f"{int(np.argmin(counts))}; use fewer folds or more donors with that class"
            )
    return folds


def fold_splits(folds: np.ndarray, fold: int, n_folds: int) -> np.ndarray:
    """Train/validation/test labels for the run that tests ``fold`` in K-fold CV.

    Fold ``fold`` is the test set, fold ``(fold + 1) % n_folds`` the validation set (for
    early stopping), the others train.
    """
    folds = np.asarray(folds)
    out = np.full(folds.shape, "train", dtype=object)
    out[folds == (fold + 1) % n_folds] = "validation"
    out[folds == fold] = "test"
    return out


def check_disjoint_donors(split_table: pd.DataFrame) -> None:
    """Raise ``SplitError`` if a donor appears in more than one split (or CV fold)."""
    column = "fold" if (split_table["fold"] >= 0).any() else "split"
    spread = split_table.groupby("donor")[column].nunique()
    shared = spread[spread > 1]
    if len(shared):
        raise SplitError(
            f"donor(s) {sorted(shared.index)[:5]} occur in more than one {column}; clips of "
            "a donor are correlated, so this split would overstate accuracy"
        )


def _check_group_count(name: str, groups: np.ndarray, group_by_session: bool,
                       cv_folds: int) -> None:
    """Enough donors (or donor/session groups) that none is in two splits."""
    unit = "donor/session groups" if group_by_session else "donors"
    n_groups = len(np.unique(groups))
    if cv_folds in (1, 2):
        raise SplitError(
            f"task {name}: cross-validation needs at least 3 folds (test, validation and "
            f"train folds), got cv_folds={cv_folds}"
        )
    needed = cv_folds if cv_folds else 3
    if n_groups < needed:
        what = f"{cv_folds}-fold cross-validation" if cv_folds else "a train/validation/test split"
        raise SplitError(
            f"task {name}: {n_groups} {unit} ({sorted(np.unique(groups))}) but {what} needs "
            f"at least {needed}, so that no {unit[:-1]} is in two splits"
        )


def _assign_splits(table: pd.DataFrame, groups: np.ndarray, fractions: Mapping[str, float],
                   cv_folds: int, seed: int, name: str):
    """Split (and fold) of every clip, which clips stay after balancing, and how many were
    dropped to balance each split (fold)."""
    rng = np.random.default_rng(seed)
    dropped: dict[str, int] = {}
    keep = np.ones(len(table), dtype=bool)
    if cv_folds:
        folds = _cv_folds(table, groups, cv_folds, seed, name)
        for fold in range(cv_folds):
            fold_keep, dropped[f"fold{fold}"] = _balance(table, folds == fold, rng)
            keep &= fold_keep
        return fold_splits(folds, 0, cv_folds), folds, keep, dropped
    assignment = _holdout_assignment(table, groups, fractions, seed, name)
    for split in ("validation", "test"):
        split_keep, dropped[split] = _balance(table, assignment == split, rng)
        keep &= split_keep
    return assignment, np.full(len(table), -1, dtype=int), keep, dropped


def split_task(
    clip_files: Sequence[str | Path],
    task: Mapping,
    out_tsv: str | Path,
    out_audit: str | Path,
    train: float = 0.7,
    validation: float = 0.2,
    test: float = 0.1,
    group_by_session: bool = False,
    cv_folds: int = 0,
    seed: int = 42,
) -> pd.DataFrame:
    """Split one task's clips by donor and write the split table and the confound audit.

    Parameters
    ----------
    clip_files : clip files (``results/clips/<sample>.h5``) of all samples.
    task : a task of the config's ``tasks`` (``negative``/``positive`` or ``classes``).
    out_tsv, out_audit : ``results/splits/<task>.tsv`` and ``<task>_audit.json``.
    train, validation, test : target fractions of the clips (ignored with ``cv_folds``).
    group_by_session : keep every recording session in one split as well.
    cv_folds : 0 for one split; K >= 3 for K-fold cross-validation by donor. The ``fold``
        column then holds each clip's test fold and ``split`` the assignment of the run
        that tests fold 0 (see ``fold_splits``).
    seed : seeds the donor search and the balancing subsample.

    Returns
    -------
    The split table (columns ``SPLIT_COLUMNS``), as written.

    Raises
    ------
    SplitError
        Too few donors, a class missing from a split, or a label determined by session or
        focus; the message says which and what is needed.
    """
    name = task["name"]
    table = task_clip_table(clip_files, task)
    audit = confound_audit(table, name)
    check_confounds(audit)

    groups = split_groups(table, group_by_session)
    _check_group_count(name, groups, group_by_session, cv_folds)
    fractions = {"train": train, "validation": validation, "test": test}
    assignment, folds, keep, dropped = _assign_splits(table, groups, fractions, cv_folds, seed,
                                                      name)
    table["split"] = assignment
    table["fold"] = folds
    result = table.loc[keep, SPLIT_COLUMNS].reset_index(drop=True)
    check_disjoint_donors(result)

    audit["parameters"] = {
        "train": train, "validation": validation, "test": test,
        "group_by_session": group_by_session, "cv_folds": cv_folds, "seed": seed,
        **_class_parameters(task),
    }
    audit["balancing"] = (
        ("majority class subsampled at random to the minority class size"
         if len(task_classes(task)) == 2 else
         "every class subsampled at random to the size of the smallest class")
        + " in validation and test" + (" (in every fold)" if cv_folds else "")
    )
    audit["dropped_to_balance"] = dropped
    audit["splits"] = split_summary(result)
    audit["provenance"] = stable_provenance(clip_files=[str(p) for p in clip_files])

    out_tsv = Path(out_tsv)
    write_text_atomic(out_tsv, result.to_csv(sep="\t", index=False))
    write_text_atomic(Path(out_audit), json.dumps(audit, indent=2) + "\n")
    log.info("task %s: %s", name, json.dumps(audit["splits"]))
    return result


def _class_parameters(task: Mapping) -> dict:
    """The task's classes as its audit records them (two-class tasks: both sides)."""
    if "classes" in task:
        return {"classes": task_classes(task)}
    return {"negative": list(task["negative"]), "positive": list(task["positive"])}


def split_summary(split_table: pd.DataFrame) -> dict:
    """Donors and clips per label in each split (and fold)."""
    summary: dict[str, object] = {}
    keys = ["split"] + (["fold"] if (split_table["fold"] >= 0).any() else [])
    for key in keys:
        for value, part in split_table.groupby(key):
            summary[f"{key}={value}"] = {
                "donors": sorted(part["donor"].unique().tolist()),
                "clips": {
                    str(k): int(v) for k, v in part["label"].value_counts().sort_index().items()
                },
            }
    return summary


def read_split_table(path: str | Path) -> pd.DataFrame:
    """Read ``results/splits/<task>.tsv`` with its column types."""
    table = pd.read_csv(
        path, sep="\t", dtype={c: str for c in SPLIT_COLUMNS[:6]} | {"split": str},
        keep_default_na=False,
    )
    missing = [c for c in SPLIT_COLUMNS if c not in table.columns]
    if missing:
        raise SplitError(f"{path}: split table lacks column(s) {missing}")
    table["label"] = table["label"].astype(int)
    table["fold"] = table["fold"].astype(int)
    return table
