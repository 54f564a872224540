"""tf.data input streamed from the HDF5 clip files, with seeded augmentation.

Clips are never loaded all at once. Each clip file is opened once per split: where its
clips are stored as plain bytes (uncompressed, the default), h5py only tells where each
clip lies and batches are gathered from a read-only memory map of the file, so that no
h5py call (serialised by h5py's global lock) and no Python per clip sits on the hot path;
compressed files are read through h5py, one clip at a time.

The order of the clips in an epoch and every augmentation draw are made up front, for the
whole epoch, from a ``numpy`` generator seeded by (seed, epoch), in the same sequence as
they were drawn batch by batch before batches were read in parallel. A batch is then a
pure function of its index, so reader threads may build batches in any order and the
batches, delivered in order, are the same for every thread count and every run.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from rbcflow.clipstore import read_clip_table, read_clips

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """Split table and clip files do not match, or a clip file cannot be read."""


def clip_locations(clip_files: Sequence[str | Path]) -> pd.DataFrame:
    """``clip_id`` -> (``file``, ``row``) over all clip files, with the clip shape checked."""
    parts = []
    for path in clip_files:
        try:
            table = read_clip_table(path)
        except FileNotFoundError as exc:
            raise DatasetError(f"{path}: clip file not found") from exc
        except OSError as exc:  # h5py's message does not always name the file
            raise DatasetError(f"{path}: not a readable clip file ({exc})") from exc
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
    source = clip_reader(located)
    source.close()
    return source.clip_shape


def raw_clip_offsets(dataset: h5py.Dataset) -> np.ndarray | None:
    """File byte offset of every clip of ``dataset``, or None if not stored as plain bytes.

    Plain bytes: no filter (compression, shuffle, checksum), and either a contiguous
    dataset or one chunk per clip with every chunk written (an unwritten chunk reads as
    the fill value, which the file does not hold).
    """
    n_clips = dataset.shape[0]
    clip_bytes = math.prod(dataset.shape[1:]) * dataset.dtype.itemsize
    if dataset.id.get_create_plist().get_nfilters() > 0:
        return None
    if dataset.chunks is None:
        start = dataset.id.get_offset()
        return None if start is None else start + np.arange(n_clips, dtype=np.int64) * clip_bytes
    if tuple(dataset.chunks) != (1, *dataset.shape[1:]) or not hasattr(dataset.id, "chunk_iter"):
        return None
    offsets = np.full(n_clips, -1, dtype=np.int64)

    def record(chunk) -> None:
        if chunk.size == clip_bytes and chunk.filter_mask == 0:
            offsets[chunk.chunk_offset[0]] = chunk.byte_offset

    dataset.id.chunk_iter(record)  # once per file, when it is opened
    return offsets if np.all(offsets >= 0) else None


class ClipFile:
    """Random access to the clips of one clip file, memory-mapped where the layout allows.

    The map is checked against h5py on the first and last clip when the file is opened.
    The file must not be rewritten while it is open (memory-mapped reads of a truncated
    file crash the process); the workflow never rewrites an input of a running job.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            handle = h5py.File(self.path, "r")
        except FileNotFoundError as exc:
            raise DatasetError(f"{self.path}: clip file not found") from exc
        except OSError as exc:
            raise DatasetError(f"{self.path}: not a readable clip file ({exc})") from exc
        dataset = handle.get("clips")
        if not isinstance(dataset, h5py.Dataset) or dataset.ndim != 4 or dataset.dtype != np.uint8:
            handle.close()
            raise DatasetError(f"{self.path}: no (N, T, H, W) uint8 dataset 'clips'")
        self.n_clips = int(dataset.shape[0])
        self.clip_shape = tuple(int(d) for d in dataset.shape[1:])
        self._mapped = self._memory_map(dataset)
        if self._mapped is None:
            self._handle, self._dataset = handle, dataset
        else:
            handle.close()
            self._handle = self._dataset = None

    @property
    def memory_mapped(self) -> bool:
        return self._mapped is not None

    def _memory_map(self, dataset: h5py.Dataset) -> tuple[np.ndarray, np.ndarray] | None:
        """(view, offsets): clip ``i`` is ``view[offsets[i]]``; None where h5py must read."""
        offsets = raw_clip_offsets(dataset)
        if offsets is None or self.n_clips == 0:
            return None
        clip_bytes = math.prod(self.clip_shape)
        if offsets.max() + clip_bytes > self.path.stat().st_size:
            raise DatasetError(f"{self.path}: truncated clip file (clips beyond its end)")
        raw = np.memmap(self.path, dtype=np.uint8, mode="r")
        # row k of this view (no copy) is the clip_bytes bytes starting at byte k of the file
        view = np.lib.stride_tricks.sliding_window_view(raw, clip_bytes)
        for end in {0, self.n_clips - 1}:
            if not np.array_equal(view[offsets[end]].reshape(self.clip_shape), dataset[end]):
                log.warning("%s: clip bytes not where expected; read through h5py", self.path)
                return None
        return view, offsets

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Clips (n, T, H, W) uint8 at ``rows``, in the given order."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_clips):
            raise DatasetError(f"{self.path}: row out of range (file holds {self.n_clips} clips)")
        if self._mapped is not None:
            view, offsets = self._mapped
            return view[offsets[rows]].reshape(len(rows), *self.clip_shape)
        out = np.empty((len(rows), *self.clip_shape), dtype=np.uint8)
        try:
            for i, row in enumerate(rows):  # compressed: one chunk decoded per clip anyway
                out[i] = self._dataset[row]
        except OSError as exc:
            raise DatasetError(f"{self.path}: clips could not be read ({exc})") from exc
        return out

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


class ClipSource:
    """positions -> clips (n, T, H, W) uint8 for clips given by (file, row) pairs.

    Every file is opened once, when the source is made, so a missing or unreadable file
    fails before training starts. A call reads each file touched by the batch once: the
    Python work per batch grows with the files, not the clips.
    """

    def __init__(self, files: Sequence[str | Path] | np.ndarray, rows: np.ndarray):
        codes, paths = pd.factorize(pd.Series(np.asarray(files, dtype=object)).map(str))
        self._codes = codes.astype(np.int64)
        self._rows = np.asarray(rows, dtype=np.int64)
        self._files = [ClipFile(path) for path in paths]
        shapes = {str(f.path): f.clip_shape for f in self._files}
        if len(set(shapes.values())) > 1:
            raise DatasetError(f"clip files hold clips of different shapes: {shapes}")
        for code, clip_file in enumerate(self._files):
            mine = self._rows[self._codes == code]
            if mine.size and (mine.min() < 0 or mine.max() >= clip_file.n_clips):
                raise DatasetError(
                    f"{clip_file.path}: row {int(mine.max())} asked for, the file holds "
                    f"{clip_file.n_clips} clips"
                )
        self.clip_shape = self._files[0].clip_shape if self._files else (0, 0, 0)

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def memory_mapped(self) -> bool:
        return all(f.memory_mapped for f in self._files)

    def __call__(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64)
        out = np.empty((len(index), *self.clip_shape), dtype=np.uint8)
        codes = self._codes[index]
        by_file = np.argsort(codes, kind="stable")
        starts = np.flatnonzero(np.diff(codes[by_file], prepend=-1))
        for where in np.split(by_file, starts[1:]):
            if where.size:
                out[where] = self._files[codes[where[0]]].read(self._rows[index[where]])
        return out

    def close(self) -> None:
        for clip_file in self._files:
            clip_file.close()


def read_clip_batch(files: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Clips at (``files[i]``, ``rows[i]``) in the given order, one file open per file.

    For one-off reads of neighbouring rows (evaluation reads a split in order), where
    opening a ``ClipSource`` would cost more than it saves; batches of a training epoch,
    scattered over the files, are read through ``clip_reader``.
    """
    first = read_clips(files[0], rows[:1])
    out = np.empty((len(rows), *first.shape[1:]), dtype=first.dtype)
    for path in pd.unique(files):
        where = np.flatnonzero(files == path)
        out[where] = read_clips(path, rows[where])
    return out


@dataclass(frozen=True)
class AugmentationDraw:
    """The random parameters of one batch: per clip flip, shift (dy, dx) and gain."""

    flip: np.ndarray | None = None
    dy: np.ndarray | None = None
    dx: np.ndarray | None = None
    gain: np.ndarray | None = None


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

    def draw(self, n: int, rng: np.random.Generator) -> AugmentationDraw:
        """Parameters for ``n`` clips, drawn from ``rng`` in a fixed sequence."""
        flip = rng.random(n) < 0.5 if self.flip else None
        dy = dx = None
        if self.shift_px > 0:
            dy, dx = rng.integers(-self.shift_px, self.shift_px + 1, size=(2, n))
        gain = None
        if self.brightness > 0:
            gain = rng.uniform(1 - self.brightness, 1 + self.brightness, size=n)
        return AugmentationDraw(flip, dy, dx, gain)

    def move(self, clips: np.ndarray, draw: AugmentationDraw) -> np.ndarray:
        """Flip and shift a batch (N, T, H, W): one gather, in the input's dtype."""
        n, n_frames, height, width = clips.shape
        if draw.flip is None and draw.dy is None:
            return clips
        rows = np.broadcast_to(np.arange(height), (n, height))
        if draw.dy is not None:
            rows = np.clip(rows + draw.dy[:, None], 0, height - 1)
        if draw.flip is not None:
            rows = np.where(draw.flip[:, None], height - 1 - rows, rows)
        clip_at = np.arange(n)[:, None, None]
        frame_at = np.arange(n_frames)[None, :, None]
        if draw.dx is None:
            return clips[clip_at, frame_at, rows[:, None, :]]
        s = self.shift_px
        padded = np.empty((n, n_frames, height, width + 2 * s), dtype=clips.dtype)
        padded[..., s: s + width] = clips  # edges repeated; half the time of np.pad
        padded[..., :s] = clips[..., :1]
        padded[..., s + width:] = clips[..., -1:]
        # windows[i, t, y, k] is row y of frame t shifted so that it starts at column k
        windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=3)
        return windows[clip_at, frame_at, rows[:, None, :], (draw.dx + s)[:, None, None]]

    def transform(self, clips: np.ndarray, draw: AugmentationDraw) -> np.ndarray:
        """Apply drawn parameters to a batch (N, T, H, W) of grey values 0..255 -> float32.

        Flip and shift move pixels only, so they are done in the input's dtype (uint8
        straight from the file); the brightness gain multiplies in float32. Equal, bit
        for bit, to converting to float32 first and transforming one clip at a time.
        """
        moved = self.move(clips, draw)
        out = np.empty(clips.shape, dtype=np.float32)
        if draw.gain is None:
            out[...] = moved
            return out
        np.multiply(moved, draw.gain.astype(np.float32)[:, None, None, None], out=out)
        return np.clip(out, 0, 255, out=out)

    def apply(self, clips: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment a batch (N, T, H, W) of grey values 0..255; float32 out."""
        return self.transform(clips, self.draw(len(clips), rng))


def epoch_batches(
    n_items: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
    epoch: int,
    augmentation: Augmentation | None = None,
) -> list[tuple[np.ndarray, AugmentationDraw | None]]:
    """Positions and augmentation draws of every batch of one epoch, drawn up front.

    One generator seeded by (seed, epoch) gives the permutation, then each batch's draws
    in batch order: the same numbers as drawing them batch by batch while reading.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n_items) if shuffle else np.arange(n_items)
    augment = augmentation is not None and augmentation.active
    batches = []
    for start in range(0, n_items, batch_size):
        index = order[start: start + batch_size]
        batches.append((index, augmentation.draw(len(index), rng) if augment else None))
    return batches


def ordered_map(
    function: Callable[[object], object], items: Iterable, threads: int = 1, lookahead: int = 0
) -> Iterator:
    """``map(function, items)`` computed by ``threads`` threads, results in input order.

    With one thread nothing runs in the background. Otherwise up to ``lookahead``
    (default twice the threads) results are computed ahead of the one consumed.
    """
    if threads <= 1:
        yield from map(function, items)
        return
    lookahead = lookahead or 2 * threads
    with ThreadPoolExecutor(threads, thread_name_prefix="rbcflow-batches") as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) > lookahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # the consumer stopped early: drop what has not started
            for future in pending:
                future.cancel()


def batch_generator(
    read: Callable[[np.ndarray], np.ndarray],
    labels: np.ndarray,
    batch_size: int,
    sample_weights: np.ndarray | None = None,
    shuffle: bool = False,
    seed: int = 0,
    augmentation: Augmentation | None = None,
    reader_threads: int = 1,
) -> Callable[[], object]:
    """A generator factory for ``tf.data.Dataset.from_generator``.

    Each call of the factory is one pass (epoch); the pass number seeds the order and the
    augmentation, so epochs differ from each other but not from run to run.

    Parameters
    ----------
    read : positions (into ``labels``) -> array (n, ...) of inputs; safe to call from
        several threads at once when ``reader_threads`` > 1 (``clip_reader`` is).
    reader_threads : threads that read and augment batches ahead of the consumer; 1 (the
        default, as a training job gets one core) reads in the consumer's thread. The
        batches do not depend on it.
    """
    labels = np.asarray(labels, dtype=np.int32)
    weights = (
        np.ones(len(labels), np.float32) if sample_weights is None
        else np.asarray(sample_weights, dtype=np.float32)
    )
    passes = {"count": 0}

    def make_batch(batch: tuple[np.ndarray, AugmentationDraw | None]):
        index, draw = batch
        x = read(index)
        x = x.astype(np.float32) if draw is None else augmentation.transform(x, draw)
        return x[..., None] if x.ndim == 4 else x, labels[index], weights[index]

    def generate():
        epoch = passes["count"]
        passes["count"] += 1
        batches = epoch_batches(len(labels), batch_size, shuffle, seed, epoch, augmentation)
        yield from ordered_map(make_batch, batches, reader_threads)

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


def clip_reader(located: pd.DataFrame) -> ClipSource:
    """positions -> clips (n, T, H, W) uint8 for the rows of a located split table."""
    return ClipSource(located["file"].to_numpy(), located["row"].to_numpy())


def n_classes_of(labels: np.ndarray) -> int:
    """Classes of a task from the labels 0..K-1 of its split table (at least two).

    The split puts every class into every split, so the highest label of the table is
    the task's last class.
    """
    labels = np.asarray(labels, dtype=int)
    return max(2, int(labels.max()) + 1) if labels.size else 2


def class_weights(labels: np.ndarray, n_classes: int = 2) -> dict[int, float]:
    """Weights n / (K n_c), so each of the K classes contributes equally to the loss
    (seed 002's n / (2 n_c) for two)."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=n_classes)
    if counts.min() == 0:
        raise DatasetError(f"training clips lack a class (counts {counts.tolist()})")
    return {c: float(counts.sum() / (n_classes * counts[c])) for c in range(n_classes)}
