"""pytest fixture `slurm_cluster`: a one-node SLURM test cluster for the requesting module.

Where the cluster cannot be had, the tests using it are skipped with the reason; with
RBCFLOW_REQUIRE_SLURM set (for a CI that installs SLURM) they fail instead. The daemons
are stopped by their pid files when the module's tests end, also when the test run is
interrupted (Ctrl-C, SIGTERM or SIGHUP from a CI time limit) and when a test fails.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager

import pytest

from .slurm import ClusterUnavailable, start_cluster

# The node's declared size: every request of workflow/profiles/slurm fits (simulate_dataset
# 8 CPUs, train_model 4 CPUs and 8 GB); two fake GPUs. Finished jobs stay visible to
# scontrol for an hour, so the tests can read what each job got after the runs.
NODE = {"cpus": 32, "memory_mb": 128000, "gpus": 2, "min_job_age": 3600}


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def signals_unwind(signums=(signal.SIGTERM, signal.SIGHUP)):
    """Turn these signals into KeyboardInterrupt, so `finally` blocks (the teardown) run."""
    previous = {s: signal.signal(s, _interrupt) for s in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm")
    with signals_unwind():
        try:
            cluster, seconds = start_cluster(state, **NODE)
        except ClusterUnavailable as why:
            if os.environ.get("RBCFLOW_REQUIRE_SLURM"):
                pytest.fail(f"RBCFLOW_REQUIRE_SLURM is set, but no SLURM test cluster: {why}")
            pytest.skip(f"no SLURM test cluster: {why}")
        print(f"SLURM test cluster up in {seconds:.1f} s ({state})")
        try:
            yield cluster
        finally:
            cluster.down()
