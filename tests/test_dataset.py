"""Training input: memory-mapped clip reads, parallel batches, seeded augmentation.

The reference below is the input pipeline as it was before batches were read in parallel
(one batch at a time, draws taken from the epoch's generator as each batch was made, the
clips read through h5py): the current one must give the same bytes.
"""

from __future__ import annotations

import threading
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from synthetic_clips import donors_with_both, make_clip_files

from rbcflow.clipstore import read_clip_table, write_clip_file
from rbcflow.dataset import (
    Augmentation,
    ClipFile,
    DatasetError,
    attach_locations,
    batch_generator,
    clip_reader,
    epoch_batches,
    ordered_map,
)

N_FRAMES, SIZE = 4, 12


def reference_augment(clips, rng, flip, shift_px, brightness):
    """Augmentation as it was: float32 batch in, clip by clip for the shift."""
    out = clips.copy()
    n, _, height, width = out.shape
    if flip:
        mirrored = rng.random(n) < 0.5
        out[mirrored] = out[mirrored, :, ::-1, :]
    if shift_px > 0:
        s = shift_px
        padded = np.pad(out, ((0, 0), (0, 0), (s, s), (s, s)), mode="edge")
        dy, dx = rng.integers(-s, s + 1, size=(2, n))
        for i in range(n):
            out[i] = padded[i, :, s + dy[i]: s + dy[i] + height, s + dx[i]: s + dx[i] + width]
    if brightness > 0:
        gain = rng.uniform(1 - brightness, 1 + brightness, size=n)
        out = np.clip(out * gain[:, None, None, None].astype(np.float32), 0, 255)
    return out


def read_one(row: pd.Series) -> np.ndarray:
    with h5py.File(row["file"], "r") as h5:
        return h5["clips"][row["row"]]


def reference_epoch(located, labels, weights, batch_size, shuffle, seed, epoch, augmentation):
    """One epoch's (x, y, w) batches as the earlier pipeline made them."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(labels)) if shuffle else np.arange(len(labels))
    for start in range(0, len(order), batch_size):
        index = order[start: start + batch_size]
        x = np.stack([read_one(located.iloc[i]) for i in index]).astype(np.float32)
        if augmentation is not None and augmentation.active:
            a = augmentation
            x = reference_augment(x, rng, a.flip, a.shift_px, a.brightness)
        yield x[..., None], labels[index].astype(np.int32), weights[index].astype(np.float32)


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("dataset")
    return make_clip_files(
        root, donors_with_both(3), clips_per_sample=7, n_frames=N_FRAMES, size=SIZE, seed=5
    )


@pytest.fixture(scope="module")
def located(clip_files) -> pd.DataFrame:
    table = pd.concat([read_clip_table(path) for path in clip_files], ignore_index=True)
    return attach_locations(table[["clip_id"]], clip_files)


def epochs(generate, n_epochs=2):
    return [list(generate()) for _ in range(n_epochs)]


def assert_same_batches(got, expected):
    assert len(got) == len(expected)
    for (x, y, w), (xr, yr, wr) in zip(got, expected, strict=True):
        assert x.dtype == xr.dtype == np.float32 and x.shape == xr.shape
        assert x.tobytes() == xr.tobytes()
        np.testing.assert_array_equal(y, yr)
        np.testing.assert_array_equal(w, wr)


@pytest.mark.parametrize(
    "augmentation",
    [Augmentation(True, 2, 0.05), Augmentation(True, 0, 0.0), Augmentation(False, 5, 0.0),
     Augmentation(False, 0, 0.4), None],
)
@pytest.mark.parametrize("threads", [1, 3])
def test_batches_equal_the_reference_bit_for_bit(located, augmentation, threads):
    labels = np.arange(len(located)) % 2
    weights = np.linspace(0.5, 2.0, len(located))
    generate = batch_generator(
        clip_reader(located), labels, 5, weights, shuffle=True, seed=11,
        augmentation=augmentation, reader_threads=threads,
    )
    for epoch, got in enumerate(epochs(generate)):
        expected = list(
            reference_epoch(located, labels, weights, 5, True, 11, epoch, augmentation)
        )
        assert_same_batches(got, expected)


def test_unshuffled_augmented_batches_equal_the_reference(located):
    labels, weights = np.zeros(len(located)), np.ones(len(located))
    augmentation = Augmentation(True, 1, 0.1)
    generate = batch_generator(clip_reader(located), labels, 8, augmentation=augmentation)
    expected = reference_epoch(located, labels, weights, 8, False, 0, 0, augmentation)
    assert_same_batches(list(generate()), list(expected))


def test_thread_count_does_not_change_batches_and_epochs_differ(located):
    labels = np.arange(len(located)) % 2
    runs = {
        threads: epochs(batch_generator(
            clip_reader(located), labels, 4, shuffle=True, seed=3,
            augmentation=Augmentation(True, 2, 0.05), reader_threads=threads,
        ))
        for threads in (1, 2, 4)
    }
    for threads in (2, 4):
        for got, expected in zip(runs[threads], runs[1], strict=True):
            assert_same_batches(got, expected)
    first, second = (np.concatenate([x for x, _, _ in epoch]) for epoch in runs[1])
    assert not np.array_equal(first, second)


def test_every_clip_once_per_epoch_with_its_label_and_weight(located):
    n = len(located)
    positions = np.arange(n)
    weights = 1.0 + positions / 8.0  # distinct per clip: a misaligned weight shows
    generate = batch_generator(
        clip_reader(located), positions, 6, weights, shuffle=True, seed=1, reader_threads=2
    )
    for epoch in epochs(generate):
        seen = np.concatenate([y for _, y, _ in epoch])
        np.testing.assert_array_equal(np.sort(seen), positions)
        assert len(epoch) == -(-n // 6) and len(epoch[-1][1]) == n - 6 * (len(epoch) - 1)
        for x, y, w in epoch:
            np.testing.assert_array_equal(w, weights[y].astype(np.float32))
            for clip, position in zip(x[..., 0], y, strict=True):
                np.testing.assert_array_equal(clip, read_one(located.iloc[position]))


def test_epoch_plan_draws_in_batch_order():
    augmentation = Augmentation(True, 2, 0.1)
    plan = epoch_batches(10, 4, True, 7, 2, augmentation)
    rng = np.random.default_rng([7, 2])
    order = rng.permutation(10)
    assert [len(index) for index, _ in plan] == [4, 4, 2]
    for k, (index, draw) in enumerate(plan):
        np.testing.assert_array_equal(index, order[4 * k: 4 * k + 4])
        expected = augmentation.draw(len(index), rng)
        for name in ("flip", "dy", "dx", "gain"):
            np.testing.assert_array_equal(getattr(draw, name), getattr(expected, name))
    assert all(draw is None for _, draw in epoch_batches(10, 4, True, 7, 2, None))


def test_augmentation_apply_equals_the_reference_on_odd_shapes():
    rng = np.random.default_rng(0)
    for shape, shift in (((1, 2, 5, 7), 3), ((9, 3, 4, 4), 6), ((6, 1, 8, 3), 1)):
        clips = rng.uniform(0, 255, shape).astype(np.float32)
        for flip, brightness in ((True, 0.0), (False, 0.2), (True, 1.5)):
            augmentation = Augmentation(flip, shift, brightness)
            got = augmentation.apply(clips, np.random.default_rng(4))
            expected = reference_augment(clips, np.random.default_rng(4), flip, shift, brightness)
            assert got.dtype == np.float32 and got.tobytes() == expected.tobytes()


def test_uint8_input_augments_like_float_input():
    clips = np.random.default_rng(1).integers(0, 256, (7, 3, 9, 10), dtype=np.uint8)
    augmentation = Augmentation(True, 2, 0.3)
    draw = augmentation.draw(7, np.random.default_rng(2))
    from_uint8 = augmentation.transform(clips, draw)
    from_float = augmentation.transform(clips.astype(np.float32), draw)
    assert from_uint8.dtype == np.float32 and from_uint8.tobytes() == from_float.tobytes()


def write_layouts(folder: Path) -> tuple[np.ndarray, dict[str, Path]]:
    """The same clips as chunked, contiguous and lzf-compressed files."""
    clips = np.random.default_rng(3).integers(0, 256, (9, N_FRAMES, SIZE, SIZE), dtype=np.uint8)
    table = read_clip_table(make_clip_files(
        folder / "t", {"D00": ["native"]}, clips_per_sample=9, n_frames=N_FRAMES, size=SIZE
    )[0])
    paths = {
        "chunked": write_clip_file(folder / "chunked.h5", clips, table),
        "lzf": write_clip_file(folder / "lzf.h5", clips, table, compression="lzf"),
        "contiguous": folder / "contiguous.h5",
    }
    with h5py.File(paths["contiguous"], "w", userblock_size=512) as h5:
        h5.create_dataset("clips", data=clips)
    return clips, paths


def test_every_file_layout_reads_the_same_clips(tmp_path):
    clips, paths = write_layouts(tmp_path)
    rows = np.array([8, 0, 3, 3, 5])
    for layout, path in paths.items():
        clip_file = ClipFile(path)
        assert clip_file.memory_mapped == (layout != "lzf"), layout
        np.testing.assert_array_equal(clip_file.read(rows), clips[rows])
    mixed = pd.DataFrame({"file": [str(paths["lzf"]), str(paths["chunked"])] * 3,
                          "row": [1, 2, 3, 4, 5, 6]})
    read = clip_reader(mixed)
    assert not read.memory_mapped
    np.testing.assert_array_equal(read(np.array([5, 0, 2])), clips[[6, 1, 3]])


def test_a_missing_clip_file_is_named(clip_files, tmp_path):
    missing = tmp_path / "D99_native.h5"
    table = read_clip_table(clip_files[0])[["clip_id"]]
    with pytest.raises(DatasetError, match="D99_native.h5: clip file not found"):
        attach_locations(table, [clip_files[0], missing])
    with pytest.raises(DatasetError, match="D99_native.h5: clip file not found"):
        clip_reader(pd.DataFrame({"file": [str(missing)], "row": [0]}))


def test_a_corrupt_clip_file_is_named(clip_files, tmp_path):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an HDF5 file" * 100)
    with pytest.raises(DatasetError, match="garbage.h5: not a readable clip file"):
        attach_locations(read_clip_table(clip_files[0])[["clip_id"]], [garbage])
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(clip_files[0].read_bytes()[:6000])
    with pytest.raises(DatasetError, match="truncated.h5: "):
        clip_reader(pd.DataFrame({"file": [str(truncated)], "row": [0]}))
    with pytest.raises(DatasetError, match=f"{clip_files[0].name}: row 7 asked for"):
        clip_reader(pd.DataFrame({"file": [str(clip_files[0])], "row": [7]}))


def test_a_read_error_inside_a_reader_thread_reaches_the_consumer(located):
    def failing_read(index):
        if 3 in index:
            raise DatasetError("clips_x.h5: clips could not be read")
        return np.zeros((len(index), N_FRAMES, SIZE, SIZE), np.uint8)

    generate = batch_generator(failing_read, np.zeros(12), 2, reader_threads=2)
    with pytest.raises(DatasetError, match="clips_x.h5"):
        list(generate())


def test_ordered_map_keeps_order_and_stops_early():
    def slow_square(k):
        return k * k

    assert list(ordered_map(slow_square, range(50), threads=3)) == [k * k for k in range(50)]
    stream = ordered_map(slow_square, range(1000), threads=2, lookahead=3)
    assert [next(stream) for _ in range(4)] == [0, 1, 4, 9]
    stream.close()
    alive = [t.name for t in threading.enumerate() if t.name.startswith("rbcflow-batches")]
    assert not alive  # closing the stream shut the pool down


def test_tf_dataset_yields_the_generator_batches(located):
    from rbcflow.dataset import make_dataset

    labels = np.arange(len(located)) % 2
    generate = batch_generator(
        clip_reader(located), labels, 4, shuffle=True, seed=2,
        augmentation=Augmentation(True, 2, 0.05), reader_threads=2,
    )
    dataset = make_dataset(generate, (N_FRAMES, SIZE, SIZE, 1), len(labels), 4)
    got = [tuple(t.numpy() for t in batch) for batch in dataset]
    expected = list(reference_epoch(
        located, labels, np.ones(len(labels)), 4, True, 2, 0, Augmentation(True, 2, 0.05)
    ))
    assert_same_batches(got, expected)
