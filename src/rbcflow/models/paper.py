"""Seed 000's model: EfficientNetB0 (frozen) on every frame, a per-position dense head."""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

from rbcflow.models.layers import (
    N_CLASSES,
    FramewiseDistributed,
    ModelConfigError,
    check_n_classes,
)

# keras.applications' EfficientNet refuses frames smaller than this.
EFFICIENTNET_MIN_PX = 32


def build_backbone(frame_px: tuple[int, int], weights: str | None = "imagenet") -> keras.Model:
    """EfficientNetB0 without its top, frozen, for (H, W, 3) frames.

    ``weights``: ``"imagenet"`` (downloaded by Keras on first use), ``None`` (random), or
    the path of a ``.weights.h5`` file of the same architecture.
    """
    height, width = frame_px
    if min(height, width) < EFFICIENTNET_MIN_PX:
        raise ModelConfigError(
            f"the paper model (EfficientNetB0) needs frames of at least {EFFICIENTNET_MIN_PX}"
            f" x {EFFICIENTNET_MIN_PX} px, the clips are {height} x {width}; raise "
            "clips.size_px or choose another model"
        )
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise ModelConfigError(
            f"train.weights: {weights!r} is neither 'imagenet', null nor an existing file"
        )
    backbone = keras.applications.EfficientNetB0(
        include_top=False, weights=None if weights != "imagenet" else "imagenet",
        input_shape=(height, width, 3),
    )
    if weights not in (None, "imagenet"):
        backbone.load_weights(weights)
    backbone.trainable = False
    return backbone


def build_paper(
    input_shape: tuple[int, int, int, int], weights: str | None = "imagenet",
    dropout: float = 0.2, n_classes: int = N_CLASSES,
) -> tuple[keras.Model, keras.Model, keras.Model]:
    """Seed 000's model, and the two halves used to train it on cached features.

    Rescaling -> TimeDistributed(EfficientNetB0, frozen) -> Dropout(0.2) -> Dense ->
    GlobalAveragePooling3D -> softmax. Keras' EfficientNetB0 rescales and normalises its
    input itself and expects 0..255, so the leading ``Rescaling`` only casts (scale 1);
    scaling to 0..1 first, as the seed describes its 'Norm' layer, would feed the backbone
    near-black frames. Grey frames are repeated to the three channels the backbone expects.

    Returns
    -------
    model : clip -> class probabilities (the model that is saved and evaluated).
    extractor : clip -> per-frame backbone features (T, h, w, 1280).
    head : features -> class probabilities; its layers are those of ``model``, so
        training the head on cached features trains ``model``.
    """
    check_n_classes(n_classes)
    backbone = build_backbone(input_shape[1:3], weights)
    inputs = keras.Input(input_shape, name="clip")
    x = layers.Rescaling(1.0, name="rescale")(inputs)
    x = layers.Concatenate(axis=-1, name="grey_to_rgb")([x, x, x])
    features = FramewiseDistributed(backbone, name="backbone")(x)
    extractor = keras.Model(inputs, features, name="paper_extractor")

    feature_input = keras.Input(features.shape[1:], name="features")
    y = layers.Dropout(dropout, name="head_dropout")(feature_input)
    y = layers.Dense(n_classes, name="head_logits")(y)
    y = layers.GlobalAveragePooling3D(name="pool")(y)
    y = layers.Activation("softmax", dtype="float32", name="head_softmax")(y)
    head = keras.Model(feature_input, y, name="paper_head")
    model = keras.Model(inputs, head(features), name="paper")
    return model, extractor, head
