"""Model builders: shapes, saving with safe_mode, what each model can and cannot see."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from rbcflow.models import (
    ModelConfigError,
    build_backbone,
    build_model,
    build_paper,
    load_model,
)

SHAPE = (8, 16, 16, 1)


def _clips(n=3, shape=SHAPE, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, *shape)).astype("float32")


@pytest.mark.parametrize("name", ["r2plus1d", "cnn_lstm", "frame"])
def test_small_models_save_and_load_safely(tmp_path, name):
    keras.utils.set_random_seed(1)
    model = build_model(name, SHAPE)
    x = _clips()
    p = model.predict(x, verbose=0)
    assert p.shape == (3, 2)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    # small enough for the 2-core demo budget
    assert model.count_params() < 50_000
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), p, rtol=1e-5, atol=1e-6)


def test_frame_model_sees_only_the_middle_frame():
    keras.utils.set_random_seed(2)
    model = build_model("frame", SHAPE)
    x = _clips(2)
    changed = x.copy()
    changed[:, :4] = 0  # frames 0-3 changed, middle frame (4) kept
    changed[:, 5:] = 255
    np.testing.assert_allclose(model(changed).numpy(), model(x).numpy(), rtol=1e-6)
    changed[:, 4] = 0
    assert not np.allclose(model(changed).numpy(), model(x).numpy())


@pytest.mark.parametrize("name", ["r2plus1d", "cnn_lstm"])
def test_video_models_depend_on_frame_order(name):
    keras.utils.set_random_seed(3)
    model = build_model(name, SHAPE)
    x = _clips(2)
    assert not np.allclose(model(x[:, ::-1]).numpy(), model(x).numpy(), atol=1e-7)


def test_paper_model_halves_save_and_ignore_frame_order(tmp_path):
    keras.utils.set_random_seed(4)
    shape = (4, 32, 32, 1)
    model, extractor, head = build_paper(shape, weights=None)
    x = _clips(2, shape)
    features = extractor(x).numpy()
    assert features.shape == (2, 4, 1, 1, 1280)
    p = model(x).numpy()
    np.testing.assert_allclose(head(features).numpy(), p, rtol=1e-5)
    # per-frame backbone + per-position dense + global average: frame order cannot matter,
    # so the seed's time-shuffle ablation has nothing to measure on this architecture
    np.testing.assert_allclose(model(x[:, ::-1]).numpy(), p, rtol=1e-5)
    # only the head (dense 1280 -> 2) is trainable, also after a save and load
    model.save(tmp_path / "paper.keras")
    loaded = load_model(tmp_path / "paper.keras")
    for m in (model, loaded):
        assert sum(int(np.prod(w.shape)) for w in m.trainable_weights) == 1280 * 2 + 2
    np.testing.assert_allclose(loaded(x).numpy(), p, rtol=1e-5)


def test_backbone_weights_from_a_local_file(tmp_path):
    keras.utils.set_random_seed(5)
    source = build_backbone((32, 32), weights=None)
    path = tmp_path / "effnet.weights.h5"
    source.save_weights(path)
    keras.utils.set_random_seed(6)
    loaded = build_backbone((32, 32), weights=str(path))
    for a, b in zip(source.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not loaded.trainable


def test_paper_model_errors_are_clear(tmp_path):
    with pytest.raises(ModelConfigError, match="at least 32 x 32 px, the clips are 16 x 16"):
        build_paper(SHAPE, weights=None)
    with pytest.raises(ModelConfigError, match="neither 'imagenet', null nor an existing file"):
        build_backbone((32, 32), weights=str(tmp_path / "missing.weights.h5"))
    with pytest.raises(ModelConfigError, match="unknown model"):
        build_model("resnet", SHAPE)
