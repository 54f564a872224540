"""The model bundle: what applying a trained model to new recordings needs, in one file.

``results/models/<task>/bundle.json`` sits beside ``model.keras`` and holds the class
names and the conditions behind each, the parameters of the per-recording chain the
model's clips were cut with (as the config states them, and resolved for every pixel
size and frame rate of the training recordings), the test confusion matrix (for
correcting a sample's composition, ``rbcflow.composition``), and provenance (hashes of
the model, the split, the training summary and the metrics). The folder, copied
elsewhere, is all ``rbcflow predict`` needs.

The bundle is built from what training and evaluation wrote (``train_summary.json``,
``metrics.json``, the split) and from the task's clip files, whose recorded parameters
must be those the config resolves to: a bundle never claims parameters its model was
not trained on. Like every output DVC hashes it holds no time, host or commit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rbcflow.config import task_classes
from rbcflow.params import ChainParams, resolve_chain_params, section_with_defaults

log = logging.getLogger(__name__)

BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = "rbcflow-model-bundle"
BUNDLE_VERSION = 1
#: The config sections the per-recording chain reads (``rbcflow.preprocess``).
CHAIN_CONFIG_SECTIONS = ("ingest", "background", "detect", "track", "clips")
_REQUIRED = ("format", "format_version", "task", "classes", "model", "chain", "test")


class BundleError(ValueError):
    """A bundle is missing, malformed, or does not fit the model or the clips it meets."""


def chain_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The chain's config sections (completed from the schema) and the seed."""
    out: dict[str, Any] = {"seed": int(config["seed"])}
    for name in CHAIN_CONFIG_SECTIONS:
        out[name] = section_with_defaults(name, config.get(name))
    return out


def _units(params: Mapping[str, Any], source: object) -> tuple[float, float]:
    units = params.get("units") or {}
    try:
        return float(units["fps"]), float(units["um_per_px"])
    except (KeyError, TypeError, ValueError):
        raise BundleError(f"{source}: its recorded parameters hold no units (fps, um_per_px); "
                          "a file from an older version: rebuild it") from None


def clip_file_differences(chain: Mapping[str, Any], attrs: Mapping[str, Any],
                          source: object) -> list[str]:
    """Parameters of a clip file (its root attributes) that differ from ``chain``'s.

    ``chain`` is :func:`chain_config`'s mapping; it is resolved for the file's own frame
    rate and pixel size, so only what the config states is compared.
    """
    recorded = attrs.get("params")
    if not isinstance(recorded, Mapping):
        raise BundleError(f"{source}: the clip file records no parameters")
    fps, um_per_px = _units(recorded, source)
    expected = resolve_chain_params(chain, fps, um_per_px)
    return expected.matches(recorded)


def _sha256(path: Path) -> str:
    from rbcflow.provenance import sha256_file

    return sha256_file(path)


def _resolved_sets(chain: Mapping[str, Any], clip_files: Sequence[str | Path]) -> list[dict]:
    """Per (fps, um_per_px) of the training clip files: the resolved parameters.

    Every file's recorded parameters are checked against ``chain`` first.
    """
    from rbcflow.clipstore import read_clip_attrs

    by_units: dict[tuple[float, float], int] = {}
    for path in clip_files:
        attrs = read_clip_attrs(path)
        differences = clip_file_differences(chain, attrs, path)
        if differences:
            raise BundleError(f"{path}: cut with other parameters than the config's "
                              f"({'; '.join(differences)}); rerun its preprocessing")
        units = _units(attrs["params"], path)
        by_units[units] = by_units.get(units, 0) + 1
    out = []
    for (fps, um_per_px), count in sorted(by_units.items()):
        params = resolve_chain_params(chain, fps, um_per_px)
        out.append({"units": {"fps": fps, "um_per_px": um_per_px}, "n_clip_files": count,
                    "pipeline_id": params.pipeline_id, "params": params.as_dict()})
    return out


def _split_record(split_tsv: Path) -> dict[str, Any]:
    from rbcflow.split import read_split_table

    table = read_split_table(split_tsv)
    counts = {}
    for split, part in table.groupby("split"):
        counts[str(split)] = {
            "clips": int(len(part)), "donors": int(part["donor"].nunique()),
            "per_label": {str(k): int(v)
                          for k, v in part["label"].value_counts().sort_index().items()},
        }
    return {"file": split_tsv.name, "sha256": _sha256(split_tsv), "counts": counts}


def build_bundle(
    model_dir: str | Path,
    task: Mapping[str, Any],
    split_tsv: str | Path,
    clip_files: Sequence[str | Path],
    config: Mapping[str, Any],
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Write ``bundle.json`` for a trained and evaluated task; return its contents.

    Parameters
    ----------
    model_dir : the task's model folder (``model.keras``, ``train_summary.json``,
        ``metrics.json``).
    task : the task as configured (``name`` and its classes).
    split_tsv : the task's split table.
    clip_files : the clip files the model was trained and tested on.
    config : the workflow config, or its ``seed`` and chain sections.
    out : where to write (default ``model_dir/bundle.json``).
    """
    from rbcflow.io.atomic import write_text_atomic
    from rbcflow.provenance import stable_provenance

    model_dir, split_tsv = Path(model_dir), Path(split_tsv)
    files = {name: model_dir / name for name in
             ("model.keras", "train_summary.json", "metrics.json")}
    for path in files.values():
        if not path.is_file():
            raise BundleError(f"{path}: missing; train and evaluate the task first")
    summary = json.loads(files["train_summary.json"].read_text(encoding="utf-8"))
    metrics = json.loads(files["metrics.json"].read_text(encoding="utf-8"))
    if metrics.get("task") != task["name"]:
        raise BundleError(f"{files['metrics.json']}: metrics of task {metrics.get('task')!r}, "
                          f"not {task['name']!r}")
    classes = task_classes(task)
    confusion = np.asarray(metrics["test"]["confusion_matrix"], dtype=np.int64)
    if confusion.shape != (len(classes), len(classes)):
        raise BundleError(f"{files['metrics.json']}: test confusion matrix of shape "
                          f"{confusion.shape}, the task has {len(classes)} classes")
    chain = chain_config(config)
    record = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "task": task["name"],
        "classes": classes,
        "model": {"file": "model.keras", "sha256": _sha256(files["model.keras"]),
                  "architecture": summary.get("model"),
                  "input_shape": summary.get("input_shape")},
        "clips": chain["clips"],
        "chain": chain,
        "trained_on": _resolved_sets(chain, clip_files),
        "test": {
            "confusion_matrix": confusion.tolist(),
            "rows": "true class", "columns": "predicted class",
            "accuracy": (metrics.get("accuracy") or {}).get("test"),
            "balanced_accuracy": metrics["test"].get("balanced_accuracy"),
            "n_donors": metrics["test"].get("n_test_donors"),
        },
        "split": _split_record(split_tsv),
        "provenance": stable_provenance(
            train_summary_sha256=_sha256(files["train_summary.json"]),
            metrics_sha256=_sha256(files["metrics.json"]),
        ),
    }
    target = Path(out) if out is not None else model_dir / BUNDLE_FILE
    write_text_atomic(target, json.dumps(record, indent=2, sort_keys=False) + "\n")
    log.info("%s: bundle of task %s (%d classes, %d parameter set(s))", target, task["name"],
             len(classes), len(record["trained_on"]))
    return record


@dataclass(frozen=True)
class Bundle:
    """A loaded, checked bundle (:func:`load_bundle`); the model is loaded on demand."""

    directory: Path
    record: dict

    @property
    def task(self) -> str:
        return str(self.record["task"])

    @property
    def class_names(self) -> list[str]:
        return [c["name"] for c in self.record["classes"]]

    @property
    def conditions(self) -> dict[str, list[str]]:
        return {c["name"]: list(c["conditions"]) for c in self.record["classes"]}

    @property
    def confusion(self) -> np.ndarray:
        return np.asarray(self.record["test"]["confusion_matrix"], dtype=np.int64)

    @property
    def chain(self) -> dict[str, Any]:
        return self.record["chain"]

    def chain_params(self, fps: float, um_per_px: float) -> ChainParams:
        """The chain's parameters for a recording of this frame rate and pixel size."""
        return resolve_chain_params(self.chain, fps, um_per_px)

    def check_clip_file(self, path: str | Path) -> None:
        """Refuse a clip file cut with other parameters than the model's, naming them."""
        from rbcflow.clipstore import read_clip_attrs

        differences = clip_file_differences(self.chain, read_clip_attrs(path), path)
        if differences:
            raise BundleError(
                f"{path}: cut with other parameters than the model of task {self.task} was "
                f"trained on: {'; '.join(differences)}. Give the recording itself, and "
                "predict cuts its clips with the model's parameters")

    def load_model(self):
        """The Keras model, checked against the bundle (hash, input, classes); safe mode."""
        from rbcflow.models import load_model

        path = self.directory / self.record["model"]["file"]
        if not path.is_file():
            raise BundleError(f"{path}: the bundle's model file is missing")
        if _sha256(path) != self.record["model"]["sha256"]:
            raise BundleError(f"{path}: not the model the bundle describes (SHA-256 differs); "
                              "rebuild the bundle")
        model = load_model(path)
        n_out = int(model.output_shape[-1])
        if n_out != len(self.class_names):
            raise BundleError(f"{path}: the model has {n_out} outputs, the bundle "
                              f"{len(self.class_names)} classes")
        expected = self.record["model"].get("input_shape")
        actual = list(model.input_shape[1:])
        if expected and actual != list(expected):
            raise BundleError(f"{path}: model input {actual}, the bundle says {expected}")
        return model


def _check_record(record: object, source: Path) -> dict:
    if not isinstance(record, dict) or record.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{source}: not an rbcflow model bundle")
    missing = [key for key in _REQUIRED if key not in record]
    if missing:
        raise BundleError(f"{source}: bundle lacks {missing}")
    if record["format_version"] != BUNDLE_VERSION:
        raise BundleError(f"{source}: bundle format {record['format_version']}, this version "
                          f"of rbcflow reads {BUNDLE_VERSION}")
    classes = record["classes"]
    if (not isinstance(classes, list) or len(classes) < 2
            or any(not isinstance(c, dict) or "name" not in c for c in classes)):
        raise BundleError(f"{source}: classes must be a list of at least two {{name, conditions}}")
    confusion = np.asarray(record["test"].get("confusion_matrix"))
    if confusion.shape != (len(classes), len(classes)):
        raise BundleError(f"{source}: test confusion matrix of shape {confusion.shape} for "
                          f"{len(classes)} classes")
    missing_sections = [s for s in ("seed", *CHAIN_CONFIG_SECTIONS) if s not in record["chain"]]
    if missing_sections:
        raise BundleError(f"{source}: chain parameters lack {missing_sections}")
    return record


def load_bundle(model_dir: str | Path) -> Bundle:
    """Read and check ``MODEL_DIR/bundle.json`` (the model itself loads on demand)."""
    model_dir = Path(model_dir)
    path = model_dir / BUNDLE_FILE
    if not path.is_file():
        raise BundleError(
            f"{path}: no model bundle in {model_dir}. A model folder needs its bundle.json "
            f"(the workflow writes it: `snakemake {model_dir}/{BUNDLE_FILE}`)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    return Bundle(model_dir, _check_record(record, path))
