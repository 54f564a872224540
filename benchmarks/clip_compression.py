"""HDF5 compression of clip files: none versus lzf (write time, read time, file size).

Simulates a few demo-preset recordings, cuts their clips with the default config
(``rbcflow.preprocess.preprocess_video``), then rewrites each recording's clips with
``rbcflow.clipstore.write_clip_file`` under every compression and times, in CPU and wall
seconds (best of ``--repeat``): writing the file, reading every clip back in one call,
and reading the clips one by one in shuffled order (the access pattern of training).
Results: ``benchmarks/results/clip_compression.{json,md}``.

    .venv/bin/python benchmarks/clip_compression.py [--continuous 3] [--triggered 3]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from rbcflow.clipstore import read_clip_table, read_clips, write_clip_file
from rbcflow.preprocess import preprocess_video
from rbcflow.simulate.scenario import plan_dataset, write_video

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("none", "lzf")


def _timed(fn, repeat: int) -> tuple[float, float]:
    """Best wall and CPU seconds of ``repeat`` calls."""
    wall, cpu = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return min(wall), min(cpu)


def _read_one_by_one(path: Path, order: np.ndarray) -> None:
    import h5py

    with h5py.File(path, "r") as h5:
        data = h5["clips"]
        for i in order.tolist():
            data[i]


def measure(clips: np.ndarray, table, workdir: Path, repeat: int, seed: int = 0) -> dict:
    """Write/read timings and file size of one recording's clips under each method."""
    out = {}
    order = np.random.default_rng(seed).permutation(len(clips))
    for method in METHODS:
        path = workdir / f"clips_{method}.h5"
        w_wall, w_cpu = _timed(lambda p=path, m=method: write_clip_file(
            p, clips, table, compression=m), repeat)
        r_wall, r_cpu = _timed(lambda p=path: read_clips(p), repeat)
        o_wall, o_cpu = _timed(lambda p=path: _read_one_by_one(p, order), repeat)
        assert np.array_equal(read_clips(path), clips)
        out[method] = {"bytes": os.path.getsize(path), "write_s": w_wall, "write_cpu_s": w_cpu,
                       "read_all_s": r_wall, "read_all_cpu_s": r_cpu,
                       "read_one_by_one_s": o_wall, "read_one_by_one_cpu_s": o_cpu}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--continuous", type=int, default=3)
    ap.add_argument("--triggered", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--out", default=str(RESULTS / "clip_compression"))
    args = ap.parse_args()
    specs = plan_dataset("demo", seed=args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for mode, n in (("continuous", args.continuous), ("triggered", args.triggered)):
            chosen = [s for s in specs if s.mode == mode]
            chosen = chosen[:: max(1, len(chosen) // max(n, 1))][:n]
            for spec in chosen:
                row = write_video(spec, args.seed, work, "avi_raw")["row"]
                info = {k: row[k] for k in ("sample", "donor", "condition", "focus",
                                            "session", "fps", "um_per_px")}
                paths = preprocess_video(work / row["path"], work / "res", {}, info)
                clips, table = read_clips(paths["clips"]), read_clip_table(paths["clips"])
                if len(clips) == 0:
                    continue
                m = measure(clips, table, work, args.repeat)
                m.update(sample=spec.sample, mode=mode, n_clips=len(clips),
                         raw_bytes=int(clips.nbytes))
                rows.append(m)
                print(spec.sample, len(clips), {k: round(m[k]["bytes"] / clips.nbytes, 3)
                                                for k in METHODS}, flush=True)
    totals = {"n_clips": sum(r["n_clips"] for r in rows),
              "raw_bytes": sum(r["raw_bytes"] for r in rows)}
    for method in METHODS:
        t = {k: sum(r[method][k] for r in rows) for k in rows[0][method]}
        t["ratio"] = t["bytes"] / totals["raw_bytes"]
        t["write_clips_per_s"] = totals["n_clips"] / t["write_s"]
        t["read_all_clips_per_s"] = totals["n_clips"] / t["read_all_s"]
        t["read_one_by_one_clips_per_s"] = totals["n_clips"] / t["read_one_by_one_s"]
        totals[method] = t
    print(json.dumps(totals, indent=1))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"per_recording": rows, "totals": totals},
                                                   indent=1))
    lines = ["| method | size / raw | write clips/s | read all clips/s | "
             "read one by one clips/s |", "| --- | --- | --- | --- | --- |"]
    for method in METHODS:
        t = totals[method]
        lines.append(f"| {method} | {t['ratio']:.3f} | {t['write_clips_per_s']:.0f} | "
                     f"{t['read_all_clips_per_s']:.0f} | "
                     f"{t['read_one_by_one_clips_per_s']:.0f} |")
    lines.append(f"\n{totals['n_clips']} clips of {len(rows)} recordings, "
                 f"{totals['raw_bytes'] / 1e6:.1f} MB raw.")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
