"""Seed 002's model: a frozen inflated 3D Inception-v1 (I3D) over sliding windows of the
clip, and a masked LSTM head on the window features.

The model is split in two so that the backbone's features can be computed once and the
head trained on them, like the ``paper`` model:

* ``build_i3d_backbone`` -> one window (t, H, W, C) -> one feature vector (1024 values at
  full width), frozen, optionally with Kinetics-pretrained weights from a file;
* ``i3d_window_features`` -> a batch of clips -> (N, n_windows, feature_dim), in NumPy;
* ``build_i3d_lstm_head`` -> (n_windows, feature_dim) -> class probabilities;
* ``build_i3d_lstm`` -> the end-to-end model (clips -> probabilities, what is saved and
  evaluated) together with its two halves, the same triple as ``build_paper`` returns.

The backbone follows Carreira and Zisserman's I3D layout and the layer names of the
widely used Keras port of its Kinetics weights (``Conv3d_1a_7x7_conv``,
``Conv3d_1a_7x7_bn``, ..., ``Mixed_5c``), so such a weights file loads by name. Seed 002
fed 224 x 224 RGB frames scaled to -1..1; cell clips are grey and small, so the first
layer's RGB kernels are summed over their colour axis (exactly what the RGB network
computes on a grey frame repeated to three channels) and the 32-fold spatial reduction
leaves a 1 x 1 (32 px clips) or 2 x 2 (64 px) map that is averaged into the features.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import keras
import numpy as np
from keras import layers, regularizers

from rbcflow.models.layers import (
    N_CLASSES,
    ClipWindows,
    FramewiseDistributed,
    ModelConfigError,
    check_n_classes,
    window_starts,
)

# Inception-v1 modules (Szegedy et al. 2015, table 1), as inflated by I3D: output
# channels of branch 0 (1x1), branch 1 (1x1 -> 3x3), branch 2 (1x1 -> 3x3) and branch 3
# (3x3 max pool -> 1x1).
INCEPTION_MODULES = {
    "3b": (64, 96, 128, 16, 32, 32),
    "3c": (128, 128, 192, 32, 96, 64),
    "4b": (192, 96, 208, 16, 48, 64),
    "4c": (160, 112, 224, 24, 64, 64),
    "4d": (128, 128, 256, 24, 64, 64),
    "4e": (112, 144, 288, 32, 64, 64),
    "4f": (256, 160, 320, 32, 128, 128),
    "5b": (256, 160, 320, 32, 128, 128),
    "5c": (384, 192, 384, 48, 128, 128),
}
# The pooling layers between module groups: (name, pool size and strides).
_REDUCTIONS = {
    "3b": ("MaxPool2d_3a_3x3", (1, 3, 3), (1, 2, 2)),
    "4b": ("MaxPool2d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    "5b": ("MaxPool2d_5a_2x2", (2, 2, 2), (2, 2, 2)),
}
# Value that marks a padded (absent) window for the head's Masking layer. Real features
# are averages of ReLU outputs, never negative, so they cannot be mistaken for padding.
PAD_VALUE = -1.0
FEATURE_LAYER = "Mixed_5c"


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _unit(x, filters: int, kernel, name: str, strides=(1, 1, 1)):
    """I3D's unit: Conv3D without bias -> batch norm without scale -> ReLU."""
    x = layers.Conv3D(
        filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = layers.BatchNormalization(scale=False, epsilon=1e-3, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=name)(x)


def _inception(x, module: str, width: float):
    b0, b1a, b1b, b2a, b2b, b3 = (_scaled(c, width) for c in INCEPTION_MODULES[module])
    prefix = f"Conv3d_{module}"
    branch0 = _unit(x, b0, (1, 1, 1), f"{prefix}_0a_1x1")
    branch1 = _unit(x, b1a, (1, 1, 1), f"{prefix}_1a_1x1")
    branch1 = _unit(branch1, b1b, (3, 3, 3), f"{prefix}_1b_3x3")
    branch2 = _unit(x, b2a, (1, 1, 1), f"{prefix}_2a_1x1")
    branch2 = _unit(branch2, b2b, (3, 3, 3), f"{prefix}_2b_3x3")
    pooled = layers.MaxPooling3D(
        (3, 3, 3), strides=(1, 1, 1), padding="same", name=f"MaxPool2d_{module}_3a_3x3"
    )(x)
    branch3 = _unit(pooled, b3, (1, 1, 1), f"{prefix}_3b_1x1")
    return layers.Concatenate(axis=-1, name=f"Mixed_{module}")([branch0, branch1, branch2, branch3])


def _i3d_trunk(input_shape: tuple, width: float) -> keras.Model:
    """The I3D layout up to ``Mixed_5c``, global average pooled; random weights."""
    inputs = keras.Input(input_shape, name="window")
    # Kinetics I3D expects -1..1; clips are stored as 0..255.
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="to_unit_range")(inputs)
    x = _unit(x, _scaled(64, width), (7, 7, 7), "Conv3d_1a_7x7", strides=(2, 2, 2))
    x = layers.MaxPooling3D(
        (1, 3, 3), strides=(1, 2, 2), padding="same", name="MaxPool2d_2a_3x3"
    )(x)
    x = _unit(x, _scaled(64, width), (1, 1, 1), "Conv3d_2b_1x1")
    x = _unit(x, _scaled(192, width), (3, 3, 3), "Conv3d_2c_3x3")
    for module in INCEPTION_MODULES:
        if module in _REDUCTIONS:
            name, pool, strides = _REDUCTIONS[module]
            x = layers.MaxPooling3D(pool, strides=strides, padding="same", name=name)(x)
        x = _inception(x, module, width)
    x = layers.GlobalAveragePooling3D(name="features")(x)
    return keras.Model(inputs, x, name="i3d_backbone")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _read_legacy_h5(path: Path) -> dict[str, dict[str, np.ndarray]] | None:
    """{layer: {variable: array}} from a Keras 2 style ``.h5`` file, None for other files.

    Such files (``save_weights`` to ``.h5`` in Keras 2, the published Keras I3D ports,
    ``model.save`` to ``.h5``) list ``layer_names`` and, per layer, ``weight_names``.
    """
    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in group.attrs:
            return None
        stored = {}
        for layer_name in map(_text, group.attrs["layer_names"]):
            layer_group = group[layer_name]
            variables = {}
            for weight_name in map(_text, layer_group.attrs.get("weight_names", [])):
                # "Conv3d_1a_7x7_conv/kernel:0" -> "kernel"
                variable = weight_name.split("/")[-1].split(":")[0]
                variables[variable] = np.asarray(layer_group[weight_name])
            stored[layer_name] = variables
    return stored


def _read_keras3_weights(path: Path, input_shape: tuple, width: float):
    """{layer: {variable: array}} from a Keras 3 ``.weights.h5`` file of an I3D backbone.

    These files store variables by position, not by layer name, so the file is loaded
    into a twin backbone: grey first (a file saved from this function's backbones), then
    RGB (a file converted from a Kinetics RGB network).
    """
    errors = []
    for channels in dict.fromkeys((input_shape[-1], 3)):
        twin = _i3d_trunk((*input_shape[:-1], channels), width)
        try:
            with warnings.catch_warnings():
                # a failing attempt warns about every layer it skips, then raises
                warnings.simplefilter("ignore", UserWarning)
                twin.load_weights(path)
        except ValueError as error:
            errors.append(f"as {channels}-channel backbone: {str(error)[:300]}")
            continue
        return {
            layer.name: {v.name: v.numpy() for v in layer.weights}
            for layer in twin.layers if layer.weights
        }
    raise ModelConfigError(
        f"{path} does not hold weights of this I3D backbone (width {width}): " + "; ".join(errors)
    )


def _fit_to_variable(array: np.ndarray, variable, where: str) -> np.ndarray:
    """The stored array shaped for ``variable``; RGB first-layer kernels summed to grey."""
    shape = tuple(variable.shape)
    if array.shape == shape:
        return array
    colour_to_grey = (
        array.ndim == 5 and shape[-2] == 1 and array.shape[-2] == 3
        and array.shape[:-2] == shape[:-2] and array.shape[-1] == shape[-1]
    )
    if colour_to_grey:
        return array.sum(axis=-2, keepdims=True)
    raise ModelConfigError(f"{where}: the file holds shape {array.shape}, the model needs {shape}")


def load_i3d_weights(backbone: keras.Model, path: str | Path, width: float = 1.0) -> None:
    """Set the backbone's weights from a file, matching layers by name.

    ``path``: a Keras 2 style ``.h5`` (e.g. a Kinetics-pretrained I3D, RGB or grey,
    with or without its top: extra layers are ignored) or a Keras 3 ``.weights.h5`` of a
    backbone built here. RGB first-layer kernels (7, 7, 7, 3, 64) are summed over the
    colour axis for grey clips.

    Raises
    ------
    ModelConfigError
        If a layer of the backbone is missing from the file or a shape does not match.
    """
    path = Path(path)
    input_shape = tuple(backbone.input.shape[1:])
    stored = _read_legacy_h5(path)
    if stored is None:
        stored = _read_keras3_weights(path, input_shape, width)
    missing = [
        layer.name for layer in backbone.layers if layer.weights and layer.name not in stored
    ]
    if missing:
        raise ModelConfigError(
            f"{path} lacks {len(missing)} I3D layers, e.g. {missing[:3]}: not an I3D weights file"
        )
    for layer in backbone.layers:
        for variable in layer.weights:
            where = f"{path.name}: {layer.name}/{variable.name}"
            if variable.name not in stored[layer.name]:
                raise ModelConfigError(f"{where} is missing")
            variable.assign(_fit_to_variable(stored[layer.name][variable.name], variable, where))


def build_i3d_backbone(
    input_shape: tuple, weights: str | Path | None = None, width: float = 1.0
) -> keras.Model:
    """The I3D feature extractor for one window, frozen.

    Parameters
    ----------
    input_shape : (frames, H, W, C) of one window (``None`` leaves a size open); clips
        as stored, 0..255 (the model rescales to the -1..1 that Kinetics I3D expects).
    weights : ``None`` (random), or the path of a weights file (see ``load_i3d_weights``),
        e.g. a Kinetics-400 pretrained I3D converted to Keras.
    width : channel multiplier; 1.0 is I3D proper (12.3M parameters, 1024 features) and
        the only width pretrained files fit. Smaller widths give a light random backbone.

    Returns
    -------
    Model window -> (feature_dim,), ``trainable = False``. Its last spatio-temporal
    layer is ``Mixed_5c`` (``FEATURE_LAYER``), averaged by the layer ``features``.
    """
    if weights is not None and not Path(weights).is_file():
        raise ModelConfigError(
            f"i3d weights: {str(weights)!r} is not a file; give the path of a Kinetics-"
            "pretrained I3D weights file (.h5 / .weights.h5) or null for random weights"
        )
    backbone = _i3d_trunk(tuple(input_shape), width)
    if weights is not None:
        load_i3d_weights(backbone, weights, width)
    backbone.trainable = False
    return backbone


def i3d_window_features(
    backbone: keras.Model, clips: np.ndarray, window: int = 8, stride: int = 4,
    batch_size: int = 32,
) -> np.ndarray:
    """Backbone features of every sliding window of every clip.

    Parameters
    ----------
    backbone : from ``build_i3d_backbone``.
    clips : (N, T, H, W) or (N, T, H, W, C) grey values 0..255.
    window, stride : window length and step in frames (``window_starts``).
    batch_size : clips per backbone call.

    Returns
    -------
    (N, n_windows, feature_dim) float32: the sequence the head reads, the same values as
    the end-to-end model's ``backbone`` layer computes (it is what a feature cache holds).
    """
    clips = np.asarray(clips, dtype=np.float32)
    if clips.ndim == 4:
        clips = clips[..., None]
    starts = window_starts(clips.shape[1], window, stride)
    index = np.asarray(starts)[:, None] + np.arange(window)
    out = [np.zeros((0, len(starts), backbone.output.shape[-1]), np.float32)]
    for first in range(0, len(clips), batch_size):
        windows = clips[first: first + batch_size][:, index]  # (b, n_windows, window, ...)
        folded = windows.reshape(-1, *windows.shape[2:])
        features = np.asarray(backbone(folded, training=False), dtype=np.float32)
        out.append(features.reshape(len(windows), len(starts), -1))
    return np.concatenate(out)


def pad_window_features(features: np.ndarray, n_windows: int) -> np.ndarray:
    """Pre-pad (N, k, F) window features to (N, n_windows, F) with ``PAD_VALUE`` rows.

    Seed 002's samples had up to 7 windows; shorter ones were padded at the front with
    -1 vectors, which the head's Masking layer skips.
    """
    features = np.asarray(features, dtype=np.float32)
    missing = n_windows - features.shape[1]
    if missing < 0:
        raise ModelConfigError(f"{features.shape[1]} windows do not fit into {n_windows}")
    pad = np.full((features.shape[0], missing, features.shape[2]), PAD_VALUE, np.float32)
    return np.concatenate([pad, features], axis=1)


def build_i3d_lstm_head(
    n_windows: int, feature_dim: int, n_classes: int = N_CLASSES,
    lstm_units: tuple[int, int] = (128, 64), dense_units: tuple[int, int] = (64, 32),
    dropout: float = 0.5, recurrent_dropout: float = 0.3, l2: float = 1e-4,
) -> keras.Model:
    """Seed 002's classifier on (n_windows, feature_dim) window features.

    Masking (``PAD_VALUE``) -> LSTM 128 -> LSTM 64 -> [Dense (ReLU, He uniform) -> batch
    norm -> dropout] for 64 and 32 units -> Dense -> softmax (float32). Recurrent dropout
    0.3 in both LSTMs; L2 on the LSTMs' kernels, recurrent kernels and outputs
    (activity) and on the dense layers' kernels and biases, as the seed lists them. The
    seed's single sigmoid unit is an ``n_classes``-way softmax here.
    """
    check_n_classes(n_classes)
    inputs = keras.Input((n_windows, feature_dim), name="window_features")
    x = layers.Masking(mask_value=PAD_VALUE, name="head_mask")(inputs)
    for i, units in enumerate(lstm_units):
        x = layers.LSTM(
            units, return_sequences=i < len(lstm_units) - 1, recurrent_dropout=recurrent_dropout,
            kernel_regularizer=regularizers.L2(l2), recurrent_regularizer=regularizers.L2(l2),
            activity_regularizer=regularizers.L2(l2), name=f"head_lstm{i}",
        )(x)
    for i, units in enumerate(dense_units):
        x = layers.Dense(
            units, activation="relu", kernel_initializer="he_uniform",
            kernel_regularizer=regularizers.L2(l2), bias_regularizer=regularizers.L2(l2),
            name=f"head_dense{i}",
        )(x)
        # dropout after batch norm avoids the variance shift between training and test
        x = layers.BatchNormalization(name=f"head_norm{i}")(x)
        x = layers.Dropout(dropout, name=f"head_dropout{i}")(x)
    x = layers.Dense(
        n_classes, kernel_regularizer=regularizers.L2(l2), bias_regularizer=regularizers.L2(l2),
        name="head_logits",
    )(x)
    outputs = layers.Activation("softmax", dtype="float32", name="head_softmax")(x)
    return keras.Model(inputs, outputs, name="i3d_lstm_head")


def build_i3d_lstm(
    input_shape: tuple[int, int, int, int], weights: str | Path | None = None,
    window: int = 8, stride: int = 4, width: float = 1.0, n_classes: int = N_CLASSES,
    **head_options,
) -> tuple[keras.Model, keras.Model, keras.Model]:
    """The end-to-end I3D + LSTM model for (T, H, W, 1) clips, and its two halves.

    Clip -> ``ClipWindows`` (layer ``windows``) -> the frozen backbone on every window
    (layer ``backbone``, a ``FramewiseDistributed``) -> the head. With 16-frame clips
    and the defaults (window 8, stride 4) the head reads 3 windows.

    Returns
    -------
    model : clip -> class probabilities (the model that is saved and evaluated).
    extractor : clip -> (n_windows, feature_dim) window features (what to cache).
    head : window features -> class probabilities; its layers are those of ``model``, so
        training the head on cached features trains ``model``.
    """
    n_windows = len(window_starts(input_shape[0], window, stride))
    backbone = build_i3d_backbone((window, *input_shape[1:]), weights, width)
    inputs = keras.Input(input_shape, name="clip")
    windows = ClipWindows(window, stride, name="windows")(inputs)
    features = FramewiseDistributed(backbone, name="backbone")(windows)
    extractor = keras.Model(inputs, features, name="i3d_extractor")
    head = build_i3d_lstm_head(n_windows, features.shape[-1], n_classes, **head_options)
    model = keras.Model(inputs, head(features), name="i3d_lstm")
    return model, extractor, head
