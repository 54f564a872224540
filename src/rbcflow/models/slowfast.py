"""SlowFast (Feichtenhofer et al. 2019; seed 001) scaled down for single-cell clips.

Two pathways read the same clip. The slow one samples every ``tau``-th frame and has the
channels; the fast one samples ``alpha`` times as many frames with ``beta`` times the
channels. After every stage but the last a lateral time-strided convolution (kernel
5 x 1 x 1, stride ``alpha`` in time, ``2 * beta`` times the slow channels, the paper's
default fusion) carries fast features into the slow pathway, where they are concatenated.
Both pathways end in global average pooling; the two vectors are concatenated (the
fusion at the end) and classified.

Seed 001 used alpha = 8, beta = 1/8 and tau = 8 (one model with tau = 2) on 64-frame
clips. The same values serve 16-frame cell clips: the slow pathway sees 2 frames
(0 and 8), the fast one all 16. The slow pathway convolves in time only in its last stage,
as the paper's slow pathway does only in res4 and res5; the fast one in every stage.
"""

from __future__ import annotations

import math

import keras
from keras import layers

from rbcflow.models.layers import N_CLASSES, ModelConfigError, conv_relu, softmax_head, standardise


def slowfast_frames(n_frames: int, alpha: int, tau: int) -> tuple[int, int]:
    """Frames seen by the slow and by the fast pathway of a clip of ``n_frames``.

    Raises
    ------
    ModelConfigError
        If ``alpha`` or ``tau`` is below 1 or ``tau`` is not a multiple of ``alpha``
        (the fast pathway's frame step, ``tau / alpha``, must be a whole number).
    """
    if alpha < 1 or tau < 1 or tau % alpha:
        raise ModelConfigError(
            f"slowfast needs alpha >= 1, tau >= 1 and tau a multiple of alpha; got "
            f"alpha={alpha}, tau={tau}"
        )
    return math.ceil(n_frames / tau), math.ceil(n_frames / (tau // alpha))


def _sample_frames(x, step: int, name: str):
    """Every ``step``-th frame, starting with the first (a 1 x 1 x 1 max pool, strided)."""
    if step == 1:
        return x
    return layers.MaxPooling3D((1, 1, 1), strides=(step, 1, 1), name=name)(x)


def _lateral(fast, slow, channels: int, alpha: int, name: str):
    """Time-strided convolution fast -> slow, concatenated to the slow features."""
    fused = conv_relu(fast, channels, (5, 1, 1), name, strides=(alpha, 1, 1))
    return layers.Concatenate(axis=-1, name=f"{name}_fuse")([slow, fused])


def build_slowfast(
    input_shape: tuple[int, int, int, int], widths: tuple[int, ...] = (16, 32, 64),
    alpha: int = 8, beta: float = 1 / 8, tau: int = 8, dropout: float = 0.2,
    n_classes: int = N_CLASSES,
) -> keras.Model:
    """A three-stage SlowFast network for (T, H, W, 1) clips, trained from scratch.

    Parameters
    ----------
    input_shape : (T, H, W, 1) clips, grey values 0..255.
    widths : slow-pathway channels per stage; the fast pathway has ``beta`` times as many
        (at least 1).
    alpha : frame-rate ratio fast / slow.
    beta : channel ratio fast / slow.
    tau : the slow pathway's frame step.
    dropout : before the final dense layer.
    n_classes : size of the softmax.

    Notes
    -----
    Space is halved (max pooling) after every stage but the last, in both pathways. The
    last 5-D layers named ``slow_*`` and ``fast_*`` are the two pathways' final feature
    maps (used by ``rbcflow.saliency``). With the defaults and 16 x 32 x 32 clips the net
    has about 43k parameters.
    """
    slow_frames, _ = slowfast_frames(input_shape[0], alpha, tau)
    if not 0 < beta <= 1:
        raise ModelConfigError(f"slowfast needs 0 < beta <= 1, got {beta}")
    inputs = keras.Input(input_shape, name="clip")
    x = standardise(inputs)
    slow = _sample_frames(x, tau, "slow_sample")
    fast = _sample_frames(x, tau // alpha, "fast_sample")
    last = len(widths) - 1
    for stage, width in enumerate(widths):
        fast_width = max(1, round(beta * width))
        slow = conv_relu(slow, width, (1, 3, 3), f"slow_s{stage}_spatial")
        if stage == last and slow_frames > 1:
            slow = conv_relu(slow, width, (3, 1, 1), f"slow_s{stage}_temporal")
        # the fast stem's temporal kernel is 5 frames, later ones 3 (as in the paper)
        fast_kernel = (5 if stage == 0 else 3, 1, 1)
        fast = conv_relu(fast, fast_width, fast_kernel, f"fast_s{stage}_temporal")
        fast = conv_relu(fast, fast_width, (1, 3, 3), f"fast_s{stage}_spatial")
        if stage < last:
            slow = _lateral(fast, slow, 2 * fast_width, alpha, f"lateral_s{stage}")
            slow = layers.MaxPooling3D((1, 2, 2), name=f"slow_s{stage}_pool")(slow)
            fast = layers.MaxPooling3D((1, 2, 2), name=f"fast_s{stage}_pool")(fast)
    pooled = layers.Concatenate(name="fuse")([
        layers.GlobalAveragePooling3D(name="slow_gap")(slow),
        layers.GlobalAveragePooling3D(name="fast_gap")(fast),
    ])
    return keras.Model(inputs, softmax_head(pooled, dropout, "head", n_classes), name="slowfast")
