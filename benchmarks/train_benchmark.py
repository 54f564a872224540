"""Training throughput per model on this machine, and the `paper` feature-cache speed-up.

For each model: clips/s of training epochs (after the first, which includes tracing),
streamed from HDF5 clip files exactly as ``rbcflow train`` does. For ``paper``: the time
of one epoch on cached backbone features against one epoch that re-runs the frozen
backbone on every clip, and their ratio.

Usage: python benchmarks/train_benchmark.py [--clips 192] [--frames 16] [--size 32]
       [--epochs 3] [--batch 16] [--out benchmark.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from rbcflow.clipstore import write_clip_file
from rbcflow.dataset import array_dataset, batch_generator, clip_reader, make_dataset
from rbcflow.provenance import hardware, package_versions


def write_clips(folder: Path, n_clips: int, n_frames: int, size: int, seed: int = 0) -> Path:
    """One clip file of random-walk blobs (content does not matter for throughput)."""
    rng = np.random.default_rng(seed)
    clips = rng.integers(0, 255, size=(n_clips, n_frames, size, size), dtype=np.uint8)
    table = pd.DataFrame(
        {
            "clip_id": [f"bench/{i}" for i in range(n_clips)], "sample": "bench",
            "donor": "D0", "condition": "native", "focus": "in", "session": "s0",
            "track_id": np.arange(n_clips), "first_frame": 0, "last_frame": n_frames,
            "velocity_mm_s": 0.0, "centerline_distance_um": 0.0, "flight_distance_px": 0.0,
        }
    )
    return write_clip_file(folder / "bench.h5", clips, table)


def epoch_seconds(model, dataset, epochs: int) -> list[float]:
    """Seconds of each training epoch (no validation)."""
    import keras

    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(dataset, epochs=epochs, callbacks=[Timer()], verbose=0, shuffle=False)
    return times


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=192)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--models", default="r2plus1d,cnn_lstm,frame,paper")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import keras

    from rbcflow.models import build_model, build_paper, compile_model
    from rbcflow.train import cache_features, configure_runtime

    runtime = configure_runtime(seed=0)
    shape = (args.frames, args.size, args.size, 1)
    results: dict[str, object] = {
        "clips": args.clips, "clip_shape": list(shape[:3]), "batch_size": args.batch,
        "runtime": runtime, "hardware": hardware(), "packages": package_versions(),
        "models": {},
    }
    labels = np.arange(args.clips) % 2
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = write_clips(folder, args.clips, args.frames, args.size)
        located = pd.DataFrame({"file": str(path), "row": np.arange(args.clips)})
        read = clip_reader(located)

        def clip_dataset():
            generate = batch_generator(read, labels, args.batch, shuffle=True, seed=0)
            return make_dataset(generate, shape, args.clips, args.batch)

        for name in args.models.split(","):
            keras.utils.set_random_seed(0)
            if name == "paper":
                model, extractor, head = build_paper(shape, weights=None)
                compile_model(model, 1e-3)
                compile_model(head, 1e-3)
                # full model: the frozen backbone runs forward on every clip of every epoch
                full = epoch_seconds(model, clip_dataset(), 2)[1:]
                start = time.perf_counter()
                cache_features(extractor, located, folder / "features.npy", args.batch)
                cache_seconds = time.perf_counter() - start
                # as rbcflow.train does for caches that fit in memory
                features = np.load(folder / "features.npy")
                cached = epoch_seconds(
                    head, array_dataset(features, labels, args.batch, shuffle=True),
                    args.epochs + 1,
                )[1:]
                results["models"]["paper"] = {
                    "params": model.count_params(),
                    "trainable_params": int(sum(np.prod(w.shape) for w in head.trainable_weights)),
                    "epoch_s_rerun_backbone": float(np.median(full)),
                    "epoch_s_cached_features": float(np.median(cached)),
                    "feature_cache_s": cache_seconds,
                    "cache_speedup": float(np.median(full) / np.median(cached)),
                    "clips_per_s_rerun_backbone": args.clips / float(np.median(full)),
                    "clips_per_s_cached": args.clips / float(np.median(cached)),
                }
            else:
                model = compile_model(build_model(name, shape), 1e-3)
                times = epoch_seconds(model, clip_dataset(), args.epochs + 1)[1:]
                results["models"][name] = {
                    "params": model.count_params(),
                    "epoch_s": float(np.median(times)),
                    "clips_per_s": args.clips / float(np.median(times)),
                }
            print(name, json.dumps(results["models"][name]), file=sys.stderr, flush=True)
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return results


if __name__ == "__main__":
    main()
