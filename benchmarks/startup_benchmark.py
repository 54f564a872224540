"""Fixed cost of a preprocessing job: wall time of ``rbcflow --help`` and of
``rbcflow preprocess`` on a 10-frame simulated recording (imports, config, provenance,
writing every file), each the median of ``--repeat`` fresh processes after one warm-up
run (which fills the file cache). The interpreter's own start (``python -c pass``) is
timed in the same run as the reference. Targets (issue 15): ``--help`` under 0.3 s,
``preprocess`` under 0.5 s.

    python benchmarks/startup_benchmark.py [--repeat 5] [--frames 10]

Results: ``benchmarks/results/startup_benchmark.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _rbcflow_command() -> list[str]:
    """The ``rbcflow`` console script next to this interpreter, else ``python -m``."""
    script = shutil.which("rbcflow", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "rbcflow.cli"]


def child_environment() -> dict[str, str]:
    """This environment, but with Python writing bytecode: an installed package has its
    ``.pyc`` files, and a shell that sets ``PYTHONDONTWRITEBYTECODE`` would otherwise make
    every run compile rbcflow's own modules again (some 70 ms here)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def wall_times(cmd: list[str], repeat: int) -> list[float]:
    """Wall seconds of ``repeat`` runs of ``cmd`` (after one untimed run, which also writes
    the bytecode); each must succeed."""
    times = []
    env = child_environment()
    for k in range(repeat + 1):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=env)
        if k:
            times.append(time.perf_counter() - start)
    return times


def benchmark(workdir: Path, n_frames: int, repeat: int) -> dict:
    sys.path.insert(0, str(HERE))
    from preprocess_benchmark import simulate_recording

    row = simulate_recording(workdir / "recording", "startup", "zigzag", n_frames, "avi_raw")
    rbcflow = _rbcflow_command()
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "rbcflow --help": [*rbcflow, "--help"],
        f"rbcflow preprocess ({n_frames} frames)": [
            *rbcflow, "preprocess", row["path"], "--out", str(workdir / "out"),
            "--um-per-px", str(row["um_per_px"]), "--fps", str(row["fps"])],
    }
    results: dict = {"frames": n_frames, "repeat": repeat, "loadavg_start": os.getloadavg(),
                     "commands": {}}
    for name, cmd in commands.items():
        times = wall_times(cmd, repeat)
        results["commands"][name] = {"wall_s": times, "median_s": statistics.median(times),
                                     "best_s": min(times)}
        print(f"{name}: median {statistics.median(times):.3f} s, best {min(times):.3f} s "
              f"of {repeat}", flush=True)
    results["loadavg_end"] = os.getloadavg()
    return results


def write_markdown(results: dict, path: Path) -> None:
    lines = [f"# Start-up: wall seconds, median (best) of {results['repeat']} fresh processes",
             "", "| command | median s | best s |", "| --- | --- | --- |"]
    for name, entry in results["commands"].items():
        lines.append(f"| {name} | {entry['median_s']:.3f} | {entry['best_s']:.3f} |")
    lines += ["", f"Load average at start {results['loadavg_start']}, at end "
              f"{results['loadavg_end']}."]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per command")
    parser.add_argument("--frames", type=int, default=10, help="frames of the recording")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the recording is simulated (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        results = benchmark(Path(tmp), args.frames, args.repeat)
    (args.out / "startup_benchmark.json").write_text(json.dumps(results, indent=2))
    write_markdown(results, args.out / "startup_benchmark.md")
    print(f"wrote {args.out / 'startup_benchmark.md'}")


if __name__ == "__main__":
    main()
