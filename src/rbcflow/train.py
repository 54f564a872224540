"""Training of a task's models: seeds, devices, early stopping, feature caches.

``train_task`` reads a split table (``results/splits/<task>.tsv``) and writes into
``results/models/<task>/``: ``model.keras``, ``history.csv`` and ``train_summary.json``,
plus ``baseline_frame.keras`` (the single-frame ablation) when ablations are on. With a
cross-validated split (``fold`` >= 0) one model is trained per fold, under ``fold<k>/``;
the top-level ``model.keras`` is fold 0's and ``history.csv`` holds every fold. The other
models of ``train.models`` are trained the same way into ``extra/<model>/``
(``rbcflow.layout.trained_models`` and ``model_folder``).

The models with a frozen backbone (``paper``, ``i3d_lstm``) run the backbone once over
the clips and train their head on the cached features.

``train_summary.json`` holds only what the same config and seed reproduce bit for bit;
the facts of one run (seconds, clips per second, device, host, time) go to a separate
run record (``runtime_path``; the workflow puts it in its logs folder).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import shutil
import time
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rbcflow.dataset import (
    Augmentation,
    array_dataset,
    attach_locations,
    batch_generator,
    class_weights,
    clip_reader,
    clip_shape,
    make_dataset,
    n_classes_of,
)
from rbcflow.io.atomic import atomic_path, write_text_atomic
from rbcflow.params import section_with_defaults
from rbcflow.provenance import stable_provenance, utc_now
from rbcflow.split import check_disjoint_donors, fold_splits, read_split_table

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]


def training_device() -> dict[str, object]:
    """The device TensorFlow places training on (its first GPU when it sees one) and every
    logical device it sees (``tf.config.list_logical_devices``)."""
    import tensorflow as tf

    devices = tf.config.list_logical_devices()
    gpus = [d.name for d in devices if d.device_type == "GPU"]
    cpus = [d.name for d in devices if d.device_type == "CPU"]
    return {"device": (gpus or cpus or ["unknown"])[0],
            "logical_devices": [f"{d.name} ({d.device_type})" for d in devices]}


def configure_runtime(seed: int, mixed_precision: bool = False) -> dict[str, object]:
    """Seed everything, make ops deterministic, and set up a GPU if one is visible.

    GPU memory growth is switched on so TensorFlow does not claim the whole card; mixed
    precision (float16 compute, float32 weights) is used only on a GPU, where it pays.
    Returns a description of what was set.
    """
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised by an earlier call in this process
            pass
    policy = "mixed_float16" if (mixed_precision and gpus) else "float32"
    if mixed_precision and not gpus:
        log.info("mixed precision asked for but no GPU is visible; training in float32")
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    return {"policy": policy, "seed": seed}


def _history_frame(history: Mapping[str, list[float]]) -> pd.DataFrame:
    frame = pd.DataFrame({k: history.get(k, []) for k in HISTORY_COLUMNS[1:]})
    frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    return frame


def fit_model(
    model,
    train_data,
    validation_data,
    epochs: int,
    patience: int,
    min_epochs: int = 0,
) -> tuple[pd.DataFrame, int, float]:
    """Fit with early stopping on validation loss, best weights restored.

    Early stopping counts only after ``min_epochs``: a video model trained from scratch
    can sit at chance (validation loss ~ ln 2) for its first epochs before it finds the
    cells, and stopping there keeps an untrained model.

    Returns the history (one row per epoch, epochs counted from 1), the best epoch and
    the seconds spent.
    """
    import keras

    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True,
        start_from_epoch=min_epochs,
    )
    # one line per epoch in the job's log: a long training shows its progress, and an
    # interrupted one how far it came
    progress = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: log.info(
        "epoch %d/%d: %s", epoch + 1, epochs,
        ", ".join(f"{key} {float(value):.4g}" for key, value in sorted((logs or {}).items()))))
    start = time.perf_counter()
    result = model.fit(
        train_data, validation_data=validation_data, epochs=epochs, callbacks=[stop, progress],
        shuffle=False, verbose=0,  # the dataset shuffles itself, seeded per epoch
    )
    seconds = time.perf_counter() - start
    history = _history_frame(result.history)
    best_epoch = int(history["val_loss"].idxmin()) + 1 if len(history) else 0
    return history, best_epoch, seconds


def _datasets(located, params, seed, input_shape, read=None, reader_threads=1):
    """Training (shuffled, augmented, class-weighted) and validation datasets."""
    train = located[located["split"] == "train"]
    validation = located[located["split"] == "validation"]
    read_train = read["train"] if read else clip_reader(train)
    read_validation = read["validation"] if read else clip_reader(validation)
    weights = None
    if params["class_weight"]:
        per_class = class_weights(train["label"].to_numpy(), n_classes_of(located["label"]))
        weights = np.array([per_class[label] for label in train["label"]], dtype=np.float32)
    augmentation = None if read else Augmentation.from_params(params)
    batch = params["batch_size"]
    train_data = make_dataset(
        batch_generator(
            read_train, train["label"].to_numpy(), batch, weights, shuffle=True, seed=seed,
            augmentation=augmentation, reader_threads=reader_threads,
        ),
        input_shape, len(train), batch,
    )
    validation_data = make_dataset(
        batch_generator(
            read_validation, validation["label"].to_numpy(), batch,
            reader_threads=reader_threads,
        ),
        input_shape, len(validation), batch,
    )
    return train_data, validation_data


def cache_features(extractor, located: pd.DataFrame, path: Path, batch_size: int) -> None:
    """Run the frozen backbone once over the clips and store the features (``.npy``).

    The file is memory-mapped when read back: small caches stay in the page cache and
    cost no more than an array in memory, large ones are read a batch at a time.
    """
    read = clip_reader(located)
    shape = tuple(int(d) for d in extractor.output.shape[1:])
    features = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.float32, shape=(len(located), *shape)
    )
    for start in range(0, len(located), batch_size):
        index = np.arange(start, min(start + batch_size, len(located)))
        clips = read(index).astype(np.float32)[..., None]
        features[start: start + len(index)] = np.asarray(
            extractor.predict_on_batch(clips), dtype=np.float32
        )
    features.flush()
    del features


def feature_reader(path: Path):
    """positions -> cached features (n, T, h, w, C) from a ``cache_features`` file."""
    features = np.load(path, mmap_mode="r")
    return lambda index: np.asarray(features[np.asarray(index)])


def backbone_weights(model_name: str, params: Mapping) -> str | None:
    """The backbone weights a frozen-backbone model is built with (``train.weights`` for
    ``paper``, ``train.i3d_weights`` for ``i3d_lstm``)."""
    return params["i3d_weights"] if model_name == "i3d_lstm" else params["weights"]


def train_feature_model(
    located, params, seed, input_shape, work_dir: Path, model_name: str = "paper",
    memory_limit_gb=2.0, reader_threads=1,
):
    """Train a frozen-backbone model (seed 000's ``paper``, seed 002's ``i3d_lstm``):
    backbone features cached once, the head trained on them.

    Features up to ``memory_limit_gb`` are trained from memory; larger caches are
    streamed from the memory-mapped file like clips.
    """
    from rbcflow.models import build_feature_model, compile_model

    if Augmentation.from_params(params).active:
        log.info(
            "%s model: augmentation is not applied (the frozen backbone's features are "
            "computed once, from the clips as recorded)", model_name,
        )
    options = {"width": params["i3d_width"]} if model_name == "i3d_lstm" else {}
    model, extractor, head = build_feature_model(
        model_name, input_shape, backbone_weights(model_name, params),
        n_classes=n_classes_of(located["label"]), **options
    )
    compile_model(head, params["learning_rate"])
    feature_shape = tuple(int(d) for d in extractor.output.shape[1:])
    start = time.perf_counter()
    caches = {}
    for split in ("train", "validation"):
        part = located[located["split"] == split].reset_index(drop=True)
        caches[split] = work_dir / f".features_{split}.npy"
        cache_features(extractor, part, caches[split], params["batch_size"])
    cache_seconds = time.perf_counter() - start
    try:
        n_bytes = sum(path.stat().st_size for path in caches.values())
        if n_bytes <= memory_limit_gb * 2**30:
            train = located[located["split"] == "train"]
            validation = located[located["split"] == "validation"]
            weights = None
            if params["class_weight"]:
                per_class = class_weights(train["label"].to_numpy(),
                                          n_classes_of(located["label"]))
                weights = np.array([per_class[v] for v in train["label"]], dtype=np.float32)
            train_data = array_dataset(
                np.load(caches["train"]), train["label"].to_numpy(), params["batch_size"],
                weights, shuffle=True, seed=seed,
            )
            validation_data = array_dataset(
                np.load(caches["validation"]), validation["label"].to_numpy(),
                params["batch_size"],
            )
        else:
            readers = {split: feature_reader(path) for split, path in caches.items()}
            train_data, validation_data = _datasets(
                located, params, seed, feature_shape, readers, reader_threads
            )
        history, best, seconds = fit_model(
            head, train_data, validation_data, params["epochs"], params["patience"],
            params["min_epochs"],
        )
    finally:
        for path in caches.values():
            path.unlink(missing_ok=True)
    return model, history, best, seconds + cache_seconds


def train_one(
    located, params, seed, input_shape, model_name: str, work_dir: Path, reader_threads=1
):
    """Build, compile and fit one model on the located split; return model and history."""
    import keras

    from rbcflow.models import FEATURE_MODELS, build_model, compile_model

    # Keras numbers names per process ("adam", then "adam_1") and saves them in the
    # file: a fresh session gives every model the same names, however many came before.
    # The session holds the precision policy too, so it is kept.
    policy = keras.mixed_precision.global_policy()
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(seed)
    if model_name in FEATURE_MODELS:
        return train_feature_model(
            located, params, seed, input_shape, work_dir, model_name,
            reader_threads=reader_threads,
        )
    model = compile_model(
        build_model(model_name, input_shape, n_classes=n_classes_of(located["label"])),
        params["learning_rate"],
    )
    train_data, validation_data = _datasets(
        located, params, seed, input_shape, reader_threads=reader_threads
    )
    history, best, seconds = fit_model(
        model, train_data, validation_data, params["epochs"], params["patience"],
        params["min_epochs"],
    )
    return model, history, best, seconds


def save_model(model, path: Path) -> None:
    """Save a model atomically as ``.keras``: the same weights give the same bytes.

    Keras stamps the archive with the time of saving (``date_saved`` in metadata.json,
    the weights member's zip date) and numbers shared objects by their memory address
    (``shared_object_id`` in config.json), so every run, and every clone, wrote another
    file and DVC saw a changed model. :func:`normalise_keras_archive` fixes both.
    """
    with atomic_path(path) as tmp:
        model.save(tmp)
        normalise_keras_archive(tmp)


KERAS_FIXED_DATE = "1980-01-01@00:00:00"
_SHARED_ID = re.compile(r'"shared_object_id": (\d+)')


def normalise_keras_archive(path: Path) -> None:
    """Rewrite a ``.keras`` zip in place with fixed dates and shared-object ids numbered
    in order of appearance (loading only matches equal ids, so sharing is kept)."""
    with zipfile.ZipFile(path) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    numbers: dict[str, str] = {}

    def renumber(match: re.Match) -> str:
        number = numbers.setdefault(match.group(1), str(len(numbers) + 1))
        return f'"shared_object_id": {number}'

    with zipfile.ZipFile(path, "w") as archive:
        for info, data in members:
            if info.filename == "metadata.json":
                metadata = json.loads(data)
                metadata["date_saved"] = KERAS_FIXED_DATE
                data = json.dumps(metadata).encode()
            elif info.filename == "config.json":
                data = _SHARED_ID.sub(renumber, data.decode()).encode()
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type = info.compress_type
            fixed.external_attr = info.external_attr
            archive.writestr(fixed, data)


def _throughput(clips: int, epochs: int, seconds: float) -> float | None:
    """Training clips per second (clips seen over all epochs / wall time of the fits)."""
    return float(f"{clips * epochs / seconds:.4g}") if seconds > 0 else None


def _train_run(located, params, seed, input_shape, out_dir: Path, fold: int, n_folds: int,
               baseline: bool, reader_threads: int, model_name: str
               ) -> tuple[dict, dict, pd.DataFrame]:
    """One training run (the only one, or fold ``fold``): the model and its baseline.

    Returns what the run reproduces (epochs, best epoch, counts), its timings (seconds,
    clips per second) and its history.
    """
    run_dir = out_dir / f"fold{fold}" if n_folds else out_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    run = located.copy()
    if n_folds:
        run["split"] = fold_splits(run["fold"].to_numpy(), fold, n_folds)
    model, history, best, seconds = train_one(
        run, params, seed, input_shape, model_name, run_dir, reader_threads
    )
    save_model(model, run_dir / "model.keras")
    n_train = int((run["split"] == "train").sum())
    record = {
        "fold": fold if n_folds else -1, "epochs_run": len(history), "best_epoch": best,
        "n_train": n_train, "n_validation": int((run["split"] == "validation").sum()),
    }
    timing = {"fold": record["fold"], "seconds": round(seconds, 3),
              "train_clips_per_s": _throughput(n_train, len(history), seconds)}
    if baseline:
        frame_model, frame_history, frame_best, frame_seconds = train_one(
            run, params, seed, input_shape, "frame", run_dir, reader_threads
        )
        save_model(frame_model, run_dir / "baseline_frame.keras")
        record["baseline_frame"] = {"epochs_run": len(frame_history), "best_epoch": frame_best}
        timing["baseline_frame"] = {
            "seconds": round(frame_seconds, 3),
            "train_clips_per_s": _throughput(n_train, len(frame_history), frame_seconds),
        }
    if n_folds:
        history.insert(0, "fold", fold)
        write_text_atomic(run_dir / "history.csv", history.to_csv(index=False))
    log.info("trained %s %s %s", model_name, json.dumps(record), json.dumps(timing))
    return record, timing, history


def train_task(
    split_tsv: str | Path,
    clip_files: Sequence[str | Path],
    out_dir: str | Path,
    params: Mapping,
    seed: int = 42,
    ablations: bool = True,
    require_disjoint_donors: bool = True,
    reader_threads: int = 1,
    model_name: str | None = None,
    runtime_path: str | Path | None = None,
) -> dict:
    """Train one of the task's models (and the single-frame baseline) from its split table.

    Parameters
    ----------
    split_tsv : ``results/splits/<task>.tsv``.
    clip_files : the clip files holding the split's clips.
    out_dir : the model's folder (``rbcflow.layout.model_folder``:
        ``results/models/<task>/`` for the task's model).
    params : the config's ``train`` section (missing keys take the schema defaults).
    seed : seeds weights, batch order and augmentation; same seed, same model.
    ablations : also train ``baseline_frame.keras`` (not needed when the model is
        ``frame`` itself).
    require_disjoint_donors : refuse a split table in which a donor is in two splits.
        Switch off only to demonstrate what such a leak does.
    reader_threads : threads that read and augment batches ahead of training; 1 (a
        training job gets one core) reads in the input pipeline's own thread. Batches,
        and so the trained model, do not depend on it.
    model_name : the model to train; default ``train.model``.
    runtime_path : where to write the run record (JSON: seconds and training clips per
        second per run, the device used, host, time); not written when None.

    Returns
    -------
    The training summary (written as ``train_summary.json``) with the run record added
    under ``"run"``.
    """
    params = section_with_defaults("train", params)
    model_name = model_name or params["model"]
    params = {k: v for k, v in params.items() if k != "models"} | {"model": model_name}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runtime = configure_runtime(seed, params["mixed_precision"])
    table = read_split_table(split_tsv)
    if require_disjoint_donors:
        check_disjoint_donors(table)
    located = attach_locations(table, clip_files)
    input_shape = (*clip_shape(located), 1)
    n_folds = int(table["fold"].max()) + 1
    baseline = ablations and model_name != "frame"

    runs, timings, histories = [], [], []
    for fold in range(max(n_folds, 1)):
        record, timing, history = _train_run(located, params, seed, input_shape, out_dir,
                                             fold, n_folds, baseline, reader_threads,
                                             model_name)
        histories.append(history)
        runs.append(record)
        timings.append(timing)

    if n_folds:
        shutil.copyfile(out_dir / "fold0" / "model.keras", out_dir / ".model.keras.part")
        (out_dir / ".model.keras.part").replace(out_dir / "model.keras")
    write_text_atomic(out_dir / "history.csv", pd.concat(histories).to_csv(index=False))
    summary = {
        "model": model_name,
        "epochs_run": runs[0]["epochs_run"],
        "best_epoch": runs[0]["best_epoch"],
        "cv_folds": n_folds,
        "runs": runs,
        "input_shape": list(input_shape),
        "params": params,
        "runtime": runtime,
        "provenance": stable_provenance(split_tsv=str(split_tsv)),
    }
    write_text_atomic(out_dir / "train_summary.json", json.dumps(summary, indent=2) + "\n")
    run = run_record(model_name, out_dir, timings)
    if runtime_path is not None:
        write_text_atomic(Path(runtime_path), json.dumps(run, indent=2) + "\n")
    log.info("device %s, %s training clips/s", run["device"], run["train_clips_per_s"])
    return {**summary, "run": run}


def run_record(model_name: str, out_dir: Path, timings: Sequence[Mapping]) -> dict:
    """The facts of one training run that another run does not reproduce."""
    seconds = sum(t["seconds"] for t in timings)
    clips = sum((t["train_clips_per_s"] or 0) * t["seconds"] for t in timings)
    return {
        "model": model_name, "model_dir": str(out_dir),
        "seconds": round(seconds, 3),
        "train_clips_per_s": float(f"{clips / seconds:.4g}") if seconds > 0 else None,
        "runs": list(timings),
        **training_device(),
        # the GPU(s) a scheduler handed the job (SLURM's GRES), or None
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "host": platform.node(),
        "created": utc_now(),
    }
