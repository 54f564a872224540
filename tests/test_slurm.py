"""The shipped SLURM profile on a one-node test cluster (tests/cluster/), with the real workflow.

A small configuration (the tiny preset, one task, two epochs, no ablations) is built in
two copies of the project (tests/project_copy.py), in the steps a cluster user takes:

1. ``dvc repro data`` with SNAKEMAKE_PROFILE naming the profile: DVC's stage command is
   plain ``snakemake``, and the simulation is submitted to SLURM; the other copy gets the
   simulated videos (one simulation for both);
2. ``snakemake --profile workflow/profiles/slurm train_all``, retries off, while one
   preprocessing job is cancelled in SLURM (``scancel``): the run must report it as failed,
   not wait for it; at the same time the other copy runs ``snakemake --cores 2
   train_all`` locally;
3. the same command again, which must complete the work.

The tests then check that the files under results/ equal the local run's, that every
job got what the profile asks for (CPUs, memory, time limit, partition, a GPU for
training and evaluation), the failure report and the rerun. A toy workflow (tests/cluster/toy) adds
what the real one cannot show cheaply: recovery with ``--unlock`` and
``--rerun-incomplete`` after Snakemake itself was killed mid-job.

The profile is used unchanged; the copy run through SLURM only gets a workflow profile
(workflow/profiles/default, which Snakemake reads on top of --profile) shortening the
first status check from 40 s to 1 s.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import pytest
import yaml
from cluster.harness import (
    BIN,
    SLURM_PROFILE,
    SUBMITTED,
    job_fields,
    run_locally,
    run_through_profile,
    running_job_of_rule,
    snakemake_env,
    wait_for,
)
from project_copy import make_project, project_env

pytest_plugins = ["cluster.fixtures"]
pytestmark = [pytest.mark.workflow, pytest.mark.timeout(900)]

# Site settings as a user would export them: CPU jobs and GPU jobs in named partitions.
SITE = {"SBATCH_PARTITION": "cpu", "RBCFLOW_GPU_PARTITION": "gpu"}
# Seconds from the scancel to Snakemake's report of the failed job, with status checks
# every 1-21 s: the bound that separates "reported" from "awaited forever".
DETECTION_BOUND = 90
TARGETS = ["train_all"]
SMALL = {
    "tasks": [{"name": "DA", "negative": ["native"], "positive": ["DA"]}],
    "train": {"epochs": 2, "patience": 2},
    "evaluate": {"bootstrap": 100, "ablations": False},
}
FAST_FIRST_CHECK = {"slurm-init-seconds-before-status-checks": 1}


def profile_settings() -> dict:
    """The profile's static keys (YTE conditionals, keys starting with "?", left out)."""
    def static(tree):
        if isinstance(tree, dict):
            return {k: static(v) for k, v in tree.items() if not str(k).startswith("?")}
        return tree

    return static(yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text()))


def slurm_minutes(minutes: int) -> str:
    """A runtime in minutes as `scontrol` writes a time limit under a day (HH:MM:SS)."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def submitted(text: str) -> dict[str, list[str]]:
    """SLURM job ids by submitted unit (``rule_<rule>``, ``group_<group>...``) in a log."""
    jobs: dict[str, list[str]] = {}
    for match in SUBMITTED.finditer(text):
        jobs.setdefault(match.group(2), []).append(match.group(1))
    return jobs


def comparable_digest(path: Path, project: Path) -> str:
    """SHA-256 of a file's content, with the project's own location written as a
    placeholder (the ingest records name the absolute path of each video), and of a saved
    Keras model's members but its metadata.json (which holds the time it was saved), with
    the config's ``shared_object_id`` values (Python object ids of the saving process)
    left out."""
    if path.suffix == ".keras":
        digest = hashlib.sha256()
        with zipfile.ZipFile(path) as archive:
            for name in sorted(archive.namelist()):
                if name != "metadata.json":
                    member = re.sub(rb'"shared_object_id": \d+', b"", archive.read(name))
                    digest.update(name.encode() + b"\0" + member)
        return digest.hexdigest()
    content = path.read_bytes().replace(str(project).encode(), b"<project>")
    return hashlib.sha256(content).hexdigest()


def digests(project: Path) -> dict[str, str]:
    """Comparable digests of every file under results/, by path in the project."""
    return {
        str(path.relative_to(project)): comparable_digest(path, project)
        for path in sorted((project / "results").rglob("*")) if path.is_file()
    }


def cancel_first_preprocessing_job(cluster, record: dict) -> None:
    """scancel the first preprocessing job seen running (in a thread)."""
    try:
        job_id = wait_for(lambda: running_job_of_rule(cluster, "preprocess"), 400,
                          "a running preprocessing job", interval=0.3)
        record["at"] = time.monotonic()
        cluster.command("scancel", job_id)
        record["job_id"] = job_id
    except AssertionError as problem:
        record["problem"] = str(problem)


def dvc_repro(project: Path, cluster, stage: str, timeout: float = 600):
    """``dvc repro STAGE`` with SNAKEMAKE_PROFILE set and no site variables."""
    env = snakemake_env(cluster, {**project_env(project),
                                  "SNAKEMAKE_PROFILE": str(SLURM_PROFILE)})
    env["PATH"] = f"{BIN}{os.pathsep}{cluster.env['PATH']}"
    for name in SITE:
        env.pop(name, None)
    start = time.monotonic()
    result = subprocess.run([str(BIN / "dvc"), "repro", stage], cwd=project, env=env,
                            capture_output=True, text=True, timeout=timeout)
    return result, time.monotonic() - start


@pytest.fixture(scope="module")
def real(slurm_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    local = make_project(root / "local", SMALL)
    project = make_project(root / "slurm", SMALL)
    fast = project / "workflow" / "profiles" / "default" / "config.yaml"
    fast.parent.mkdir(parents=True)
    fast.write_text(yaml.safe_dump(FAST_FIRST_CHECK))

    runs: dict = {"dvc": dvc_repro(project, slurm_cluster, "data")}
    # One simulation for both: the local copy gets the videos and sample sheet the SLURM
    # job wrote (hard links), and builds everything after them.
    simulated = Path(yaml.safe_load((project / "config" / "config.yaml").read_text())
                     ["simulate"]["outdir"])
    shutil.copytree(project / simulated, local / simulated, copy_function=os.link)
    local_thread = threading.Thread(target=lambda: runs.update(local=run_locally(
        local, TARGETS, snakefile=None, cores=2, env={"PYTHONPATH": str(local / "src")},
        timeout=800)))
    local_thread.start()
    try:
        env = {"PYTHONPATH": str(project / "src"), **SITE}
        cancel: dict = {}
        canceller = threading.Thread(target=cancel_first_preprocessing_job,
                                     args=(slurm_cluster, cancel))
        canceller.start()
        start = time.monotonic()
        runs["killed"] = run_through_profile(project, TARGETS, slurm_cluster, snakefile=None,
                                             extra_args=("--retries", "0"), env=env,
                                             timeout=600)
        canceller.join()
        runs["rerun"] = run_through_profile(project, TARGETS, slurm_cluster, snakefile=None,
                                            extra_args=(), env=env, timeout=600)
    finally:
        local_thread.join()
    print(f"dvc repro data through SLURM: {runs['dvc'][1]:.0f} s; then at once: local "
          f"{runs['local'].seconds:.0f} s, through SLURM {runs['killed'].seconds:.0f} s "
          f"(with the kill) + rerun {runs['rerun'].seconds:.0f} s")
    return {"local": local, "project": project, "runs": runs, "cancel": cancel,
            "start": start, "cluster": slurm_cluster}


def test_outputs_equal_a_local_run(real):
    runs = real["runs"]
    assert runs["local"].returncode == 0, runs["local"].describe()
    assert runs["rerun"].returncode == 0, runs["rerun"].describe()
    expected = digests(real["local"])
    assert "results/models/DA/model.keras" in expected, sorted(expected)
    got = digests(real["project"])
    differ = sorted(n for n in expected.keys() | got.keys() if expected.get(n) != got.get(n))
    assert not differ, (len(differ), differ[:40])


def test_jobs_get_what_the_profile_asks_for(real):
    cluster, runs = real["cluster"], real["runs"]
    settings = profile_settings()
    threads, resources = settings["set-threads"], settings["set-resources"]
    jobs = submitted(runs["killed"].output + "\n" + runs["rerun"].output)
    for rule in ("train_model", "evaluate_model"):
        assert jobs.get(f"rule_{rule}"), (rule, jobs)
        for job_id in jobs[f"rule_{rule}"]:
            job = job_fields(cluster, job_id)
            assert job["NumCPUs"] == str(threads.get(rule, 1)), (rule, job)
            assert job["MinMemoryNode"] == f"{resources[rule]['mem_mb']}M", (rule, job)
            assert job["TimeLimit"] == slurm_minutes(resources[rule]["runtime"])
            assert job["Partition"] == SITE["RBCFLOW_GPU_PARTITION"]
            assert job["TresPerJob"] == "gres:gpu:1", job  # sbatch --gpus=1
            if job.get("GRES"):  # scontrol empties the allocation's details once a job ends
                assert re.search(r"gpu(:\w+)?:1\(IDX:[01]\)", job["GRES"]), job
            assert job["Account"] == "(null)"  # no account given, none guessed
            assert job["JobState"] == "COMPLETED", job
    # the GPU the job was given, as the training recorded it (fake GRES devices 0 and 1)
    for runtime in (real["project"] / "logs" / "train_model").glob("*.runtime.json"):
        assert json.loads(runtime.read_text())["cuda_visible_devices"] in ("0", "1"), runtime
    assert list((real["project"] / "logs" / "train_model").glob("*.runtime.json"))
    preprocess = [i for name, ids in jobs.items() if name.startswith("group_preprocess")
                  for i in ids]
    assert len(preprocess) == 6 + 1, jobs  # one per batch, and the cancelled one again
    for job_id in preprocess:
        job = job_fields(cluster, job_id)
        assert job["NumCPUs"] == "1", job
        assert job["MinMemoryNode"] == f"{resources['preprocess_batch']['mem_mb']}M", job
        assert job["Partition"] == SITE["SBATCH_PARTITION"]
        assert "TresPerJob" not in job, job
    split = job_fields(cluster, jobs["rule_split_task"][0])
    assert split["MinMemoryNode"] == f"{settings['default-resources']['mem_mb']}M"
    assert split["TimeLimit"] == slurm_minutes(settings["default-resources"]["runtime"])


def test_a_job_killed_by_slurm_is_reported_failed_in_bounded_time(real):
    run, cancel = real["runs"]["killed"], real["cancel"]
    assert "problem" not in cancel, cancel.get("problem")
    assert run.returncode not in (0, -9), run.describe()  # failed, and did not hang
    # the plugin's own line, or, for a group job (whose message Snakemake drops), the
    # error block naming the cancelled job's log
    reported = run.first_time(f"SLURM-job '{cancel['job_id']}' failed") or run.first_time(
        f"/{cancel['job_id']}.log (check log file")
    assert reported is not None, run.describe()
    assert reported - (cancel["at"] - real["start"]) < DETECTION_BOUND, run.describe()
    logs = list((real["project"] / ".snakemake" / "slurm_logs").rglob(f"{cancel['job_id']}.log"))
    assert "CANCELLED" in run.output or any(
        "CANCELLED" in log.read_text(errors="replace") for log in logs), (logs, run.describe())


def test_rerun_after_the_kill_completes(real):
    """A job that SLURM killed: running the same command again is the whole recovery, and
    it redoes only the killed batch of the preprocessing."""
    rerun = real["runs"]["rerun"]
    assert rerun.returncode == 0, rerun.describe()
    jobs = rerun.slurm_jobs()
    assert sum(len(i) for n, i in jobs.items() if n.startswith("group_preprocess")) == 1, jobs
    assert (real["project"] / "results" / "models" / "DA" / "metrics.json").exists()


def test_dvc_repro_runs_a_stage_through_the_profile(real):
    """SNAKEMAKE_PROFILE sends the data stage's Snakemake to SLURM. No site variables are
    set, so its job goes to the cluster's default partition, with the rule's threads."""
    result, _ = real["runs"]["dvc"]
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-6000:]
    jobs = submitted(text)
    assert list(jobs) == ["rule_simulate_dataset"], text[-6000:]
    job = job_fields(real["cluster"], jobs["rule_simulate_dataset"][0])
    assert job["Partition"] == real["cluster"].spec.partitions[0]  # the default one
    # threads: 8 in simulate.smk, capped by the stage command's `--cores all` at the cores
    # of the machine Snakemake runs on
    assert job["NumCPUs"] == str(min(8, os.cpu_count())), job
    lock = yaml.safe_load((real["project"] / "dvc.lock").read_text())
    assert "data" in lock["stages"]


def test_recovery_after_snakemake_itself_was_killed(slurm_cluster, tmp_path):
    """The login session dies mid-run: the rerun is refused until `--unlock`, the job left in
    SLURM is cancelled, and `--rerun-incomplete` (in the profile) redoes its half output."""
    workdir, cluster = tmp_path, slurm_cluster
    processes = []
    held = threading.Thread(target=lambda: run_through_profile(
        workdir, ["held/orphaned.txt"], cluster, on_start=processes.append))
    held.start()
    wait_for((workdir / "flags" / "orphaned.started").exists, 120, "hold_job orphaned")
    orphan = wait_for(lambda: running_job_of_rule(cluster, "hold_job"), 30, "its job id")
    os.kill(processes[0].pid, signal.SIGKILL)
    held.join()
    assert (workdir / "held" / "orphaned.txt").read_text() == "partial\n"

    refused = run_through_profile(workdir, ["held/orphaned.txt"], cluster)
    assert refused.returncode != 0 and "--unlock" in refused.output, refused.describe()
    unlocked = run_through_profile(workdir, ["held/orphaned.txt"], cluster,
                                   extra_args=("--unlock",))
    assert unlocked.returncode == 0, unlocked.describe()
    cluster.command("scancel", orphan)
    rerun = run_through_profile(workdir, ["held/orphaned.txt"], cluster)
    assert rerun.returncode == 0, rerun.describe()
    assert (workdir / "held" / "orphaned.txt").read_text() == "done\n"
