"""Train every model for a few epochs on this process's device; clips/s, device memory,
and (on a GPU) the accuracy change of mixed precision. Run by benchmarks/gpu_check.sh,
once with the GPU visible and once on the CPU.

The clips are simulated: a bright blob crossing a noisy frame, its radius depending on the
class, so a few epochs already separate the classes and an accuracy difference between
float32 and mixed precision means something. The frozen-backbone models (``paper``,
``i3d_lstm``) get random backbone weights (nothing is downloaded) and are trained end to
end with the backbone frozen.

Usage: python benchmarks/gpu_check.py --device gpu|cpu [--clips 256] [--frames 16]
       [--size 32] [--epochs 3] [--batch 32] [--models paper,r2plus1d,...] [--out x.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from train_benchmark import epoch_seconds  # benchmarks/ is the script's folder

from rbcflow.provenance import hardware, package_versions


def simulated_clips(n_clips: int, n_frames: int, size: int, seed: int = 0):
    """(clips (N, T, H, W, 1) float32, labels): class 1's blob is 1.5 times wider."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_clips) % 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    clips = np.empty((n_clips, n_frames, size, size, 1), np.float32)
    for i, label in enumerate(labels):
        radius = (2.0 if label == 0 else 3.0) * rng.uniform(0.9, 1.1)
        speed = rng.uniform(0.5, 1.5)
        y0, x0 = size / 2 + rng.normal(0, size / 16), size / 4 + rng.normal(0, 1)
        for t in range(n_frames):
            blob = np.exp(-((xx - x0 - speed * t) ** 2 + (yy - y0) ** 2) / (2 * radius**2))
            clips[i, t, :, :, 0] = 180 * blob + rng.normal(20, 6, (size, size))
    return np.clip(clips, 0, 255), labels


def train_once(name: str, data, epochs: int, batch: int, gpu: bool, mixed: bool) -> dict:
    """Train model ``name`` (seed 0) and report clips/s, validation accuracy, memory."""
    import keras
    import tensorflow as tf

    from rbcflow.models import FEATURE_MODELS, build_feature_model, build_model, compile_model
    from rbcflow.train import configure_runtime

    configure_runtime(seed=0, mixed_precision=mixed)
    (train_x, train_y), (val_x, val_y) = data
    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
    shape = train_x.shape[1:]
    if name in FEATURE_MODELS:
        model = build_feature_model(name, shape, weights=None)[0]
    else:
        model = build_model(name, shape)
    compile_model(model, 1e-3)
    # the first epoch traces and compiles: one more than timed
    train = tf.data.Dataset.from_tensor_slices((train_x, train_y)).batch(batch)
    seconds = epoch_seconds(model, train, epochs + 1)
    probabilities = np.asarray(model.predict(val_x, batch_size=batch, verbose=0), np.float32)
    row = {
        "model": name,
        "policy": keras.mixed_precision.global_policy().name,
        "train_clips_per_s": round(len(train_x) / float(np.median(seconds[1:])), 1),
        "val_accuracy": float(np.mean(probabilities.argmax(axis=1) == val_y)),
        "probabilities": probabilities,
    }
    if gpu:
        memory = tf.config.experimental.get_memory_info("GPU:0")
        row["device_peak_mb"] = round(memory["peak"] / 2**20, 1)
    keras.backend.clear_session()
    return row


def check(args) -> dict:
    import tensorflow as tf

    from rbcflow.models import MODELS

    gpus = tf.config.list_physical_devices("GPU")
    if args.device == "gpu" and not gpus:
        raise SystemExit("gpu_check: --device gpu, but TensorFlow sees no GPU")
    gpu = args.device == "gpu"
    clips, labels = simulated_clips(args.clips, args.frames, args.size)
    cut = len(clips) * 3 // 4
    data = ((clips[:cut], labels[:cut]), (clips[cut:], labels[cut:]))
    rows = []
    for name in (args.models.split(",") if args.models else MODELS):
        row = train_once(name, data, args.epochs, args.batch, gpu, mixed=False)
        if gpu:
            mixed = train_once(name, data, args.epochs, args.batch, gpu, mixed=True)
            row["mixed_train_clips_per_s"] = mixed["train_clips_per_s"]
            row["mixed_device_peak_mb"] = mixed["device_peak_mb"]
            row["mixed_accuracy_delta"] = mixed["val_accuracy"] - row["val_accuracy"]
            row["mixed_max_probability_delta"] = float(
                np.abs(mixed["probabilities"] - row["probabilities"]).max())
        del row["probabilities"]
        print(json.dumps(row), flush=True)
        rows.append(row)
    return {
        "device": args.device,
        "gpus": [tf.config.experimental.get_device_details(g).get("device_name", g.name)
                 for g in gpus] if gpu else [],
        "built_with_cuda": tf.test.is_built_with_cuda(),
        "clips": args.clips, "clip_shape": [args.frames, args.size, args.size],
        "epochs_timed": args.epochs, "batch_size": args.batch,
        "hardware": hardware(), "packages": package_versions(), "models": rows,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["gpu", "cpu"], required=True)
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--models", default=None, help="comma-separated; default: all")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    result = check(args)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"gpu_check {args.device}: {len(result['models'])} models", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
