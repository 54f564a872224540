"""Keras model builders, one module per family, and the registry that names them.

===========  =====================================  ================================
name         module                                 trained
===========  =====================================  ================================
paper        ``rbcflow.models.paper`` (seed 000)    head on cached EfficientNet features
r2plus1d     ``rbcflow.models.small``               from scratch
cnn_lstm     ``rbcflow.models.small``               from scratch
frame        ``rbcflow.models.small``               from scratch (single-frame baseline)
slowfast     ``rbcflow.models.slowfast`` (seed 001) from scratch
i3d_lstm     ``rbcflow.models.i3d`` (seed 002)      head on cached I3D window features
convlstm     ``rbcflow.models.convlstm`` (seed 003) from scratch
===========  =====================================  ================================

Every model takes a clip as stored, (T, H, W, 1) grey values in 0..255 as float32, and
ends in an ``n_classes``-way softmax computed in float32 (sparse categorical
cross-entropy, as in seed 000), so training, evaluation and the ablations treat them
alike. The models with a frozen backbone (``FEATURE_MODELS``) also come as the triple
(model, extractor, head) from ``build_feature_model``, to train the head on cached
features. Saved ``.keras`` files load with ``safe_mode=True`` through ``load_model``
(importing this package registers the custom layers).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras

from rbcflow.models.convlstm import build_convlstm
from rbcflow.models.i3d import (
    build_i3d_backbone,
    build_i3d_lstm,
    build_i3d_lstm_head,
    i3d_window_features,
    load_i3d_weights,
    pad_window_features,
)
from rbcflow.models.layers import (
    N_CLASSES,
    ClipWindows,
    FramewiseDistributed,
    ModelConfigError,
    window_starts,
)
from rbcflow.models.paper import EFFICIENTNET_MIN_PX, build_backbone, build_paper
from rbcflow.models.slowfast import build_slowfast
from rbcflow.models.small import build_cnn_lstm, build_frame, build_r2plus1d

__all__ = [
    "EFFICIENTNET_MIN_PX", "FEATURE_MODELS", "MODELS", "N_CLASSES", "SCRATCH_MODELS",
    "ClipWindows", "FramewiseDistributed", "ModelConfigError", "build_backbone",
    "build_cnn_lstm", "build_convlstm", "build_feature_model", "build_frame",
    "build_i3d_backbone", "build_i3d_lstm", "build_i3d_lstm_head", "build_model", "build_paper",
    "build_r2plus1d", "build_slowfast", "compile_model", "i3d_window_features",
    "load_i3d_weights", "load_model", "pad_window_features", "window_starts",
]

MODELS = ("paper", "r2plus1d", "cnn_lstm", "frame", "slowfast", "i3d_lstm", "convlstm")
# Models trained from the clips: builder(input_shape, n_classes=..., **options) -> model.
SCRATCH_MODELS: dict[str, Callable[..., keras.Model]] = {
    "r2plus1d": build_r2plus1d, "cnn_lstm": build_cnn_lstm, "frame": build_frame,
    "slowfast": build_slowfast, "convlstm": build_convlstm,
}
# Models with a frozen backbone: builder(input_shape, weights, n_classes=..., **options)
# -> (model, extractor, head).
FEATURE_MODELS: dict[str, Callable[..., tuple[keras.Model, keras.Model, keras.Model]]] = {
    "paper": build_paper, "i3d_lstm": build_i3d_lstm,
}


def _check_weights(name: str, weights: str | None) -> None:
    if name == "i3d_lstm" and weights == "imagenet":
        raise ModelConfigError(
            "i3d_lstm has no ImageNet weights to download: set train.weights to the path of "
            "a Kinetics-pretrained I3D weights file (.h5 / .weights.h5), or to null for a "
            "random frozen backbone"
        )


def build_feature_model(
    name: str, input_shape: tuple[int, int, int, int], weights: str | None = "imagenet",
    n_classes: int = N_CLASSES, **options,
) -> tuple[keras.Model, keras.Model, keras.Model]:
    """(model, extractor, head) of a frozen-backbone model (one of ``FEATURE_MODELS``).

    ``extractor`` maps clips to the features to cache; ``head`` maps features to
    probabilities and shares its layers with ``model``.
    """
    if name not in FEATURE_MODELS:
        raise ModelConfigError(
            f"{name!r} has no frozen backbone; choose one of {tuple(FEATURE_MODELS)}"
        )
    _check_weights(name, weights)
    return FEATURE_MODELS[name](input_shape, weights, n_classes=n_classes, **options)


def build_model(
    name: str, input_shape: tuple[int, int, int, int], weights: str | None = "imagenet",
    n_classes: int = N_CLASSES, **options,
) -> keras.Model:
    """Build model ``name`` (one of ``MODELS``) for clips of ``input_shape`` (T, H, W, 1).

    Parameters
    ----------
    name : one of ``MODELS``.
    input_shape : (T, H, W, 1).
    weights : backbone weights of the frozen-backbone models: ``paper`` takes
        ``"imagenet"``, ``None`` or a file, ``i3d_lstm`` ``None`` or a file; the others
        ignore it.
    n_classes : size of the final softmax.
    options : keyword arguments of the family's builder (e.g. ``tau`` for ``slowfast``,
        ``window`` for ``i3d_lstm``); their defaults are the builders' signatures.
    """
    if name in FEATURE_MODELS:
        return build_feature_model(name, input_shape, weights, n_classes, **options)[0]
    if name not in SCRATCH_MODELS:
        raise ModelConfigError(f"unknown model {name!r}; choose one of {MODELS}")
    return SCRATCH_MODELS[name](input_shape, n_classes=n_classes, **options)


def compile_model(model: keras.Model, learning_rate: float) -> keras.Model:
    """Adam and sparse categorical cross-entropy (seed 000), accuracy as the metric."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    return model


def load_model(path: str | Path) -> keras.Model:
    """Load a saved model with ``safe_mode=True`` (no arbitrary code from the file)."""
    return keras.models.load_model(path, safe_mode=True, compile=False)
