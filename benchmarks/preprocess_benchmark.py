"""Benchmark of the per-recording preprocessing chain (decode, detect, track, crop).

Simulates recordings (rbcflow.simulate) and measures, for uncompressed, MJPG and FFV1
input:

- bare decode speed (frames/s) of ``rbcflow.io.video`` (which reads uncompressed grey AVI
  straight from its chunks) and of FFmpeg through OpenCV (``cv2.VideoCapture``), the
  reference of earlier figures;
- the chain as ``rbcflow preprocess`` runs it: one pass (``track_and_cut``: decode,
  subtract, threshold, blobs, features, linking, crop, mask, resize, HDF5), frames per
  wall second and per CPU second, ratio to bare decode, peak RSS; and the two stages as
  the workflow runs them (``track_video`` then ``cut_clips``);
- the seed paper's preprocessing (seed 000: one OpenCV MOG2 model, history 100,
  varThreshold 10, applied to every frame, every frame and mask kept in RAM, then the
  bitwise overlay of frames 50..140 step 10): frames/s and peak RSS;
- trackpy (``locate`` + ``link``) on the same frames: frames/s and IDF1 against truth;
- IDF1 / MOTA of our tracks against the simulator's truth;
- on the uncompressed AVI, each stage timed ``--best-of`` times in ONE process (best and
  median CPU time, ``time.process_time``): the steadiest figures on a shared machine. The
  single pass is also split into its per-frame stream (decode to crop, the chain the
  throughput target names) and what it does once per recording after the last frame
  (track summary, centre line, writing the files);
- two recordings processed by two processes at once versus one after the other.

``--long`` also simulates a 43,300-frame 800 x 150 recording (seed 001's length, 5.2 GB
of raw frames as BigTIFF; it takes a while and needs that much disk, and is deleted
afterwards) and runs ``preprocess_video`` on it, reporting its peak RSS and CPU time.

Every measured step runs in a fresh child process, so each peak RSS is its own. Results
go to ``benchmarks/results/preprocess_benchmark.{json,md}``.

    python benchmarks/preprocess_benchmark.py --frames 3000 [--long] [--workdir DIR]

``--only-chain`` measures only what the throughput target compares, to iterate on the
per-frame code: on the uncompressed AVI, decode (ours and FFmpeg's) and the single pass,
``--best-of`` times each in one process (no other formats, stages or baselines).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
FORMATS = ("avi_raw", "mjpg", "ffv1")
SEED = 2024


# --- recordings -------------------------------------------------------------------------

def simulate_recording(workdir: Path, name: str, geometry: str, n_frames: int,
                       video_format: str, index: int = 0) -> dict:
    """One simulated continuous recording; returns its sample-sheet row (absolute paths)."""
    from rbcflow.simulate.scenario import plan_dataset, write_video

    specs = [s for s in plan_dataset("demo", seed=SEED) if s.mode == "continuous"]
    base = specs[index % len(specs)]
    spec = dataclasses.replace(base, sample=name, geometry=geometry, n_frames=n_frames)
    summary = write_video(spec, SEED, workdir, video_format)
    row = dict(summary["row"])
    row["path"] = str(workdir / row["path"])
    row["truth"] = str(workdir / row["truth"])
    return row


# --- child-process steps (each prints one JSON line) -------------------------------------

def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process so far: on a loaded machine wall time
    also counts the time other processes held the core."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_decode(video: str) -> dict:
    from rbcflow.io.video import open_video

    start, cpu = time.perf_counter(), _cpu_s()
    n = 0
    with open_video(video) as reader:
        for _ in reader.frames():
            n += 1
    result = {"frames": n, "seconds": time.perf_counter() - start, "cpu_s": _cpu_s() - cpu}
    start, cpu = time.perf_counter(), _cpu_s()
    result["ffmpeg_frames"] = _ffmpeg_decode(video)
    result.update(ffmpeg_seconds=time.perf_counter() - start, ffmpeg_cpu_s=_cpu_s() - cpu)
    return result


def _ffmpeg_decode(video: str, threads: int | None = None) -> int:
    """Decode every frame with OpenCV's FFmpeg backend (no colour conversion).

    ``threads``: FFmpeg's decoding threads (``CAP_PROP_N_THREADS``); None keeps the
    backend's default. The default's CPU time per frame depends on the host's state (on
    the 2-core machine 70 us with the other core idle, 30 us with it busy, the threads'
    hand-overs costing more than the copy), one thread's does not (18 us in both): the
    single-threaded decode is the steady reference for a single-threaded chain.
    """
    import cv2

    params = [] if threads is None else [cv2.CAP_PROP_N_THREADS, int(threads)]
    capture = cv2.VideoCapture(video, cv2.CAP_FFMPEG, params)
    capture.set(cv2.CAP_PROP_CONVERT_RGB, 0)
    n = 0
    while capture.read()[0]:
        n += 1
    capture.release()
    return n


def _recording_params(row: dict):
    """The default configuration's parameters for a recording, and its sample-sheet info."""
    from rbcflow.config import validate_config
    from rbcflow.params import resolve_chain_params

    params = resolve_chain_params(validate_config({}), row["fps"], row["um_per_px"])
    info = {k: row[k] for k in ("sample", "donor", "condition", "focus", "session", "fps",
                                "um_per_px")}
    return params, info


def child_best(video: str, outdir: str, row_json: str, repeats: int,
               only_chain: bool = False) -> dict:
    """Every stage ``repeats`` times in this one process, CPU seconds of each run
    (``time.process_time``): decode (ours and FFmpeg's), the track pass, the clip pass
    and the single pass (also split into its per-frame stream and its once-per-recording
    finish), on one background built beforehand; ``only_chain``: no track and clip
    passes."""
    from rbcflow.background import build_background, load_background, save_background
    from rbcflow.clips import cut_clips
    from rbcflow.io.video import open_video
    from rbcflow.preprocess import output_paths, track_and_cut
    from rbcflow.track import track_video

    row = json.loads(row_json)
    params, info = _recording_params(row)
    out = Path(outdir)
    save_background(build_background(video, params.background), out / "bg.npz")

    def decode() -> None:
        with open_video(video) as reader:
            for _ in reader.frames():
                pass

    def track() -> None:
        track_video(video, out / "bg.npz", out / "t.parquet", out / "t.tsv", params)

    def clips() -> None:
        cut_clips(video, out / "bg.npz", out / "t.parquet", out / "t.tsv", out / "c.h5",
                  out / "qc.tsv", info, params, source_sha256="-")

    runs: dict[str, list[float]] = {"single_pass_stream": [], "single_pass_finish": []}

    def single() -> None:
        # loading the background is part of it, as of the track and clip passes
        timings: dict[str, float] = {}
        track_and_cut(video, load_background(out / "bg.npz"), params,
                      output_paths(out / "single", "s"), info, "-", timings=timings)
        runs["single_pass_stream"].append(timings["stream_cpu_s"])
        runs["single_pass_finish"].append(timings["finish_cpu_s"])

    stages = {"decode": decode, "ffmpeg_decode": lambda: _ffmpeg_decode(video),
              "ffmpeg_decode_1_thread": lambda: _ffmpeg_decode(video, threads=1),
              "track": track, "clips": clips, "single_pass": single}
    if only_chain:
        del stages["track"], stages["clips"]
    runs.update({name: [] for name in stages})
    for _ in range(int(repeats)):
        for name, stage in stages.items():  # interleaved: load drifts hit every stage
            cpu = time.process_time()
            stage()
            runs[name].append(time.process_time() - cpu)
    with open_video(video) as reader:
        frames = sum(1 for _ in reader.frames())
    return {"frames": frames, "repeats": int(repeats), "cpu_s": runs,
            "best_cpu_s": {k: min(v) for k, v in runs.items()},
            "median_cpu_s": {k: float(np.median(v)) for k, v in runs.items()},
            "loadavg": os.getloadavg()}


def child_chain(video: str, outdir: str, row_json: str) -> dict:
    """Background, then the two stages (track pass, clip pass), then the single pass that
    ``rbcflow preprocess`` runs (``track_and_cut``) on the same background."""
    from rbcflow.background import build_background, load_background, save_background
    from rbcflow.clips import cut_clips
    from rbcflow.preprocess import output_paths, track_and_cut
    from rbcflow.track import read_tracks, track_video
    from rbcflow.trackeval import evaluate_tracking

    row = json.loads(row_json)
    params, info = _recording_params(row)
    out = Path(outdir)
    t0, c0 = time.perf_counter(), _cpu_s()
    model = build_background(video, params.background)
    save_background(model, out / "bg.npz")
    t1, c1 = time.perf_counter(), _cpu_s()
    summary = track_video(video, out / "bg.npz", out / "t.parquet", out / "t.tsv", params)
    t2, c2 = time.perf_counter(), _cpu_s()
    n_clips = cut_clips(video, out / "bg.npz", out / "t.parquet", out / "t.tsv", out / "c.h5",
                        out / "qc.tsv", info, params, source_sha256="-")
    t3, c3 = time.perf_counter(), _cpu_s()
    timings: dict[str, float] = {}
    n_fused = track_and_cut(video, load_background(out / "bg.npz"), params,
                            output_paths(out / "single", "s"), info, "-", timings=timings)
    t4, c4 = time.perf_counter(), _cpu_s()
    table, meta = read_tracks(out / "t.parquet")
    result = {"frames": meta["n_frames"], "background_s": t1 - t0, "track_s": t2 - t1,
              "clips_s": t3 - t2, "single_pass_s": t4 - t3, "background_cpu_s": c1 - c0,
              "single_pass_stream_cpu_s": timings["stream_cpu_s"],
              "single_pass_finish_cpu_s": timings["finish_cpu_s"],
              "track_cpu_s": c2 - c1, "clips_cpu_s": c3 - c2, "single_pass_cpu_s": c4 - c3,
              "n_clips": n_clips, "n_clips_single_pass": n_fused, "n_tracks": len(summary)}
    if row.get("truth"):
        truth = pd.read_csv(row["truth"], sep="\t")
        m = evaluate_tracking(table, truth, 6.0, frame_size=tuple(meta["frame_size"]))
        result.update({k: m[k] for k in ("idf1", "mota", "recall", "precision",
                                         "detection_recall_isolated")})
    return result


def child_seed(video: str) -> dict:
    """Seed 000's preprocessing: one MOG2 on every frame, everything kept in RAM."""
    import cv2

    from rbcflow.io.video import open_video

    cv2.setNumThreads(1)
    start = time.perf_counter()
    mog2 = cv2.createBackgroundSubtractorMOG2(history=100, varThreshold=10)
    frames, masks = [], []
    with open_video(video) as reader:
        for _, frame in reader.frames():
            frames.append(frame)
            masks.append(mog2.apply(frame))
    clip = [cv2.bitwise_and(frames[i], frames[i], mask=masks[i])
            for i in range(50, min(141, len(frames)), 10)]
    return {"frames": len(frames), "seconds": time.perf_counter() - start,
            "clip_frames": len(clip)}


def child_trackpy(video: str, row_json: str, max_frames: int, our_tracks: str) -> dict:
    """trackpy locate (dark cells: inverted frames minus background) + link; IDF1 of
    trackpy's and of our tracks (``our_tracks``) over the same frames."""
    import trackpy as tp

    from rbcflow.background import build_background
    from rbcflow.io.video import open_video
    from rbcflow.params import background_params
    from rbcflow.trackeval import evaluate_tracking

    tp.quiet()
    row = json.loads(row_json)
    model = build_background(video, background_params(seed=42, method="median", n_frames=100,
                                                      blur_sigma=4.0))
    bg = model.image_at(0)
    start = time.perf_counter()
    parts = []
    with open_video(video) as reader:
        for index, frame in reader.frames(0, max_frames):
            signal = np.clip(bg - frame.astype(np.float32), 0, 255)
            found = tp.locate(signal, diameter=25, minmass=2000, preprocess=False,
                              engine="numba" if _has_numba() else "python")
            found["frame"] = index
            parts.append(found[["frame", "x", "y"]])
    located = pd.concat(parts, ignore_index=True)
    t_locate = time.perf_counter() - start
    linked = tp.link(located, search_range=40, memory=3)
    seconds = time.perf_counter() - start
    truth = pd.read_csv(row["truth"], sep="\t")
    truth = truth[truth["frame"] < max_frames]
    tracks = linked.rename(columns={"particle": "track_id"})
    m = evaluate_tracking(tracks, truth, 6.0, frame_size=(int(frame.shape[1]),
                                                          int(frame.shape[0])))
    ours = pd.read_parquet(our_tracks)
    ours = ours[ours["frame"] < max_frames]
    m_ours = evaluate_tracking(ours, truth, 6.0, frame_size=(int(frame.shape[1]),
                                                             int(frame.shape[0])))
    return {"frames": int(min(max_frames, index + 1)), "seconds": seconds,
            "locate_s": t_locate, "idf1": m["idf1"], "mota": m["mota"],
            "ours_same_frames_idf1": m_ours["idf1"], "ours_same_frames_mota": m_ours["mota"]}


def _has_numba() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def child_preprocess(video: str, outdir: str, row_json: str) -> dict:
    from rbcflow.preprocess import preprocess_video

    row = json.loads(row_json)
    start, cpu = time.perf_counter(), _cpu_s()
    preprocess_video(video, outdir, {}, {k: row[k] for k in (
        "sample", "donor", "condition", "focus", "session", "fps", "um_per_px")})
    return {"seconds": time.perf_counter() - start, "cpu_s": _cpu_s() - cpu}


CHILDREN = {"decode": child_decode, "chain": child_chain, "seed": child_seed,
            "trackpy": child_trackpy, "preprocess": child_preprocess, "best": child_best}


def run_child(step: str, *args: object, background: bool = False):
    """Run one step in a fresh process pinned to one OpenCV thread; returns its JSON
    result with ``peak_rss_mb`` (or the Popen when ``background``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", step,
           *[str(a) for a in args]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            text=True)
    if background:
        return proc
    return finish_child(proc)


def finish_child(proc: subprocess.Popen) -> dict:
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read()
    err = proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"child {proc.args[3:]} failed:\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024.0
    return result


# --- the benchmark ------------------------------------------------------------------------

def only_chain_benchmark(workdir: Path, n_frames: int, best_of: int) -> dict:
    """Decode and single pass only, on the uncompressed AVI (``--only-chain``)."""
    results: dict = {"frames": n_frames, "only_chain": True, "machine": _machine(),
                     "formats": {}}
    row = simulate_recording(workdir / "avi_raw", "bench", "zigzag", n_frames, "avi_raw")
    (workdir / "best").mkdir(exist_ok=True)
    results["best_of"] = _derive_best(run_child("best", row["path"], workdir / "best",
                                                json.dumps(row), best_of, 1))
    print("best of", best_of, json.dumps(results["best_of"]["summary"]), flush=True)
    results["machine"]["loadavg_end"] = os.getloadavg()
    return results


def _machine() -> dict:
    return {"python": platform.python_version(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "loadavg_start": os.getloadavg()}


def benchmark(workdir: Path, n_frames: int, trackpy_frames: int, long_run: bool,
              long_frames: int, best_of: int = 5) -> dict:
    results: dict = {"frames": n_frames, "machine": _machine(), "formats": {}}
    rows = {}
    for fmt in FORMATS:
        t = time.perf_counter()
        rows[fmt] = simulate_recording(workdir / fmt, "bench", "zigzag", n_frames, fmt)
        print(f"simulated {fmt} ({time.perf_counter() - t:.0f} s)", flush=True)
    for fmt, row in rows.items():
        video = row["path"]
        entry: dict = {"file_mb": Path(video).stat().st_size / 1e6}
        entry["decode"] = run_child("decode", video)
        (workdir / fmt / "out").mkdir(exist_ok=True)
        entry["chain"] = run_child("chain", video, workdir / fmt / "out", json.dumps(row))
        entry["seed_mog2"] = run_child("seed", video)
        entry["trackpy"] = run_child("trackpy", video, json.dumps(row), trackpy_frames,
                                     workdir / fmt / "out" / "t.parquet")
        results["formats"][fmt] = _derive(entry)
        print(fmt, json.dumps(results["formats"][fmt]["summary"]), flush=True)
    if best_of > 0:
        (workdir / "best").mkdir(exist_ok=True)
        results["best_of"] = _derive_best(run_child("best", rows["avi_raw"]["path"],
                                                    workdir / "best",
                                                    json.dumps(rows["avi_raw"]), best_of))
        print("best of", best_of, json.dumps(results["best_of"]["summary"]), flush=True)

    # two recordings at once: two processes vs one after the other
    second = simulate_recording(workdir / "avi_raw2", "bench2", "zigzag", n_frames, "avi_raw",
                                index=1)
    pair = [rows["avi_raw"], second]
    for i in range(len(pair)):
        (workdir / f"pair{i}").mkdir(exist_ok=True)
    start = time.perf_counter()
    for i, row in enumerate(pair):
        run_child("chain", row["path"], workdir / f"pair{i}", json.dumps(row))
    sequential = time.perf_counter() - start
    start = time.perf_counter()
    procs = [run_child("chain", row["path"], workdir / f"pair{i}", json.dumps(row),
                       background=True) for i, row in enumerate(pair)]
    for proc in procs:
        finish_child(proc)
    parallel = time.perf_counter() - start
    results["two_samples"] = {"sequential_s": sequential, "parallel_2_processes_s": parallel,
                              "speedup": sequential / parallel}
    print("two samples", json.dumps(results["two_samples"]), flush=True)

    if long_run:
        t = time.perf_counter()
        # TIFF: 5.2 GB of frames is past the 4 GiB limit of the simulator's AVI writer
        row = simulate_recording(workdir / "long", "long", "constriction", long_frames,
                                 "tiff")
        sim_s = time.perf_counter() - t
        res = run_child("preprocess", row["path"], workdir / "long" / "results",
                        json.dumps(row))
        res.update({"frames": long_frames, "simulate_s": sim_s,
                    "file_gb": Path(row["path"]).stat().st_size / 1e9,
                    "frames_per_cpu_s": long_frames / res["cpu_s"]})
        Path(row["path"]).unlink()
        results["long_recording"] = res
        print("long", json.dumps(res), flush=True)
    results["machine"]["loadavg_end"] = os.getloadavg()
    return results


def _derive_best(entry: dict) -> dict:
    best, n = entry["best_cpu_s"], entry["frames"]
    median = entry["median_cpu_s"]
    entry["summary"] = {
        "us_per_frame": {k: round(v / n * 1e6, 1) for k, v in best.items()},
        "median_us_per_frame": {k: round(v / n * 1e6, 1) for k, v in median.items()},
        "decode_cpu_fps": round(n / best["decode"]),
        "ffmpeg_decode_cpu_fps": round(n / best["ffmpeg_decode"]),
        "single_pass_cpu_fps": round(n / best["single_pass"]),
        "single_pass_median_cpu_fps": round(n / median["single_pass"]),
        "stream_cpu_fps": round(n / best["single_pass_stream"]),
        "stream_median_cpu_fps": round(n / median["single_pass_stream"]),
        "finish_ms": round(median["single_pass_finish"] * 1e3, 1),
        "single_over_ffmpeg_decode": round(best["ffmpeg_decode"] / best["single_pass"], 3),
        "single_over_ffmpeg_decode_median": round(
            median["ffmpeg_decode"] / median["single_pass"], 3),
        "ffmpeg_decode_1_thread_cpu_fps": round(n / best["ffmpeg_decode_1_thread"]),
        "single_over_ffmpeg_decode_1_thread": round(
            best["ffmpeg_decode_1_thread"] / best["single_pass"], 3),
        "single_over_ffmpeg_decode_1_thread_median": round(
            median["ffmpeg_decode_1_thread"] / median["single_pass"], 3),
    }
    if "track" in best:
        two = best["track"] + best["clips"]
        entry["summary"].update(two_pass_cpu_fps=round(n / two),
                                two_pass_over_ffmpeg_decode=round(best["ffmpeg_decode"] / two,
                                                                  3))
    return entry


def _derive(entry: dict) -> dict:
    decode_fps = entry["decode"]["frames"] / entry["decode"]["seconds"]
    decode_cpu_fps = entry["decode"]["frames"] / entry["decode"]["cpu_s"]
    ffmpeg_cpu_fps = entry["decode"]["ffmpeg_frames"] / entry["decode"]["ffmpeg_cpu_s"]
    c = entry["chain"]
    two_pass_fps = c["frames"] / (c["track_s"] + c["clips_s"])
    two_pass_cpu_fps = c["frames"] / (c["track_cpu_s"] + c["clips_cpu_s"])
    chain_fps = c["frames"] / c["single_pass_s"]
    chain_cpu_fps = c["frames"] / c["single_pass_cpu_s"]
    seed_fps = entry["seed_mog2"]["frames"] / entry["seed_mog2"]["seconds"]
    tp_fps = entry["trackpy"]["frames"] / entry["trackpy"]["seconds"]
    entry["summary"] = {
        "decode_fps": round(decode_fps),
        "decode_cpu_fps": round(decode_cpu_fps),
        "ffmpeg_decode_cpu_fps": round(ffmpeg_cpu_fps),
        "track_pass_fps": round(c["frames"] / c["track_s"]),
        "clip_pass_fps": round(c["frames"] / c["clips_s"]),
        "two_pass_fps": round(two_pass_fps),
        "two_pass_cpu_fps": round(two_pass_cpu_fps),
        "chain_fps": round(chain_fps),
        "chain_cpu_fps": round(chain_cpu_fps),
        "stream_cpu_fps": round(c["frames"] / c["single_pass_stream_cpu_s"]),
        "finish_ms": round(c["single_pass_finish_cpu_s"] * 1e3, 1),
        "chain_over_decode": round(chain_fps / decode_fps, 3),
        "chain_over_decode_cpu": round(chain_cpu_fps / decode_cpu_fps, 3),
        "chain_over_ffmpeg_decode_cpu": round(chain_cpu_fps / ffmpeg_cpu_fps, 3),
        "chain_peak_rss_mb": round(c["peak_rss_mb"]),
        "idf1": round(c.get("idf1", float("nan")), 3),
        "mota": round(c.get("mota", float("nan")), 3),
        "seed_mog2_fps": round(seed_fps),
        "seed_mog2_peak_rss_mb": round(entry["seed_mog2"]["peak_rss_mb"]),
        "chain_over_seed_mog2": round(chain_fps / seed_fps, 2),
        "trackpy_fps": round(tp_fps, 1),
        "trackpy_idf1": round(entry["trackpy"]["idf1"], 3),
        "ours_idf1_trackpy_frames": round(entry["trackpy"]["ours_same_frames_idf1"], 3),
        "chain_over_trackpy": round(chain_fps / tp_fps, 1),
    }
    return entry


def write_markdown(results: dict, path: Path) -> None:
    lines = [f"# Preprocessing benchmark ({results['frames']} frames, 800 x 132, one core "
             "per process)", "",
             "Chain = the single pass of `rbcflow preprocess` (decode, subtract, threshold, "
             "blobs, features, track, crop); two passes = `track` then `clips`. f/s: frames "
             "per wall second; f/cpu-s: frames per CPU second of the process.", "",
             "Stream = the chain's per-frame part (decode to crop); finish = what the single "
             "pass does once per recording after its last frame (summary, centre line, "
             "writing the files).", "",
             "| input | decode f/s | decode f/cpu-s | FFmpeg decode f/cpu-s | track pass f/s | "
             "clip pass f/s | two passes f/cpu-s | chain f/s | chain f/cpu-s | "
             "stream f/cpu-s | finish ms | "
             "chain/decode (CPU) | chain/FFmpeg decode (CPU) "
             "| peak RSS MB | IDF1 | MOTA | seed MOG2 f/s | seed RSS MB | chain/seed | "
             "trackpy f/s | trackpy IDF1 | our IDF1, same frames |",
             "|" + "---|" * 22]
    for fmt, entry in results["formats"].items():
        s = entry["summary"]
        lines.append(f"| {fmt} | {s['decode_fps']} | {s['decode_cpu_fps']} | "
                     f"{s['ffmpeg_decode_cpu_fps']} | "
                     f"{s['track_pass_fps']} | {s['clip_pass_fps']} | {s['two_pass_cpu_fps']} | "
                     f"{s['chain_fps']} | {s['chain_cpu_fps']} | {s['stream_cpu_fps']} | "
                     f"{s['finish_ms']} | {s['chain_over_decode_cpu']} | "
                     f"{s['chain_over_ffmpeg_decode_cpu']} | "
                     f"{s['chain_peak_rss_mb']} | {s['idf1']} | {s['mota']} | "
                     f"{s['seed_mog2_fps']} | {s['seed_mog2_peak_rss_mb']} | "
                     f"{s['chain_over_seed_mog2']} | {s['trackpy_fps']} | {s['trackpy_idf1']} | "
                     f"{s['ours_idf1_trackpy_frames']} |")
    if "best_of" in results:
        s = results["best_of"]["summary"]
        lines += ["", f"avi_raw, each stage {results['best_of']['repeats']} times in one "
                  f"process, best CPU time: CPU us per frame {s['us_per_frame']} (median "
                  f"{s['median_us_per_frame']}); stream {s['stream_cpu_fps']} f/cpu-s "
                  f"(median {s['stream_median_cpu_fps']}), single pass "
                  f"{s['single_pass_cpu_fps']} f/cpu-s (median "
                  f"{s['single_pass_median_cpu_fps']}; its finish {s['finish_ms']} ms), "
                  f"two passes {s['two_pass_cpu_fps']} "
                  f"f/cpu-s, decode {s['decode_cpu_fps']} f/cpu-s (FFmpeg "
                  f"{s['ffmpeg_decode_cpu_fps']}); single pass / FFmpeg decode "
                  f"{s['single_over_ffmpeg_decode']} (medians: "
                  f"{s['single_over_ffmpeg_decode_median']}), two passes / FFmpeg decode "
                  f"{s['two_pass_over_ffmpeg_decode']}, single pass / FFmpeg decode with "
                  f"one thread {s['single_over_ffmpeg_decode_1_thread']} (load average "
                  f"{results['best_of']['loadavg']})."]
    two = results["two_samples"]
    lines += ["", f"Two recordings: one after the other {two['sequential_s']:.1f} s, two "
              f"processes at once {two['parallel_2_processes_s']:.1f} s, speed-up "
              f"{two['speedup']:.2f}."]
    if "long_recording" in results:
        lr = results["long_recording"]
        lines += ["", f"Long recording: {lr['frames']} frames 800 x 150 ({lr['file_gb']:.1f} "
                  f"GB TIFF): preprocess {lr['seconds']:.0f} s wall, {lr['cpu_s']:.0f} s CPU "
                  f"({lr['frames_per_cpu_s']:.0f} frames per CPU second, ingest and "
                  f"background included), peak RSS {lr['peak_rss_mb']:.0f} MB."]
    lines += ["", f"Machine: {results['machine']}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_chain_markdown(results: dict, path: Path) -> None:
    """The ``--only-chain`` results: the single pass beside FFmpeg's decode of the file."""
    best = results["best_of"]
    s = best["summary"]
    lines = [f"# Single pass against FFmpeg decode ({results['frames']} frames, 800 x 132 "
             f"uncompressed AVI, one core, {best['repeats']} runs of each in one process)",
             "", "| CPU us per frame | best | median |", "| --- | --- | --- |"]
    for name in ("ffmpeg_decode", "ffmpeg_decode_1_thread", "decode", "single_pass",
                 "single_pass_stream", "single_pass_finish"):
        lines.append(f"| {name} | {s['us_per_frame'][name]} | "
                     f"{s['median_us_per_frame'][name]} |")
    lines += ["", f"Single pass / FFmpeg decode: {s['single_over_ffmpeg_decode']} (best of "
              f"{best['repeats']}), {s['single_over_ffmpeg_decode_median']} (medians); "
              f"single pass {s['single_pass_cpu_fps']} f/cpu-s, FFmpeg decode "
              f"{s['ffmpeg_decode_cpu_fps']} f/cpu-s. Against FFmpeg decoding with one "
              f"thread: {s['single_over_ffmpeg_decode_1_thread']} (best), "
              f"{s['single_over_ffmpeg_decode_1_thread_median']} (medians), "
              f"{s['ffmpeg_decode_1_thread_cpu_fps']} f/cpu-s. Load average "
              f"{best['loadavg']} at the end of the runs.", "",
              f"Machine: {results['machine']}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        import cv2

        cv2.setNumThreads(1)
        step, args = sys.argv[2], sys.argv[3:]
        if step in ("trackpy",):
            args = [args[0], args[1], int(args[2]), args[3]]
        if step == "best":
            args = [args[0], args[1], args[2], int(args[3]), *(bool(int(a)) for a in args[4:])]
        result = CHILDREN[step](*args)
        result["peak_rss_self_mb"] = _peak_rss_mb()
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=3000, help="frames per test recording")
    parser.add_argument("--trackpy-frames", type=int, default=300,
                        help="frames given to trackpy (it is slow)")
    parser.add_argument("--long", action="store_true",
                        help="also simulate and preprocess a 43,300-frame 800x150 recording")
    parser.add_argument("--long-frames", type=int, default=43_300)
    parser.add_argument("--best-of", type=int, default=7,
                        help="times each stage runs in one process on the raw AVI (0: skip)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where recordings are simulated (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--only-chain", action="store_true",
                        help="only decode and the single pass on the raw AVI, --best-of times "
                             "(written to preprocess_benchmark_chain.{json,md})")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only_chain:
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            results = only_chain_benchmark(Path(tmp), args.frames, max(args.best_of, 1))
        (args.out / "preprocess_benchmark_chain.json").write_text(json.dumps(results,
                                                                             indent=2))
        write_chain_markdown(results, args.out / "preprocess_benchmark_chain.md")
        print(f"wrote {args.out / 'preprocess_benchmark_chain.md'}")
        return
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        results = benchmark(Path(tmp), args.frames, args.trackpy_frames, args.long,
                            args.long_frames, args.best_of)
    (args.out / "preprocess_benchmark.json").write_text(json.dumps(results, indent=2))
    write_markdown(results, args.out / "preprocess_benchmark.md")
    print(f"wrote {args.out / 'preprocess_benchmark.md'}")


if __name__ == "__main__":
    main()
