"""Run a workflow through a Snakemake profile on the test cluster, and compare with a local run.

`run_through_profile` is the one entry point the tests use; it takes any Snakefile and
targets: the real workflow (``snakefile=None`` in a project copy, tests/project_copy.py)
or the toy one in ``toy/``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .slurm import Cluster, stop_process

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm"
TOY_SNAKEFILE = Path(__file__).resolve().parent / "toy" / "Snakefile"
# The profile's first status check comes 40 s after a submission; on the test cluster 1 s
# keeps a run short. squeue stays the status command: the test cluster's MinJobAge is far
# above 3 x 1 s.
FAST_STATUS = ("--slurm-init-seconds-before-status-checks", "1")
SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: .*/slurm_logs/(\w+?)/")


@dataclass
class ProfileRun:
    """What one Snakemake run printed, when, and how it ended."""

    args: list[str]
    returncode: int
    seconds: float
    lines: list[tuple[float, str]] = field(default_factory=list)  # (seconds since start, line)

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def slurm_jobs(self) -> dict[str, list[str]]:
        """SLURM job ids by submitted unit: ``rule_<rule>`` or ``group_<group>_<rules>``."""
        jobs: dict[str, list[str]] = {}
        for _, line in self.lines:
            match = SUBMITTED.search(line)
            if match:
                jobs.setdefault(match.group(2), []).append(match.group(1))
        return jobs

    def first_time(self, text: str) -> float | None:
        """Seconds from the start to the first line containing ``text``."""
        return next((when for when, line in self.lines if text in line), None)

    def describe(self) -> str:
        return (f"`{' '.join(self.args)}` exited {self.returncode} after {self.seconds:.0f} s:\n"
                f"{self.output[-8000:]}")


def snakemake_env(cluster: Cluster | None, extra: dict[str, str] | None = None) -> dict:
    """Environment of a Snakemake run: the cluster's client settings, this virtualenv first
    on PATH, and no profile from the caller's environment unless ``extra`` names one."""
    env = dict(cluster.env if cluster is not None else os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("SNAKEMAKE_PROFILE", None)
    for name in ("SBATCH_PARTITION", "SBATCH_ACCOUNT", "RBCFLOW_GPU_PARTITION"):
        env.pop(name, None)  # site settings of the caller's shell must not leak into a test
    env.update(extra or {})
    return env


def run_snakemake(args: list[str], workdir: Path, env: dict, timeout: float,
                  on_start: Callable[[subprocess.Popen], None] | None = None) -> ProfileRun:
    """Run Snakemake, keeping each output line with its arrival time.

    ``on_start`` gets the process as soon as it runs (to kill it from another thread).
    Past ``timeout`` the Snakemake process is stopped (its SLURM jobs are left to the
    cluster's teardown) and the run is returned with returncode -9.
    """
    start = time.monotonic()
    process = subprocess.Popen(args, cwd=workdir, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    if on_start is not None:
        on_start(process)
    run = ProfileRun(args=args, returncode=0, seconds=0.0)

    def read():
        for line in process.stdout:
            run.lines.append((time.monotonic() - start, line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        run.returncode = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(process.pid, grace=10)
        run.returncode = -9
    reader.join(timeout=10)
    run.seconds = time.monotonic() - start
    return run


def run_through_profile(workdir: Path, targets: list[str], cluster: Cluster | None, *,
                        snakefile: Path | None = TOY_SNAKEFILE, profile: Path = SLURM_PROFILE,
                        extra_args: tuple[str, ...] = FAST_STATUS, env: dict | None = None,
                        timeout: float = 300,
                        on_start: Callable[[subprocess.Popen], None] | None = None,
                        ) -> ProfileRun:
    """``snakemake --profile PROFILE [-s SNAKEFILE] EXTRA_ARGS TARGETS`` in ``workdir``.

    Parameters
    ----------
    workdir : Path
        Run directory (the project root for the real workflow).
    targets : list of str
        Rules or files to build.
    cluster : Cluster or None
        The test cluster (its SLURM_CONF is set); None for a real cluster.
    snakefile : Path or None
        None: Snakemake's own lookup in ``workdir`` (the real workflow's Snakefile).
    profile : Path
        The profile folder.
    extra_args : tuple of str
        Further command-line options; they override the profile's top-level keys.
    env : dict or None
        Extra environment variables (site settings such as SBATCH_PARTITION).
    timeout : float
        Seconds before the run is stopped (returncode -9).
    on_start : callable or None
        Called with the Snakemake process once it runs.
    """
    args = [str(BIN / "snakemake"), "--profile", str(profile)]
    if snakefile is not None:
        args += ["--snakefile", str(snakefile)]
    # "--": an option taking a list (--group-components...) would take the targets too
    args += [*extra_args, "--", *targets]
    return run_snakemake(args, workdir, snakemake_env(cluster, env), timeout, on_start)


def run_locally(workdir: Path, targets: list[str], *, snakefile: Path | None = TOY_SNAKEFILE,
                cores: int = 2, env: dict | None = None, timeout: float = 300) -> ProfileRun:
    """The same workflow with the local executor and no profile, for comparison."""
    args = [str(BIN / "snakemake"), "--profile", "none", "--workflow-profile", "none",
            "--cores", str(cores)]
    if snakefile is not None:
        args += ["--snakefile", str(snakefile)]
    return run_snakemake([*args, "--", *targets], workdir, snakemake_env(None, env), timeout)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    """Poll ``predicate`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def running_job_of_rule(cluster: Cluster, name: str) -> str | None:
    """Id of a RUNNING SLURM job submitted for rule or group ``name`` (the plugin writes
    ``rule_<name>[_...]`` as the job's comment, a group's name for a group job), or None."""
    out = cluster.command("squeue", "-h", "-t", "R", "-o", "%i|%k", check=False).stdout
    for line in out.splitlines():
        job_id, _, comment = line.partition("|")
        if comment == f"rule_{name}" or comment.startswith(f"rule_{name}_"):
            return job_id
    return None


def job_fields(cluster: Cluster, job_id: str) -> dict[str, str]:
    """``scontrol show job --details`` of a job (finished ones stay for MinJobAge) as a
    mapping: NumCPUs, MinMemoryNode, TimeLimit, Partition, TresPerJob, GRES, JobState..."""
    out = cluster.command("scontrol", "show", "job", "--details", "--oneliner", job_id).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)
