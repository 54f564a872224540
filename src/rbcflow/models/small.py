"""Small networks trained from scratch: ``r2plus1d``, ``cnn_lstm`` and the ``frame`` baseline."""

from __future__ import annotations

import keras
from keras import layers

from rbcflow.models.layers import (
    N_CLASSES,
    FramewiseDistributed,
    conv_relu,
    softmax_head,
    standardise,
)


def build_r2plus1d(
    input_shape: tuple[int, int, int, int], widths: tuple[int, ...] = (8, 16, 32),
    dropout: float = 0.2, n_classes: int = N_CLASSES,
) -> keras.Model:
    """A small (2+1)D network: each 3D convolution factored into a spatial (1, 3, 3) and a
    temporal (3, 1, 1) one (Tran et al. 2018), trained from scratch.

    Pooling halves space after every block and time after the second, so a 16 x 32 x 32
    clip costs about 20 MFLOP and the default net has about 11k parameters.
    """
    inputs = keras.Input(input_shape, name="clip")
    x = standardise(inputs)
    for block, width in enumerate(widths):
        x = conv_relu(x, width, (1, 3, 3), f"b{block}_spatial")
        x = conv_relu(x, width, (3, 1, 1), f"b{block}_temporal")
        if block < len(widths) - 1:
            pool_time = 2 if block >= 1 and x.shape[1] >= 2 else 1
            x = layers.MaxPooling3D((pool_time, 2, 2), name=f"b{block}_pool")(x)
    x = layers.GlobalAveragePooling3D(name="pool")(x)
    return keras.Model(inputs, softmax_head(x, dropout, "head", n_classes), name="r2plus1d")


def frame_cnn(frame_shape: tuple[int, int, int], widths: tuple[int, ...], name: str):
    """A 2D CNN for one (H, W, C) frame, ending in global average pooling."""
    inputs = keras.Input(frame_shape, name=f"{name}_frame")
    x = inputs
    for block, width in enumerate(widths):
        x = conv_relu(x, width, (3, 3), f"{name}_b{block}")
        if block < len(widths) - 1:
            x = layers.MaxPooling2D(2, name=f"{name}_b{block}_pool")(x)
    x = layers.GlobalAveragePooling2D(name=f"{name}_gap")(x)
    return keras.Model(inputs, x, name=name)


def build_cnn_lstm(
    input_shape: tuple[int, int, int, int], widths: tuple[int, ...] = (8, 16, 32),
    lstm_units: int = 32, dropout: float = 0.2, n_classes: int = N_CLASSES,
) -> keras.Model:
    """A per-frame 2D CNN (shared weights over time) followed by an LSTM (seeds 002, 003)."""
    inputs = keras.Input(input_shape, name="clip")
    x = standardise(inputs)
    x = FramewiseDistributed(frame_cnn(input_shape[1:], widths, "frame_cnn"), name="per_frame")(x)
    x = layers.LSTM(lstm_units, name="lstm")(x)
    return keras.Model(inputs, softmax_head(x, dropout, "head", n_classes), name="cnn_lstm")


def build_frame(
    input_shape: tuple[int, int, int, int], widths: tuple[int, ...] = (8, 16, 32),
    dropout: float = 0.2, n_classes: int = N_CLASSES,
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
    x = standardise(x)
    x = frame_cnn(input_shape[1:], widths, "frame_cnn")(x)
    return keras.Model(inputs, softmax_head(x, dropout, "head", n_classes), name="frame")
