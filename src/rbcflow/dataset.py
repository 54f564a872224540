"""tf.data input streamed from the HDF5 clip files, with seeded augmentation.

Clips are never loaded all at once: each batch reads its clips (one HDF5 chunk per clip)
through ``rbcflow.clipstore.read_clips``, once per file touched by the batch. The order of
the clips in an epoch and the augmentation draws come from ``numpy`` generators seeded by
(seed, epoch), so the same seed gives the same batches whatever TensorFlow's threading.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rbcflow.clipstore import read_clip_table, read_clips


class DatasetError(ValueError):
    """Split table and clip files do not match."""


def clip_locations(clip_files: Sequence[str | Path]) -> pd.DataFrame:
    """``clip_id`` -> (``file``, ``row``) over all clip files, with the clip shape checked."""
    parts = []
    for path in clip_files:
        table = read_clip_table(path)
        rows = np.arange(len(table))
        parts.append(pd.DataFrame({"clip_id": table["clip_id"], "file": str(path), "row": rows}))
    locations = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["clip_id", "file", "row"]
    )
    duplicated = locations["clip_id"][locations["clip_id"].duplicated()]
    if len(duplicated):
        raise DatasetError(f"clip_id {duplicated.iloc[0]!r} occurs in more than one clip file")
    return locations


def attach_locations(split_table: pd.DataFrame, clip_files: Sequence[str | Path]) -> pd.DataFrame:
    """The split table with ``file`` and ``row`` of every clip; error if a clip is missing."""
    located = split_table.merge(clip_locations(clip_files), on="clip_id", how="left")
    missing = located["file"].isna()
    if missing.any():
        raise DatasetError(
            f"{int(missing.sum())} clip(s) of the split table are in none of the "
            f"{len(clip_files)} clip files, e.g. {located['clip_id'][missing].iloc[0]!r}"
        )
    located["row"] = located["row"].astype(np.int64)
    return located


def clip_shape(located: pd.DataFrame) -> tuple[int, int, int]:
    """(T, H, W) of the clips, checked to be the same in every file used."""
    shapes = {}
    for path in located["file"].unique():
        first_row = int(located.loc[located["file"] == path, "row"].iloc[0])
        shapes[path] = read_clips(path, [first_row]).shape[1:]
    distinct = set(shapes.values())
    if len(distinct) != 1:
        raise DatasetError(f"clip files hold clips of different shapes: {shapes}")
    return distinct.pop()


def read_clip_batch(files: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Clips at (``files[i]``, ``rows[i]``) in the given order, one file open per file."""
    first = read_clips(files[0], rows[:1])
    out = np.empty((len(rows), *first.shape[1:]), dtype=first.dtype)
    for path in pd.unique(files):
        where = np.flatnonzero(files == path)
        out[where] = read_clips(path, rows[where])
    return out


@dataclass(frozen=True)
class Augmentation:
    """Random, label-preserving changes of a training clip.

    ``flip``: mirror across the channel's long axis (up-down). Left-right is not used: it
    would reverse the flow direction, which no recording shows. ``shift_px``: translate
    by up to this many pixels in x and y, edges repeated. ``brightness``: multiply by a
    factor drawn from [1 - b, 1 + b].
    """

    flip: bool = False
    shift_px: int = 0
    brightness: float = 0.0

    @classmethod
    def from_params(cls, params: Mapping) -> Augmentation:
        return cls(
            flip=bool(params.get("augment_flip", False)),
            shift_px=int(params.get("augment_shift_px", 0)),
            brightness=float(params.get("augment_brightness", 0.0)),
        )

    @property
    def active(self) -> bool:
        return self.flip or self.shift_px > 0 or self.brightness > 0

    def apply(self, clips: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment a float32 batch (N, T, H, W) of grey values 0..255."""
        out = clips.copy()
        n, _, height, width = out.shape
        if self.flip:
            flip = rng.random(n) < 0.5
            out[flip] = out[flip, :, ::-1, :]
        if self.shift_px > 0:
            s = self.shift_px
            padded = np.pad(out, ((0, 0), (0, 0), (s, s), (s, s)), mode="edge")
            dy, dx = rng.integers(-s, s + 1, size=(2, n))
            for i in range(n):
                out[i] = padded[i, :, s + dy[i]: s + dy[i] + height, s + dx[i]: s + dx[i] + width]
        if self.brightness > 0:
            gain = rng.uniform(1 - self.brightness, 1 + self.brightness, size=n)
            out = np.clip(out * gain[:, None, None, None].astype(np.float32), 0, 255)
        return out


def batch_generator(
    read: Callable[[np.ndarray], np.ndarray],
    labels: np.ndarray,
    batch_size: int,
    sample_weights: np.ndarray | None = None,
    shuffle: bool = False,
    seed: int = 0,
    augmentation: Augmentation | None = None,
) -> Callable[[], object]:
    """A generator factory for ``tf.data.Dataset.from_generator``.

    Each call of the factory is one pass (epoch); the pass number seeds the order and the
    augmentation, so epochs differ from each other but not from run to run.

    Parameters
    ----------
    read : positions (into ``labels``) -> array (n, ...) of inputs.
    """
    labels = np.asarray(labels, dtype=np.int32)
    weights = (
        np.ones(len(labels), np.float32) if sample_weights is None
        else np.asarray(sample_weights, dtype=np.float32)
    )
    passes = {"count": 0}

    def generate():
        epoch = passes["count"]
        passes["count"] += 1
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(labels)) if shuffle else np.arange(len(labels))
        for start in range(0, len(order), batch_size):
            index = order[start: start + batch_size]
            x = read(index).astype(np.float32)
            if augmentation is not None and augmentation.active:
                x = augmentation.apply(x, rng)
            yield x[..., None] if x.ndim == 4 else x, labels[index], weights[index]

    return generate


def make_dataset(
    generate: Callable[[], object],
    input_shape: tuple[int, ...],
    n_items: int,
    batch_size: int,
):
    """Wrap a ``batch_generator`` factory as a prefetching ``tf.data.Dataset``."""
    import tensorflow as tf

    signature = (
        tf.TensorSpec((None, *input_shape), tf.float32),
        tf.TensorSpec((None,), tf.int32),
        tf.TensorSpec((None,), tf.float32),
    )
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    n_batches = -(-n_items // batch_size)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(n_batches))
    return dataset.prefetch(2)


def array_dataset(
    inputs: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    sample_weights: np.ndarray | None = None,
    shuffle: bool = False,
    seed: int = 0,
):
    """A ``tf.data.Dataset`` over an in-memory array (cached backbone features).

    No Python runs per batch, which matters when a training step itself costs about a
    millisecond. TensorFlow's seeded shuffle, reshuffled every epoch, is deterministic
    under ``enable_op_determinism``.
    """
    import tensorflow as tf

    weights = (
        np.ones(len(labels), np.float32) if sample_weights is None
        else np.asarray(sample_weights, dtype=np.float32)
    )
    dataset = tf.data.Dataset.from_tensor_slices(
        (inputs.astype(np.float32, copy=False), np.asarray(labels, np.int32), weights)
    )
    if shuffle:
        dataset = dataset.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(2)


def clip_reader(located: pd.DataFrame) -> Callable[[np.ndarray], np.ndarray]:
    """positions -> clips (n, T, H, W) uint8 for the rows of a located split table."""
    files = located["file"].to_numpy()
    rows = located["row"].to_numpy()
    return lambda index: read_clip_batch(files[index], rows[index])


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Weights n / (2 n_c), so each class contributes equally to the loss (seed 002)."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=2)
    if counts.min() == 0:
        raise DatasetError(f"training clips hold one class only (counts {counts.tolist()})")
    return {c: float(counts.sum() / (2 * counts[c])) for c in (0, 1)}
