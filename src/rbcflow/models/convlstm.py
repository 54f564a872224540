"""Seed 003's ConvLSTM model: one ConvLSTM2D layer (ReLU) -> dropout -> dense softmax."""

from __future__ import annotations

import keras
from keras import layers

from rbcflow.models.layers import N_CLASSES, softmax_head, standardise


def build_convlstm(
    input_shape: tuple[int, int, int, int], filters: int = 16, kernel: int = 3,
    pool: int = 4, dropout: float = 0.5, n_classes: int = N_CLASSES,
) -> keras.Model:
    """A ConvLSTM over the frames, its last state pooled, flattened and classified.

    Seed 003 found more recurrent layers overfit its small data set, and kept one
    ConvLSTM layer with ReLU activation, one dropout layer and a dense softmax. Here the
    last state (H, W, ``filters``) is max-pooled by ``pool`` before it is flattened, so
    the dense layer does not grow with the frame area: with 16 filters it holds 2k
    weights for 32 x 32 clips (33k without the pooling), about 12k parameters in all.

    The ConvLSTM returns only its last state: it has no time axis left, and the layer
    ``convlstm`` is what ``rbcflow.saliency`` explains.
    """
    inputs = keras.Input(input_shape, name="clip")
    x = standardise(inputs)
    x = layers.ConvLSTM2D(
        filters, kernel, padding="same", activation="relu", return_sequences=False,
        name="convlstm",
    )(x)
    if pool > 1:
        x = layers.MaxPooling2D(pool, padding="same", name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, softmax_head(x, dropout, "head", n_classes), name="convlstm")
