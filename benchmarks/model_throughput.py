"""Training and inference throughput of every model on one CPU thread.

For each model of ``rbcflow.models.MODELS``, on a small synthetic set of random
16 x 32 x 32 clips held in memory (content does not matter for speed): clips/s of
training epochs (after a first, untimed epoch that includes tracing) and of inference.
The frozen-backbone models (``paper``, ``i3d_lstm``; random weights) are trained as
``rbcflow.train`` trains ``paper``: the head on cached features, so their training
rate is the head's on features, and the rate of computing the features (the cache) is
given separately. TensorFlow runs on one intra-op and one inter-op thread, so the figures
compare models rather than machines.

Usage: python benchmarks/model_throughput.py [--clips 64] [--frames 16] [--size 32]
       [--epochs 2] [--batch 16] [--models r2plus1d,slowfast,...] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from train_benchmark import epoch_seconds  # benchmarks/ is the script's folder

from rbcflow.provenance import hardware, package_versions


def clips_per_second(function, data: np.ndarray, batch: int, repeats: int = 2) -> float:
    """Clips/s of ``function`` over ``data`` in batches, best of ``repeats`` after a warm-up."""
    function(data[:batch])
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for first in range(0, len(data), batch):
            function(data[first: first + batch])
        best = min(best, time.perf_counter() - start)
    return len(data) / best


def train_rate(model, inputs: np.ndarray, labels: np.ndarray, batch: int, epochs: int) -> float:
    """Training clips/s: median of ``epochs`` timed epochs after one untimed."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(batch)
    return len(inputs) / float(np.median(epoch_seconds(model, data, epochs + 1)[1:]))


def measure(name: str, clips: np.ndarray, labels: np.ndarray, batch: int, epochs: int) -> dict:
    """Parameters and clips/s (train, inference, feature extraction) of one model."""
    import keras

    from rbcflow.models import FEATURE_MODELS, build_feature_model, build_model, compile_model

    keras.utils.set_random_seed(0)
    shape = clips.shape[1:]
    row: dict[str, object] = {"model": name}
    if name in FEATURE_MODELS:
        model, extractor, head = build_feature_model(name, shape, weights=None)
        row["feature_clips_per_s"] = clips_per_second(extractor.predict_on_batch, clips, batch)
        features = np.concatenate(
            [extractor.predict_on_batch(clips[i: i + batch]) for i in range(0, len(clips), batch)]
        )
        row["train_clips_per_s"] = train_rate(
            compile_model(head, 1e-3), features, labels, batch, epochs
        )
    else:
        model = compile_model(build_model(name, shape), 1e-3)
        row["train_clips_per_s"] = train_rate(model, clips, labels, batch, epochs)
    row["inference_clips_per_s"] = clips_per_second(model.predict_on_batch, clips, batch)
    row["params"] = model.count_params()
    row["trainable_params"] = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return row


def table(rows: list[dict]) -> str:
    """Markdown table of the measurements."""
    lines = [
        "| model | parameters | trainable | train clips/s | inference clips/s "
        "| feature cache clips/s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        feature = row.get("feature_clips_per_s")
        lines.append(
            f"| {row['model']} | {row['params']:,} | {row['trainable_params']:,} "
            f"| {row['train_clips_per_s']:.0f} | {row['inference_clips_per_s']:.0f} "
            f"| {'' if feature is None else f'{feature:.0f}'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--models", default=None, help="comma-separated; default: all")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import tensorflow as tf

    # before any operation runs: thread pools cannot be resized afterwards
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from rbcflow.models import MODELS

    names = args.models.split(",") if args.models else list(MODELS)
    rng = np.random.default_rng(0)
    shape = (args.clips, args.frames, args.size, args.size, 1)
    clips = rng.integers(0, 255, size=shape).astype(np.float32)
    labels = np.arange(args.clips) % 2
    rows = [measure(name, clips, labels, args.batch, args.epochs) for name in names]
    result = {
        "clips": args.clips, "clip_shape": list(shape[1:4]), "batch_size": args.batch,
        "threads": 1, "hardware": hardware(), "packages": package_versions(), "models": rows,
    }
    print(table(rows))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
