"""Training: streamed input, augmentation, early stopping, determinism, feature cache."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from synthetic_clips import donors_with_both, make_clip_files

from rbcflow.clipstore import read_clips
from rbcflow.dataset import (
    Augmentation,
    attach_locations,
    batch_generator,
    class_weights,
    clip_reader,
    read_clip_batch,
)
from rbcflow.models import load_model
from rbcflow.split import SplitError, read_split_table, split_task
from rbcflow.train import train_task

DA = {"name": "DA", "negative": ["native"], "positive": ["DA"]}
FAST = {
    "model": "r2plus1d", "epochs": 3, "batch_size": 16, "patience": 5, "weights": None,
    "augment_flip": True, "augment_shift_px": 1, "augment_brightness": 0.05,
}


@pytest.fixture(scope="module")
def split_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    files = make_clip_files(root / "clips", donors_with_both(6), clips_per_sample=8, seed=3)
    split_task(files, DA, root / "DA.tsv", root / "DA_audit.json", 0.5, 0.25, 0.25)
    return root, files


def test_read_clip_batch_keeps_the_requested_order(split_data):
    root, files = split_data
    located = attach_locations(read_split_table(root / "DA.tsv"), files)
    pick = located.iloc[[7, 0, 30, 3, 29]]
    batch = read_clip_batch(pick["file"].to_numpy(), pick["row"].to_numpy())
    for i, (_, row) in enumerate(pick.iterrows()):
        np.testing.assert_array_equal(batch[i], read_clips(row["file"], [row["row"]])[0])


def test_batches_shuffle_per_epoch_and_repeat_per_seed(split_data):
    root, files = split_data
    located = attach_locations(read_split_table(root / "DA.tsv"), files)
    labels = np.arange(len(located)) % 2
    read = clip_reader(located)

    def epoch_orders(seed):
        generate = batch_generator(read, labels, 8, shuffle=True, seed=seed)
        return [np.concatenate([y for _, y, _ in generate()]) for _ in range(2)]

    first, second = epoch_orders(1)
    again = epoch_orders(1)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, again[0])
    x, y, w = next(batch_generator(read, labels, 8)())
    assert x.shape == (8, 8, 16, 16, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(y, labels[:8])


def test_augmentation_preserves_content_and_bounds():
    rng = np.random.default_rng(0)
    clips = rng.uniform(0, 255, (20, 4, 12, 12)).astype(np.float32)
    flipped = Augmentation(flip=True).apply(clips, np.random.default_rng(1))
    same = np.all(flipped == clips, axis=(1, 2, 3))
    mirrored = np.all(flipped == clips[:, :, ::-1, :], axis=(1, 2, 3))
    assert np.all(same | mirrored) and same.any() and mirrored.any()
    shifted = Augmentation(shift_px=2).apply(clips, np.random.default_rng(1))
    # a shift moves the interior: some offset within +-2 px maps it exactly
    for i in range(len(clips)):
        assert any(
            np.array_equal(shifted[i, :, 2:10, 2:10], clips[i, :, 2 + dy: 10 + dy, 2 + dx: 10 + dx])
            for dy in range(-2, 3) for dx in range(-2, 3)
        )
    bright = Augmentation(brightness=0.1).apply(clips, np.random.default_rng(1))
    ratio = bright.sum(axis=(1, 2, 3)) / clips.sum(axis=(1, 2, 3))
    assert bright.max() <= 255 and np.all((ratio > 0.85) & (ratio < 1.1))
    assert not Augmentation().active


def test_class_weights_equalise_the_classes():
    weights = class_weights(np.array([0] * 30 + [1] * 10))
    assert weights[0] * 30 == pytest.approx(weights[1] * 10)
    assert weights[0] * 30 + weights[1] * 10 == pytest.approx(40)


def test_same_seed_same_model(split_data, tmp_path):
    root, files = split_data
    runs = {}
    for name, threads in (("a", 1), ("b", 2)):
        train_task(
            root / "DA.tsv", files, tmp_path / name, FAST, seed=7, ablations=False,
            reader_threads=threads,
        )
        runs[name] = pd.read_csv(tmp_path / name / "history.csv")
    assert list(runs["a"].columns) == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    # identical to the last bit: weights, batch order, augmentation and ops all seeded, and
    # the batches do not depend on how many threads read them
    pd.testing.assert_frame_equal(runs["a"], runs["b"], check_exact=True)
    # and the summary holds nothing run-specific (timings go to the run record)
    summaries = [(tmp_path / n / "train_summary.json").read_bytes() for n in ("a", "b")]
    assert summaries[0] == summaries[1]
    weights = [load_model(tmp_path / n / "model.keras").get_weights() for n in ("a", "b")]
    for wa, wb in zip(*weights, strict=True):
        np.testing.assert_array_equal(wa, wb)
    # and the saved files are equal bytes (no save date, no memory addresses), so DVC
    # sees the same model from another run or another clone
    assert (tmp_path / "a" / "model.keras").read_bytes() == \
        (tmp_path / "b" / "model.keras").read_bytes()


def test_early_stopping_restores_the_best_epoch(split_data, tmp_path):
    root, files = split_data
    params = {**FAST, "epochs": 12, "patience": 2, "learning_rate": 0.01}
    summary = train_task(root / "DA.tsv", files, tmp_path, params, seed=1, ablations=True)
    history = pd.read_csv(tmp_path / "history.csv")
    assert summary["epochs_run"] == len(history)
    assert summary["best_epoch"] == int(history["val_loss"].idxmin()) + 1
    assert summary["epochs_run"] == 12 or summary["epochs_run"] == summary["best_epoch"] + 2
    # the saved model is the best epoch's: its validation loss is the minimum
    located = attach_locations(read_split_table(root / "DA.tsv"), files)
    validation = located[located["split"] == "validation"]
    x = clip_reader(validation)(np.arange(len(validation))).astype("float32")[..., None]
    p = load_model(tmp_path / "model.keras").predict(x, verbose=0)
    loss = -np.mean(np.log(p[np.arange(len(p)), validation["label"].to_numpy()]))
    assert loss == pytest.approx(history["val_loss"].min(), rel=1e-3)
    assert (tmp_path / "baseline_frame.keras").exists()
    recorded = json.loads((tmp_path / "train_summary.json").read_text())
    assert recorded["runs"][0]["baseline_frame"]["epochs_run"] >= 1


def test_early_stopping_waits_for_min_epochs():
    # a model that cannot improve (learning rate 0) stops after `patience` epochs, but
    # not before `min_epochs`: a model from scratch may sit at chance for its first ones
    import keras

    from rbcflow.train import fit_model

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 2, 32)
    data = (x, y)

    def epochs_run(min_epochs: int) -> int:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, "softmax")])
        model.compile(keras.optimizers.SGD(learning_rate=0.0),
                      "sparse_categorical_crossentropy", metrics=["accuracy"])
        history, _, _ = fit_model(model, _batched(data), _batched(data), epochs=20,
                                  patience=1, min_epochs=min_epochs)
        return len(history)

    assert epochs_run(0) == 2
    assert epochs_run(6) == 8


def _batched(data):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(data).batch(16)


def test_a_split_sharing_donors_is_refused(split_data, tmp_path):
    root, files = split_data
    table = read_split_table(root / "DA.tsv")
    donor = table.loc[table["split"] == "train", "donor"].iloc[0]
    moved = table.index[table["donor"] == donor][:3]
    table.loc[moved, "split"] = "test"  # three clips of a train donor moved to test
    table.to_csv(tmp_path / "leaky.tsv", sep="\t", index=False)
    with pytest.raises(SplitError, match="more than one split"):
        train_task(tmp_path / "leaky.tsv", files, tmp_path / "m", FAST)


def test_paper_model_trains_on_cached_features(tmp_path):
    files = make_clip_files(
        tmp_path / "clips", donors_with_both(3), clips_per_sample=4, n_frames=4, size=32
    )
    split_task(files, DA, tmp_path / "s.tsv", tmp_path / "s.json")
    params = {**FAST, "model": "paper", "epochs": 2, "batch_size": 8}
    summary = train_task(tmp_path / "s.tsv", files, tmp_path / "m", params, ablations=False)
    assert summary["epochs_run"] == 2
    model = load_model(tmp_path / "m" / "model.keras")
    assert model.get_layer("backbone").layer.name == "efficientnetb0"
    assert not list((tmp_path / "m").glob(".features_*"))  # the cache is cleaned up


def test_models_list_defaults_to_the_model_and_names_the_folders(tmp_path):
    from rbcflow.layout import model_folder, trained_models
    from rbcflow.params import section_with_defaults

    assert trained_models(section_with_defaults("train", {"model": "cnn_lstm"})) == ["cnn_lstm"]
    both = section_with_defaults("train", {"model": "frame", "models": ["slowfast", "paper"]})
    assert trained_models(both) == ["slowfast", "paper"]
    assert model_folder(tmp_path, "DA") == tmp_path / "models" / "DA"
    assert model_folder(tmp_path, "DA", "paper") == tmp_path / "models" / "DA" / "extra" / "paper"


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory):
    """Three donors x two conditions x four 8-frame 16 px clips: enough to run two epochs."""
    root = tmp_path_factory.mktemp("new_models")
    files = make_clip_files(root / "clips", donors_with_both(3), clips_per_sample=4, seed=5)
    split_task(files, DA, root / "DA.tsv", root / "DA_audit.json")
    return root, files


@pytest.mark.parametrize("name", ["slowfast", "i3d_lstm", "convlstm"])
def test_new_models_train_two_epochs_and_reload_in_safe_mode(name, tiny_split, tmp_path,
                                                             monkeypatch):
    import rbcflow.train as train_module

    root, files = tiny_split
    saved = {}
    save = train_module.save_model
    monkeypatch.setattr(train_module, "save_model",
                        lambda model, path: (saved.setdefault(path.name, model), save(model, path)))
    params = {**FAST, "epochs": 2, "patience": 2, "batch_size": 8, "i3d_width": 0.125}
    summary = train_task(root / "DA.tsv", files, tmp_path, params, seed=3, ablations=False,
                         model_name=name, runtime_path=tmp_path / "logs" / "run.json")
    assert summary["model"] == name and summary["epochs_run"] == 2
    located = attach_locations(read_split_table(root / "DA.tsv"), files)
    x = clip_reader(located)(np.arange(len(located))).astype("float32")[..., None]
    reloaded = load_model(tmp_path / "model.keras")  # safe_mode=True
    assert reloaded.name == name
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0),
                                  saved["model.keras"].predict(x, verbose=0))
    if name == "i3d_lstm":  # the frozen I3D's window features were cached, then removed
        assert not reloaded.get_layer("backbone").trainable_weights
        assert not list(tmp_path.glob(".features_*"))
    # timings, device and host are in the run record, not in train_summary.json
    on_disk = (tmp_path / "train_summary.json").read_text()
    assert not {"seconds", "created", "host", "git_revision"} & set(json.loads(on_disk))
    assert '"seconds"' not in on_disk and '"created"' not in on_disk
    run = json.loads((tmp_path / "logs" / "run.json").read_text())
    assert run["device"].endswith("CPU:0") and run["logical_devices"]
    assert run["train_clips_per_s"] > 0 and run["seconds"] > 0
    assert run["runs"][0]["train_clips_per_s"] == pytest.approx(
        summary["runs"][0]["n_train"] * 2 / run["runs"][0]["seconds"], rel=0.01)
