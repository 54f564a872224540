"""Building blocks shared by the model families: registered layers, normalisation, heads.

Besides built-in Keras layers the models use two registered layers, ``FramewiseDistributed``
and ``ClipWindows``; both are registered under the package name ``rbcflow`` so that saved
``.keras`` files load with ``safe_mode=True`` once ``rbcflow.models`` is imported.
"""

from __future__ import annotations

import keras
from keras import layers, ops

N_CLASSES = 2


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


def window_starts(n_frames: int, window: int, stride: int) -> list[int]:
    """First frame of every complete ``window``-frame window, ``stride`` frames apart.

    Raises
    ------
    ModelConfigError
        If ``window`` or ``stride`` is below 1 or the clip is shorter than one window.
    """
    if window < 1 or stride < 1:
        raise ModelConfigError(f"window ({window}) and stride ({stride}) must be at least 1")
    if n_frames < window:
        raise ModelConfigError(
            f"clips of {n_frames} frames are shorter than one window of {window} frames"
        )
    return list(range(0, n_frames - window + 1, stride))


@keras.saving.register_keras_serializable(package="rbcflow")
class ClipWindows(layers.Layer):
    """(B, T, H, W, C) clips -> (B, n_windows, window, H, W, C) sliding windows.

    Windows are complete (no padding) and start every ``stride`` frames; frames after the
    last complete window are not seen. ``window_starts`` gives their first frames.
    """

    def __init__(self, window: int, stride: int, **kwargs):
        super().__init__(**kwargs)
        self.window = int(window)
        self.stride = int(stride)

    def starts(self, n_frames: int) -> list[int]:
        """First frame of each window for clips of ``n_frames`` frames."""
        return window_starts(n_frames, self.window, self.stride)

    def call(self, inputs):
        starts = self.starts(inputs.shape[1])
        return ops.stack([inputs[:, s: s + self.window] for s in starts], axis=1)

    def compute_output_shape(self, input_shape):
        n_windows = len(self.starts(input_shape[1]))
        return (input_shape[0], n_windows, self.window, *input_shape[2:])

    def get_config(self):
        return {**super().get_config(), "window": self.window, "stride": self.stride}


def standardise(x, name: str = "standardise"):
    """Per-clip standardisation (zero mean, unit variance over all its pixels).

    Illumination differs between sessions and focus between recordings; scaling each
    clip by its own statistics keeps the cell's contrast against its background and
    drops the absolute grey level, a donor and session signature rather than a cell one.
    """
    axes = list(range(1, len(x.shape)))
    return layers.LayerNormalization(axis=axes, center=False, scale=False, name=name)(x)


def softmax_head(x, dropout: float, name: str, n_classes: int = N_CLASSES):
    """Dropout -> Dense(n_classes) -> softmax, the softmax in float32.

    float32 so that the probabilities stay exact under a mixed-precision policy.
    """
    check_n_classes(n_classes)
    x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    x = layers.Dense(n_classes, name=f"{name}_logits")(x)
    return layers.Activation("softmax", dtype="float32", name=f"{name}_softmax")(x)


def check_n_classes(n_classes: int) -> None:
    """Refuse fewer than two classes (a softmax over one class is constant)."""
    if int(n_classes) != n_classes or n_classes < 2:
        raise ModelConfigError(f"n_classes must be an integer >= 2, got {n_classes!r}")


def conv_relu(x, filters: int, kernel, name: str, strides=1):
    """Convolution (2D or 3D by the kernel's length) -> group norm (one group) -> ReLU.

    Group, not batch, normalisation: with a few hundred clips an epoch is a handful of
    steps, batch norm's moving statistics lag behind the weights, and a model that fit
    its training batches scored chance in inference mode. Group norm has no such state.
    One group (each clip's feature map normalised as a whole): on CPU, four groups made
    training 1.8x slower. On the same demo clips one group gave DA test accuracy 0.925
    against 0.95 with four groups; no normalisation lost more (0.89).
    """
    conv = layers.Conv3D if len(kernel) == 3 else layers.Conv2D
    x = conv(
        filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = layers.GroupNormalization(groups=1, name=f"{name}_norm")(x)
    return layers.ReLU(name=f"{name}_relu")(x)
