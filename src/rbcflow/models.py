"""Keras model builders: ``paper``, ``r2plus1d``, ``cnn_lstm`` and ``frame``.

Every model takes a clip as stored, (T, H, W, 1) grey values in 0..255 as float32, and
ends in a two-way softmax (sparse categorical cross-entropy, as in seed 000), so training,
evaluation and the ablations treat them alike. Besides built-in layers there is one
registered layer, ``FramewiseDistributed``; saved ``.keras`` files load with
``safe_mode=True`` through ``load_model`` (which imports this module, registering it).
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers, ops

MODELS = ("paper", "r2plus1d", "cnn_lstm", "frame")
N_CLASSES = 2
# keras.applications' EfficientNet refuses frames smaller than this.
EFFICIENTNET_MIN_PX = 32


class ModelConfigError(ValueError):
    """A model cannot be built for the given clips or weights."""


@keras.saving.register_keras_serializable(package="rbcflow")
class FramewiseDistributed(layers.TimeDistributed):
    """``TimeDistributed`` that folds time into the batch: one call on B*T frames.

    Keras 3's ``TimeDistributed`` unrolls a static time axis into T calls of the inner
    layer; for EfficientNetB0 on 16 frames that took 36 s to trace and ran the backbone
    on batches of B frames. Folding gives the same result with one call per batch.
    """

    def call(self, inputs, training=None, mask=None):
        shape = ops.shape(inputs)
        frames = ops.reshape(inputs, (-1, *inputs.shape[2:]))
        outputs = self.layer(frames, training=training)
        return ops.reshape(outputs, (shape[0], shape[1], *outputs.shape[1:]))


def _standardise(x, name: str = "standardise"):
    """Per-clip standardisation (zero mean, unit variance over all its pixels).

    Illumination differs between sessions and focus between recordings; scaling each
    clip by its own statistics keeps the cell's contrast against its background and
    drops the absolute grey level, a donor and session signature rather than a cell one.
    """
    axes = list(range(1, len(x.shape)))
    return layers.LayerNormalization(axis=axes, center=False, scale=False, name=name)(x)


def _head(x, dropout: float, name: str):
    x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    x = layers.Dense(N_CLASSES, name=f"{name}_logits")(x)
    # float32 so the softmax stays exact under a mixed-precision policy
    return layers.Activation("softmax", dtype="float32", name=f"{name}_softmax")(x)


def _conv_relu(x, filters: int, kernel, name: str):
    # Group, not batch, normalisation: with a few hundred clips an epoch is a handful of
    # steps, batch norm's moving statistics lag behind the weights, and a model that fit
    # its training batches scored chance in inference mode. Group norm has no such state.
    # One group (each clip's feature map normalised as a whole): on CPU, four groups made
    # training 1.8x slower. On the same demo clips one group gave DA test accuracy 0.925
    # against 0.95 with four groups; no normalisation lost more (0.89).
    conv = layers.Conv3D if len(kernel) == 3 else layers.Conv2D
    x = conv(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.GroupNormalization(groups=1, name=f"{name}_norm")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_r2plus1d(
    input_shape: tuple[int, int, int, int], widths: tuple[int, ...] = (8, 16, 32),
    dropout: float = 0.2,
) -> keras.Model:
    """A small (2+1)D network: each 3D convolution factored into a spatial (1, 3, 3) and a
    temporal (3, 1, 1) one (Tran et al. 2018), trained from scratch.

    Pooling halves space after every block and time after the second, so a 16 x 32 x 32
    clip costs about 20 MFLOP and the default net has about 11k parameters.
    """
    inputs = keras.Input(input_shape, name="clip")
    x = _standardise(inputs)
    for block, width in enumerate(widths):
        x = _conv_relu(x, width, (1, 3, 3), f"b{block}_spatial")
        x = _conv_relu(x, width, (3, 1, 1), f"b{block}_temporal")
        if block < len(widths) - 1:
            pool_time = 2 if block >= 1 and x.shape[1] >= 2 else 1
            x = layers.MaxPooling3D((pool_time, 2, 2), name=f"b{block}_pool")(x)
    x = layers.GlobalAveragePooling3D(name="pool")(x)
    return keras.Model(inputs, _head(x, dropout, "head"), name="r2plus1d")


def _frame_cnn(frame_shape: tuple[int, int, int], widths: tuple[int, ...], name: str):
    inputs = keras.Input(frame_shape, name=f"{name}_frame")
    x = inputs
    for block, width in enumerate(widths):
        x = _conv_relu(x, width, (3, 3), f"{name}_b{block}")
        if block < len(widths) - 1:
            x = layers.MaxPooling2D(2, name=f"{name}_b{block}_pool")(x)
    x = layers.GlobalAveragePooling2D(name=f"{name}_gap")(x)
    return keras.Model(inputs, x, name=name)


def build_cnn_lstm(
    input_shape: tuple[int, int, int, int], widths: tuple[int, ...] = (8, 16, 32),
    lstm_units: int = 32, dropout: float = 0.2,
) -> keras.Model:
    """A per-frame 2D CNN (shared weights over time) followed by an LSTM (seeds 002, 003)."""
    inputs = keras.Input(input_shape, name="clip")
    x = _standardise(inputs)
    x = FramewiseDistributed(_frame_cnn(input_shape[1:], widths, "frame_cnn"), name="per_frame")(x)
    x = layers.LSTM(lstm_units, name="lstm")(x)
    return keras.Model(inputs, _head(x, dropout, "head"), name="cnn_lstm")


def build_frame(
    input_shape: tuple[int, int, int, int], widths: tuple[int, ...] = (8, 16, 32),
    dropout: float = 0.2,
) -> keras.Model:
    """The single-frame baseline: a 2D CNN that sees only the middle frame of the clip.

    This is the image-only approach the seeds improved on; comparing it with the video
    models measures what the motion adds.
    """
    n_frames = input_shape[0]
    middle = n_frames // 2
    inputs = keras.Input(input_shape, name="clip")
    x = layers.Cropping3D(((middle, n_frames - middle - 1), (0, 0), (0, 0)), name="middle")(inputs)
    x = layers.Reshape(input_shape[1:], name="frame")(x)
    x = _standardise(x)
    x = _frame_cnn(input_shape[1:], widths, "frame_cnn")(x)
    return keras.Model(inputs, _head(x, dropout, "head"), name="frame")


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
    dropout: float = 0.2,
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
    backbone = build_backbone(input_shape[1:3], weights)
    inputs = keras.Input(input_shape, name="clip")
    x = layers.Rescaling(1.0, name="rescale")(inputs)
    x = layers.Concatenate(axis=-1, name="grey_to_rgb")([x, x, x])
    features = FramewiseDistributed(backbone, name="backbone")(x)
    extractor = keras.Model(inputs, features, name="paper_extractor")

    feature_input = keras.Input(features.shape[1:], name="features")
    y = layers.Dropout(dropout, name="head_dropout")(feature_input)
    y = layers.Dense(N_CLASSES, name="head_logits")(y)
    y = layers.GlobalAveragePooling3D(name="pool")(y)
    y = layers.Activation("softmax", dtype="float32", name="head_softmax")(y)
    head = keras.Model(feature_input, y, name="paper_head")
    model = keras.Model(inputs, head(features), name="paper")
    return model, extractor, head


def build_model(
    name: str, input_shape: tuple[int, int, int, int], weights: str | None = "imagenet"
) -> keras.Model:
    """Build model ``name`` (one of ``MODELS``) for clips of ``input_shape`` (T, H, W, 1)."""
    if name == "paper":
        return build_paper(input_shape, weights)[0]
    builders = {"r2plus1d": build_r2plus1d, "cnn_lstm": build_cnn_lstm, "frame": build_frame}
    if name not in builders:
        raise ModelConfigError(f"unknown model {name!r}; choose one of {MODELS}")
    return builders[name](input_shape)


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
