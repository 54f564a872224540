"""Throughput of the training input pipeline alone (no model): HDF5 clips to augmented batches.

Writes synthetic clip files (``--files`` recordings, clips of 16 x 32 x 32 and of
16 x 112 x 112), then iterates the training input the way ``rbcflow train`` builds it
(``clip_reader``, a shuffled ``batch_generator`` with the default augmentation: flip,
2 px shift, 5 % brightness; ``make_dataset``) and reports clips/s per epoch, best and
median of ``--repeat`` epochs after one warm-up epoch, for each number of reader
threads; both through ``tf.data`` and for the bare Python generator. CPU clips/s (clips
per CPU second of the whole process, all threads) is steadier than wall clips/s on a
shared machine. Targets (the issue): 5,000 clips/s of 16 x 32 x 32 and 500 of
16 x 112 x 112 through ``tf.data`` with two reader threads.
Results: ``benchmarks/results/input_pipeline.{json,md}``.

    .venv/bin/python benchmarks/input_pipeline.py [--files 20] [--clips-small 4000]
        [--clips-large 2000] [--threads 1,2] [--compression none|lzf] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from rbcflow.clipstore import write_clip_file
from rbcflow.dataset import Augmentation, batch_generator, clip_reader, make_dataset
from rbcflow.provenance import hardware, package_versions

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {32: 5000.0, 112: 500.0}
AUGMENTATION = Augmentation(flip=True, shift_px=2, brightness=0.05)  # the config's defaults


def write_recordings(
    folder: Path, n_clips: int, n_files: int, size: int, compression: str, seed: int = 0
) -> list[Path]:
    """``n_clips`` noisy-blob clips (16 x size x size) spread unevenly over ``n_files`` files."""
    rng = np.random.default_rng(seed)
    shares = rng.dirichlet(np.full(n_files, 4.0))
    counts = np.maximum(1, np.round(shares * n_clips).astype(int))
    yy, xx = np.mgrid[0:size, 0:size]
    blob = 120 * np.exp(-((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / (2 * (size / 6) ** 2))
    paths = []
    for f, n in enumerate(counts):
        noise = rng.normal(30, 8, size=(n, 16, size, size))
        clips = np.clip(noise + blob, 0, 255).astype(np.uint8)
        sample = f"S{f:02d}"
        table = pd.DataFrame(
            {
                "clip_id": [f"{sample}/{i}" for i in range(n)], "sample": sample,
                "donor": f"D{f % 10}", "condition": "native", "focus": "in", "session": "s0",
                "track_id": np.arange(n), "first_frame": 0, "last_frame": 16,
                "velocity_mm_s": 0.0, "centerline_distance_um": 0.0, "flight_distance_px": 0.0,
            }
        )
        paths.append(write_clip_file(folder / f"{sample}_{size}.h5", clips, table,
                                     compression=compression))
    return paths


def located_table(paths: list[Path]) -> pd.DataFrame:
    """(file, row) of every clip of the files, as ``attach_locations`` gives them."""
    import h5py

    parts = []
    for path in paths:
        with h5py.File(path, "r") as h5:
            n = h5["clips"].shape[0]
        parts.append(pd.DataFrame({"file": str(path), "row": np.arange(n)}))
    return pd.concat(parts, ignore_index=True)


def time_epochs(make_epoch, n_clips: int, repeat: int) -> dict:
    """Wall and CPU clips/s of ``repeat`` epochs after one warm-up epoch."""
    make_epoch()
    wall, cpu = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        make_epoch()
        wall.append(n_clips / (time.perf_counter() - w))
        cpu.append(n_clips / max(time.process_time() - c, 1e-9))
    return {"best": max(wall), "median": statistics.median(wall), "all": wall,
            "cpu_best": max(cpu), "cpu_median": statistics.median(cpu)}


def measure(located: pd.DataFrame, size: int, threads: int, batch: int, repeat: int) -> dict:
    """Clips/s of one clip size at one reader-thread count, tf.data and generator alone."""
    n = len(located)
    labels = np.arange(n) % 2
    read = clip_reader(located)
    generate = batch_generator(
        read, labels, batch, shuffle=True, seed=0, augmentation=AUGMENTATION,
        reader_threads=threads,
    )

    def generator_epoch() -> None:
        for x, _, _ in generate():
            assert x.shape[1:] == (16, size, size, 1)

    dataset = make_dataset(generate, (16, size, size, 1), n, batch)

    def dataset_epoch() -> None:
        for _ in dataset:
            pass

    return {
        "memory_mapped": read.memory_mapped,
        "tf_data": time_epochs(dataset_epoch, n, repeat),
        "generator": time_epochs(generator_epoch, n, repeat),
    }


def markdown(results: dict) -> str:
    """The results as a table, with each target met or missed."""
    lines = [
        "| clip | reader threads | tf.data best | tf.data median | tf.data per CPU-s | "
        "generator best | generator median | target (tf.data) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in results["runs"]:
        tf_data, gen = run["tf_data"], run["generator"]
        target = TARGETS[run["size"]]
        verdict = "met" if tf_data["best"] >= target else "missed"
        lines.append(
            f"| 16 x {run['size']} x {run['size']} | {run['threads']} | {tf_data['best']:,.0f} "
            f"| {tf_data['median']:,.0f} | {tf_data['cpu_median']:,.0f} | {gen['best']:,.0f} | "
            f"{gen['median']:,.0f} | {target:,.0f}: {verdict} |"
        )
    lines.append(
        f"\nclips/s, batch {results['batch_size']}, {results['compression']} clip files, "
        f"load average {results['load_before'][0]:.2f} before, "
        f"{results['load_after'][0]:.2f} after."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--clips-small", type=int, default=4000, help="16 x 32 x 32 clips")
    parser.add_argument("--clips-large", type=int, default=2000, help="16 x 112 x 112 clips")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--compression", choices=["none", "lzf", "gzip"], default="none")
    parser.add_argument("--out", type=Path, default=RESULTS / "input_pipeline")
    args = parser.parse_args(argv)

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)  # as a training job runs
    tf.config.threading.set_inter_op_parallelism_threads(1)
    results: dict = {
        "batch_size": args.batch, "compression": args.compression,
        "augmentation": AUGMENTATION.__dict__, "hardware": hardware(),
        "packages": package_versions(), "load_before": os.getloadavg(), "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for size, n_clips in ((32, args.clips_small), (112, args.clips_large)):
            paths = write_recordings(Path(tmp), n_clips, args.files, size, args.compression)
            located = located_table(paths)
            for threads in (int(t) for t in args.threads.split(",")):
                run = {"size": size, "threads": threads, "n_clips": len(located),
                       **measure(located, size, threads, args.batch, args.repeat)}
                results["runs"].append(run)
                print(size, threads, json.dumps({k: round(run[k]["best"]) for k in
                                                 ("tf_data", "generator")}), flush=True)
    results["load_after"] = os.getloadavg()
    table = markdown(results)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(table)
    return results


if __name__ == "__main__":
    main()
