"""Model builders: shapes, saving with safe_mode, what each model can and cannot see."""

from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest

from rbcflow.models import (
    MODELS,
    ModelConfigError,
    build_backbone,
    build_feature_model,
    build_i3d_backbone,
    build_i3d_lstm,
    build_i3d_lstm_head,
    build_model,
    build_paper,
    i3d_window_features,
    load_model,
    pad_window_features,
    window_starts,
)

SHAPE = (8, 16, 16, 1)
# a narrow random I3D keeps the tests quick; the layout is the same at full width
LIGHT_I3D = {"weights": None, "width": 0.125}


def _clips(n=3, shape=SHAPE, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, *shape)).astype("float32")


def _build(name, shape=SHAPE, n_classes=2):
    """Any model of MODELS, small enough for a unit test."""
    if name == "paper":
        return build_model(name, (4, 32, 32, 1), weights=None, n_classes=n_classes)
    options = {**LIGHT_I3D, "window": 4, "stride": 2} if name == "i3d_lstm" else {}
    return build_model(name, shape, n_classes=n_classes, **options)


@pytest.mark.parametrize("name", MODELS)
def test_every_model_saves_and_reloads_with_identical_predictions(tmp_path, name):
    keras.utils.set_random_seed(1)
    model = _build(name, n_classes=4)
    x = _clips(3, tuple(model.input.shape[1:]))
    p = model.predict(x, verbose=0)
    assert p.shape == (3, 4)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert loaded.name == name
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), p)


@pytest.mark.parametrize("name", ["r2plus1d", "cnn_lstm", "frame", "slowfast", "convlstm"])
def test_models_trained_from_scratch_are_small(name):
    # small enough for the 2-core demo budget, at the demo's clip size
    model = build_model(name, (16, 32, 32, 1))
    assert model.count_params() < 50_000
    assert not model.non_trainable_weights


def test_existing_models_keep_their_parameters():
    # the counts of benchmarks/README.md (16 x 32 x 32 clips): saved models keep loading
    expected = {"r2plus1d": 10_154, "cnn_lstm": 14_330, "frame": 6_010}
    for name, count in expected.items():
        assert build_model(name, (16, 32, 32, 1)).count_params() == count
    assert build_paper((16, 32, 32, 1), weights=None)[0].count_params() == 4_052_133


@pytest.mark.parametrize("name", MODELS)
def test_softmax_stays_float32_under_mixed_precision(name):
    # built only: float16 kernels of some ops (3D max pooling) exist on GPUs alone, and
    # train.configure_runtime uses mixed precision only there
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _build(name, n_classes=4)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.output.dtype == "float32" and model.output.shape[1:] == (4,)
    assert any(layer.compute_dtype == "float16" for layer in model.layers[1:])


def test_fewer_than_two_classes_are_refused():
    for name in ("r2plus1d", "slowfast", "convlstm"):
        with pytest.raises(ModelConfigError, match="n_classes"):
            build_model(name, SHAPE, n_classes=1)


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


@pytest.mark.parametrize("name", ["r2plus1d", "cnn_lstm", "slowfast", "convlstm", "i3d_lstm"])
def test_video_models_depend_on_frame_order(name):
    keras.utils.set_random_seed(3)
    model = _build(name)
    x = _clips(2)
    # absolute: a random frozen I3D gives near-constant features, outputs differ by ~1e-6
    assert not np.allclose(model(x[:, ::-1]).numpy(), model(x).numpy(), rtol=0, atol=1e-7)


def test_slowfast_pathways_sample_every_tau_th_and_alpha_times_more_frames():
    keras.utils.set_random_seed(4)
    model = build_model("slowfast", (16, 32, 32, 1))  # seed 001: alpha 8, beta 1/8, tau 8
    x = _clips(2, (16, 32, 32, 1))
    standardised = keras.Model(model.input, model.get_layer("standardise").output)(x)
    slow = keras.Model(model.input, model.get_layer("slow_sample").output)(x)
    np.testing.assert_array_equal(slow.numpy(), standardised.numpy()[:, ::8])
    assert slow.shape[1] == 2  # frames 0 and 8
    assert model.get_layer("fast_s0_temporal_conv").input.shape[1] == 16
    # beta: the fast pathway has 1/8 of the slow channels; lateral: 2 * beta, stride alpha
    assert model.get_layer("fast_s1_spatial_conv").filters == 32 // 8
    lateral = model.get_layer("lateral_s1_conv")
    assert lateral.filters == 2 * 32 // 8 and lateral.strides == (8, 1, 1)
    assert lateral.output.shape[1] == 2


def test_slowfast_parameters_are_configurable_and_checked():
    model = build_model("slowfast", (16, 32, 32, 1), alpha=2, beta=0.25, tau=4)
    assert model.get_layer("slow_sample").output.shape[1] == 4
    assert model.get_layer("fast_sample").output.shape[1] == 8
    assert model.get_layer("fast_s0_spatial_conv").filters == 4
    with pytest.raises(ModelConfigError, match="tau a multiple of alpha"):
        build_model("slowfast", (16, 32, 32, 1), alpha=3, tau=8)
    with pytest.raises(ModelConfigError, match="beta"):
        build_model("slowfast", (16, 32, 32, 1), beta=2)


def test_convlstm_is_one_recurrent_layer_then_dropout_and_dense():
    model = build_model("convlstm", (16, 32, 32, 1))
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("ConvLSTM2D") == 1 and kinds.count("Dense") == 1
    assert model.get_layer("convlstm").get_config()["activation"] == "relu"
    assert model.get_layer("head_dropout").rate == 0.5


def test_i3d_backbone_is_inception_v1_inflated():
    backbone = build_i3d_backbone((8, 32, 32, 3))
    # Carreira and Zisserman (2017), table 1: I3D has 12M parameters
    assert 12.0e6 < backbone.count_params() < 12.6e6
    assert backbone.output.shape[-1] == 1024 and not backbone.trainable
    assert backbone.get_layer("Conv3d_1a_7x7_conv").kernel.shape == (7, 7, 7, 3, 64)
    assert backbone.get_layer("Mixed_5c").output.shape[1:] == (1, 1, 1, 1024)


def _legacy_h5(path, model):
    """Write ``model``'s weights in the Keras 2 layout used by published I3D ports."""
    with h5py.File(path, "w") as f:
        named = [layer for layer in model.layers if layer.weights]
        f.attrs["layer_names"] = [layer.name.encode() for layer in named]
        for layer in named:
            group = f.create_group(layer.name)
            names = [f"{layer.name}/{w.name}:0" for w in layer.weights]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for name, w in zip(names, layer.weights, strict=True):
                group.create_dataset(name, data=w.numpy())
        f.create_group("Conv3d_6a_1x1")  # a top the backbone does not use


@pytest.mark.parametrize("layout", ["keras2_h5", "keras3_weights_h5"])
def test_i3d_rgb_weights_load_into_the_grey_backbone(tmp_path, layout):
    keras.utils.set_random_seed(5)
    rgb = build_i3d_backbone((4, 16, 16, 3), width=0.125)
    rng = np.random.default_rng(0)
    for variable in rgb.weights:  # non-trivial batch-norm statistics too
        low = 0.5 if variable.name == "moving_variance" else -0.2
        variable.assign(rng.uniform(low, low + 0.4, variable.shape))
    if layout == "keras2_h5":
        path = tmp_path / "i3d_rgb.h5"
        _legacy_h5(path, rgb)
    else:
        path = tmp_path / "i3d_rgb.weights.h5"
        rgb.save_weights(path)
    grey = build_i3d_backbone((4, 16, 16, 1), weights=str(path), width=0.125)
    kernel = rgb.get_layer("Conv3d_1a_7x7_conv").kernel.numpy()
    np.testing.assert_allclose(
        grey.get_layer("Conv3d_1a_7x7_conv").kernel.numpy(), kernel.sum(axis=3, keepdims=True),
        rtol=1e-6,
    )
    # a grey frame repeated to RGB gives the RGB network's features
    x = _clips(2, (4, 16, 16, 1))
    np.testing.assert_allclose(
        grey(x).numpy(), rgb(np.repeat(x, 3, axis=-1)).numpy(), rtol=1e-4, atol=1e-5
    )


def test_i3d_weights_errors_are_clear(tmp_path):
    with pytest.raises(ModelConfigError, match="is not a file"):
        build_i3d_backbone((4, 16, 16, 1), weights=str(tmp_path / "missing.h5"))
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.attrs["layer_names"] = [b"dense"]
        f.create_group("dense").attrs["weight_names"] = []
    with pytest.raises(ModelConfigError, match="lacks .* I3D layers"):
        build_i3d_backbone((4, 16, 16, 1), weights=str(other), width=0.125)
    narrow = tmp_path / "narrow.weights.h5"
    build_i3d_backbone((4, 16, 16, 1), width=0.125).save_weights(narrow)
    with pytest.raises(ModelConfigError, match="does not hold weights"):
        build_i3d_backbone((4, 16, 16, 1), weights=str(narrow), width=0.25)
    with pytest.raises(ModelConfigError, match="no ImageNet weights"):
        build_model("i3d_lstm", SHAPE)


def test_i3d_lstm_splits_into_cacheable_features_and_a_head(tmp_path):
    keras.utils.set_random_seed(6)
    model, extractor, head = build_i3d_lstm(SHAPE, window=4, stride=2, width=0.125)
    x = _clips(3)
    backbone = model.get_layer("backbone").layer
    features = i3d_window_features(backbone, x[..., 0], window=4, stride=2, batch_size=2)
    assert features.shape == (3, 3, 128)  # windows at frames 0, 2, 4
    np.testing.assert_allclose(extractor(x).numpy(), features, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(head(features).numpy(), model(x).numpy(), rtol=1e-5)
    # only the head trains, also after a save and load
    model.save(tmp_path / "i3d.keras")
    loaded = load_model(tmp_path / "i3d.keras")
    n_head = sum(int(np.prod(w.shape)) for w in head.trainable_weights)
    for m in (model, loaded):
        assert sum(int(np.prod(w.shape)) for w in m.trainable_weights) == n_head
    triple = build_feature_model("i3d_lstm", SHAPE, None, 4, window=4, stride=2, width=0.125)
    assert triple[0].output.shape[-1] == 4 and triple[2].input.shape[1:] == (3, 128)


def test_i3d_lstm_head_is_seed_002s_and_skips_padded_windows():
    keras.utils.set_random_seed(7)
    head = build_i3d_lstm_head(3, 16, n_classes=4)
    units = [layer.units for layer in head.layers if hasattr(layer, "units")]
    assert units == [128, 64, 64, 32, 4]
    lstm = head.get_layer("head_lstm0")
    assert lstm.recurrent_dropout == 0.3 and lstm.kernel_regularizer is not None
    assert head.get_layer("head_dropout0").rate == 0.5
    longer = build_i3d_lstm_head(5, 16, n_classes=4)
    longer.set_weights(head.get_weights())
    features = np.random.default_rng(1).uniform(0, 2, (2, 3, 16)).astype("float32")
    padded = pad_window_features(features, 5)
    assert (padded[:, :2] == -1).all()
    np.testing.assert_allclose(longer(padded).numpy(), head(features).numpy(), rtol=1e-5)


def test_windows_must_fit_the_clip():
    assert window_starts(16, 8, 4) == [0, 4, 8]
    assert window_starts(16, 8, 5) == [0, 5]
    with pytest.raises(ModelConfigError, match="shorter than one window"):
        window_starts(4, 8, 4)
    with pytest.raises(ModelConfigError, match="at least 1"):
        window_starts(16, 8, 0)


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
    with pytest.raises(ModelConfigError, match="no frozen backbone"):
        build_feature_model("r2plus1d", SHAPE)
