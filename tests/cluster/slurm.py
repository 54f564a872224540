"""A throw-away single-node SLURM cluster for tests, with one fake GPU.

Everything lives in one state folder: configuration (``etc/slurm.conf``, ``etc/gres.conf``),
the munge key and socket, spool and state directories, daemon logs and pid files. Clients
find the cluster through ``SLURM_CONF`` (see `Cluster.env`). One file outside it is
needed: snakemake-executor-plugin-slurm-jobstep removes every ``SLURM_*`` variable but the
job's id before its `srun` inside a job, so that `srun` reads SLURM's default
configuration, ``/etc/slurm/slurm.conf``. `up` makes it a symbolic link to the state
folder's slurm.conf when there is none, and `down` removes the link; an existing file that
is not such a link (a real cluster's configuration) is never touched: the cluster is then
unavailable.

Used as a pytest fixture helper (`start_cluster`, `Cluster.down`) and from a shell::

    python tests/cluster/slurm.py up --dir /tmp/slurm      # prints `export SLURM_CONF=...`
    python tests/cluster/slurm.py status --dir /tmp/slurm
    python tests/cluster/slurm.py down --dir /tmp/slurm

`up` installs Debian's packages (slurmctld, slurmd, munge, slurm-client; SLURM 22.05 on
Debian 12) when they are missing. Where the cluster cannot be had (not root, no apt-get,
a daemon that will not start) it raises `ClusterUnavailable` with the reason, which the
test fixture turns into a skip.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "munge", "slurm-client")
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel")
# Debian puts the daemons in /usr/sbin, which a non-login PATH may lack.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
DAEMONS = ("munged", "slurmctld", "slurmd")  # start order; stopped in reverse
PARTITIONS = ("debug", "cpu", "gpu")
STATE_FILE = "cluster.json"
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")


class ClusterUnavailable(RuntimeError):
    """The cluster cannot be brought up on this machine; the message says why."""


@dataclass(frozen=True)
class ClusterSpec:
    """What the cluster looks like: one node, its size, its ports and its fake GPUs.

    The node may be declared larger than the machine (slurmd then trusts slurm.conf), so a
    profile sized for real nodes can be tested unchanged on a small one: nothing is
    enforced without cgroups, and the toy jobs are tiny.

    ``min_job_age`` is how long (s) a finished job stays visible to ``squeue``: the SLURM
    executor only trusts ``squeue`` for status when it is at least three times its first
    status-check interval, and otherwise falls back to ``sacct``, which fails without an
    accounting database.
    """

    state_dir: str
    node: str
    cpus: int
    memory_mb: int
    gpus: int = 1
    ctld_port: int = 6817
    slurmd_port: int = 6818
    min_job_age: int = 300
    # The first is the default; all hold the one node (tests send jobs to named ones).
    partitions: tuple[str, ...] = PARTITIONS
    # The process that started the cluster: a cluster whose owner is gone (a test run
    # killed before its teardown) is stopped by the next `up` instead of blocking it.
    owner_pid: int = 0


def which(program: str) -> str | None:
    return shutil.which(program, path=SEARCH_PATH)


def missing_programs() -> list[str]:
    return [p for p in PROGRAMS if which(p) is None]


def ensure_packages(timeout: int = 900) -> None:
    """Install the SLURM and munge packages with apt-get if any of their programs is missing.

    Raises
    ------
    ClusterUnavailable
        When they are missing and cannot be installed (not root, no apt-get, install failed).
    """
    missing = missing_programs()
    if not missing:
        return
    why = f"SLURM programs missing ({', '.join(missing)})"
    if os.geteuid() != 0:
        raise ClusterUnavailable(f"{why}; installing {' '.join(PACKAGES)} needs root")
    if which("apt-get") is None:
        raise ClusterUnavailable(f"{why}; no apt-get to install {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]
    print(f"{why}: running `{' '.join(install)}`", file=sys.stderr)
    result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:  # a stale package list is the usual cause: refresh once
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True,
                       timeout=timeout)
        result = subprocess.run(install, env=env, capture_output=True, text=True,
                                timeout=timeout)
    if result.returncode != 0 or missing_programs():
        raise ClusterUnavailable(
            f"{why}; `{' '.join(install)}` failed ({result.returncode}):\n"
            f"{(result.stdout + result.stderr)[-2000:]}"
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def node_memory_mb() -> int:
    """Memory SLURM may hand out: MemTotal less a margin, so slurmd never reports less
    than configured (which would drain the node as "Low RealMemory")."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) / 1024 * 0.9)
    raise ClusterUnavailable("no MemTotal in /proc/meminfo")


def default_spec(state_dir: Path, cpus: int = 0, memory_mb: int = 0, gpus: int = 1,
                 min_job_age: int = 300) -> ClusterSpec:
    """A spec for this machine; ``cpus`` and ``memory_mb`` raise the node's declared size."""
    return ClusterSpec(
        state_dir=str(state_dir.resolve()), node=socket.gethostname().split(".")[0],
        cpus=max(cpus, os.cpu_count() or 1), memory_mb=max(memory_mb, node_memory_mb()),
        gpus=gpus, ctld_port=free_port(), slurmd_port=free_port(), min_job_age=min_job_age,
        owner_pid=os.getpid(),
    )


def slurm_conf_text(spec: ClusterSpec) -> str:
    """slurm.conf of a one-node cluster without cgroups, accounting or systemd."""
    state = Path(spec.state_dir)
    return "\n".join([
        "ClusterName=rbcflowtest",
        # name(address): no need for the host name to resolve through /etc/hosts
        f"SlurmctldHost={spec.node}(127.0.0.1)",
        f"SlurmctldPort={spec.ctld_port}",
        f"SlurmdPort={spec.slurmd_port}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={state / 'munge' / 'munge.socket'}",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"StateSaveLocation={state / 'ctld'}",
        f"SlurmdSpoolDir={state / 'spool'}",
        f"SlurmctldPidFile={state / 'run' / 'slurmctld.pid'}",
        f"SlurmdPidFile={state / 'run' / 'slurmd.pid'}",
        f"SlurmctldLogFile={state / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={state / 'log' / 'slurmd.log'}",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        # No cgroups in a container: track processes by parent id, bind nothing.
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "SelectType=select/cons_tres",  # cons_tres: --gpus and GPU TRES are understood
        "SelectTypeParameters=CR_Core_Memory",
        "SchedulerType=sched/backfill",
        "MpiDefault=none",
        "ReturnToService=2",
        # The node as declared here, even where it is larger than the machine.
        "SlurmdParameters=config_overrides",
        f"MinJobAge={spec.min_job_age}",
        "KillWait=5",  # scancel: SIGTERM, then SIGKILL after 5 s (default 30)
        "InactiveLimit=0",
        "GresTypes=gpu",
        f"NodeName={spec.node} NodeAddr=127.0.0.1 CPUs={spec.cpus} "
        f"RealMemory={spec.memory_mb} Gres=gpu:{spec.gpus} State=UNKNOWN",
        *(f"PartitionName={name} Nodes={spec.node} Default={'YES' if i == 0 else 'NO'} "
          "MaxTime=INFINITE State=UP" for i, name in enumerate(spec.partitions)),
        "",
    ])


def gres_conf_text(spec: ClusterSpec) -> str:
    """One fake GPU device per GPU (see `make_fake_gpus`): slurmd then hands jobs
    CUDA_VISIBLE_DEVICES as for real GPUs."""
    devices = Path(spec.state_dir) / "dev"
    return "".join(f"NodeName={spec.node} Name=gpu File={devices / f'nvidia{i}'}\n"
                   for i in range(spec.gpus))


class Cluster:
    """A cluster described by the state folder ``state_dir`` (see `start_cluster`)."""

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir).resolve()

    @property
    def conf(self) -> Path:
        return self.state_dir / "etc" / "slurm.conf"

    @property
    def spec(self) -> ClusterSpec:
        fields = json.loads((self.state_dir / STATE_FILE).read_text())
        return ClusterSpec(**{**fields, "partitions": tuple(fields["partitions"])})

    @property
    def env(self) -> dict[str, str]:
        """The environment for client commands (sbatch, squeue, snakemake) on this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf), "PATH": SEARCH_PATH}

    def log(self, daemon: str) -> Path:
        return self.state_dir / "log" / f"{daemon}.log"

    def pid_file(self, daemon: str) -> Path:
        return self.state_dir / "run" / f"{daemon}.pid"

    def command(self, *args: str, timeout: int = 30, check: bool = True):
        """Run a SLURM client command against this cluster."""
        result = subprocess.run(list(args), env=self.env, capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"`{' '.join(args)}` failed: {result.stderr.strip()}")
        return result

    def owner_alive(self) -> bool:
        """Whether the process that started this cluster still runs (True if unknown)."""
        try:
            owner = self.spec.owner_pid
        except (OSError, ValueError, TypeError):
            return True
        if owner <= 0:
            return True
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def alive(self, daemon: str) -> int | None:
        """The daemon's pid if its pid file names a live process, else None."""
        try:
            pid = int(self.pid_file(daemon).read_text().split()[0])
            os.kill(pid, 0)
            # The pid of a daemon that died may have gone to another process since. (The
            # command line reads empty for a moment while a process starts.)
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            if Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].startswith("Z"):
                return None  # exited, not yet reaped by its parent (this process)
        except (OSError, ValueError, IndexError):
            return None
        name = Path(command.decode(errors="replace")).name
        return pid if name in ("", daemon) else None

    def node_state(self) -> str:
        """The node's state as sinfo prints it ("idle", "mix", "down*"...; "" if unknown)."""
        result = self.command("sinfo", "-h", "-N", "-o", "%t", timeout=10, check=False)
        # one line per partition, all about the same node
        return ",".join(sorted(set(result.stdout.split()))) if result.returncode == 0 else ""

    def status(self) -> dict:
        return {
            "state_dir": str(self.state_dir),
            "daemons": {d: self.alive(d) for d in DAEMONS},
            "node": self.node_state() if self.alive("slurmctld") else "",
        }

    def up(self, timeout: float = 60) -> float:
        """Link /etc/slurm/slurm.conf, start munged, slurmctld and slurmd; wait until the
        node is idle.

        Returns the seconds it took. On any failure everything started is stopped again
        and `ClusterUnavailable` says which log to read.
        """
        start = time.monotonic()
        try:
            link_system_conf(self.conf)
            self._start_munged()
            self._spawn("slurmctld", [which("slurmctld"), "-D", "-f", str(self.conf)])
            self._spawn("slurmd", [which("slurmd"), "-D", "-f", str(self.conf)])
            self._wait_until_idle(start + timeout)
        except BaseException:
            self.down()
            raise
        return time.monotonic() - start

    def _spawn(self, daemon: str, args: list[str]) -> None:
        """Start a daemon in the foreground mode, in its own session, and record its pid."""
        with open(self.log(daemon).with_suffix(".out"), "ab") as out:
            process = subprocess.Popen(args, env=self.env, stdout=out, stderr=out,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid_file(daemon).write_text(f"{process.pid}\n")

    def _start_munged(self) -> None:
        munge = self.state_dir / "munge"
        key = munge / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
            key.chmod(0o400)
        self._spawn("munged", [
            which("munged"), "--foreground", "--force", f"--key-file={key}",
            f"--socket={munge / 'munge.socket'}", f"--seed-file={munge / 'munge.seed'}",
            f"--pid-file={munge / 'munged.pid'}",
        ])
        deadline = time.monotonic() + 10
        while not (munge / "munge.socket").exists():
            if not self.alive("munged") or time.monotonic() > deadline:
                raise ClusterUnavailable(
                    f"munged did not start: read {self.log('munged').with_suffix('.out')}"
                )
            time.sleep(0.05)

    def _wait_until_idle(self, deadline: float) -> None:
        while True:
            for daemon in DAEMONS:
                if not self.alive(daemon):
                    raise ClusterUnavailable(
                        f"{daemon} exited during start-up: read {self.log(daemon)} "
                        f"and {self.log(daemon).with_suffix('.out')}"
                    )
            state = self.node_state()
            if state == "idle":
                return
            if time.monotonic() > deadline:
                reason = self.command("sinfo", "-R", check=False).stdout.strip()
                raise ClusterUnavailable(
                    f"node not idle (state {state!r}; {reason}) before the timeout: read "
                    f"{self.log('slurmctld')} and {self.log('slurmd')}"
                )
            time.sleep(0.2)

    def cancel_all_jobs(self, timeout: float = 20) -> None:
        """scancel every job of this cluster and wait until none is running."""
        if not self.alive("slurmctld"):
            return
        self.command("scancel", "--full", "--user", str(os.getuid()), check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = self.command("squeue", "-h", "-o", "%i", "-t", "PD,R,CG,S", check=False)
            if jobs.returncode != 0 or not jobs.stdout.strip():
                return
            time.sleep(0.5)

    def down(self, grace: float = 10) -> None:
        """Cancel jobs, then stop slurmd, slurmctld and munged by their pid files
        (SIGTERM, then SIGKILL after ``grace`` seconds). Safe to call more than once."""
        try:
            self.cancel_all_jobs()
        except (OSError, subprocess.SubprocessError) as problem:  # stop the daemons anyway
            print(f"cancelling the test cluster's jobs failed: {problem}", file=sys.stderr)
        for daemon in reversed(DAEMONS):
            pid = self.alive(daemon)
            if pid is not None:
                stop_process(pid, grace)
            self.pid_file(daemon).unlink(missing_ok=True)
        for pid in job_processes(self.conf):  # a job step slurmd left behind
            stop_process(pid, grace=2)
        if SYSTEM_CONF.is_symlink() and SYSTEM_CONF.resolve() == self.conf:
            SYSTEM_CONF.unlink()


def link_system_conf(conf: Path) -> None:
    """Point /etc/slurm/slurm.conf at ``conf`` unless it is a real file (see module doc).

    A link left by an earlier test cluster (one whose state folder is gone or whose
    slurmctld is not running) is replaced; such a cluster still running after its owner
    died is stopped first (by its pid files).
    """
    if SYSTEM_CONF.is_symlink():
        target = Path(os.readlink(SYSTEM_CONF))
        state = target.parent.parent
        ours = (state / STATE_FILE).exists() or (
            not target.exists() and target.parts[-2:] == ("etc", "slurm.conf"))
        if not ours:
            raise ClusterUnavailable(f"{SYSTEM_CONF} links to {target}, not a test cluster's")
        other = Cluster(state)
        if target != conf and other.alive("slurmctld"):
            if other.owner_alive():
                raise ClusterUnavailable(f"{SYSTEM_CONF}: another test cluster runs in {state}")
            print(f"stopping the test cluster left running in {state}", file=sys.stderr)
            other.down()
        SYSTEM_CONF.unlink()
    elif SYSTEM_CONF.exists():
        raise ClusterUnavailable(
            f"{SYSTEM_CONF} exists (a real cluster's configuration?); it is left alone, and "
            "job steps would read it instead of the test cluster's"
        )
    SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SYSTEM_CONF.symlink_to(conf)


def stop_process(pid: int, grace: float) -> None:
    """SIGTERM ``pid``, wait up to ``grace`` seconds, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if _reaped_or_gone(pid):
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
        _reaped_or_gone(pid)
    except ProcessLookupError:
        return


def _reaped_or_gone(pid: int) -> bool:
    try:  # our own child (started by this process): reap it, or it stays a zombie
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return True
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split(") ")[-1].startswith("Z")


def job_processes(conf: Path) -> list[int]:
    """Pids of processes started by jobs of this cluster (their environment names ``conf``)."""
    marker = f"SLURM_CONF={conf}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def make_fake_gpus(folder: Path, count: int) -> None:
    """Character devices ``nvidia0``... with /dev/null's device number: slurmd wants a
    distinct character device file per GPU."""
    null_device = os.stat("/dev/null").st_rdev
    for i in range(count):
        path = folder / f"nvidia{i}"
        path.unlink(missing_ok=True)
        try:
            os.mknod(path, stat.S_IFCHR | 0o666, null_device)
        except OSError as problem:
            raise ClusterUnavailable(f"cannot make the fake GPU {path}: {problem}") from None


def write_configuration(spec: ClusterSpec) -> Cluster:
    """Create the state folder layout and write slurm.conf, gres.conf and the spec."""
    state = Path(spec.state_dir)
    for sub in ("etc", "munge", "ctld", "spool", "run", "log", "dev"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    make_fake_gpus(state / "dev", spec.gpus)
    (state / "munge").chmod(0o700)  # munged refuses a key folder others can write
    (state / "etc" / "slurm.conf").write_text(slurm_conf_text(spec))
    (state / "etc" / "gres.conf").write_text(gres_conf_text(spec))
    (state / STATE_FILE).write_text(json.dumps(asdict(spec), indent=1))
    return Cluster(state)


def start_cluster(state_dir: Path, timeout: float = 60, **size) -> tuple[Cluster, float]:
    """Install what is missing, configure a fresh cluster in ``state_dir`` and start it.

    ``size`` is passed to `default_spec` (cpus, memory_mb, gpus). Returns the cluster and
    its bring-up time in seconds (daemon start to idle node).
    """
    ensure_packages()
    if os.geteuid() != 0:
        raise ClusterUnavailable("the test cluster runs its daemons as root")
    cluster = write_configuration(default_spec(Path(state_dir), **size))
    return cluster, cluster.up(timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--dir", required=True, type=Path, help="the cluster's state folder")
    parser.add_argument("--cpus", type=int, default=0, help="declared CPUs (at least nproc)")
    parser.add_argument("--memory-mb", type=int, default=0, help="declared memory")
    parser.add_argument("--gpus", type=int, default=1, help="fake GPUs (gres.conf)")
    args = parser.parse_args(argv)
    cluster = Cluster(args.dir)
    if args.action == "up":
        try:
            cluster, seconds = start_cluster(args.dir, cpus=args.cpus,
                                             memory_mb=args.memory_mb, gpus=args.gpus)
        except ClusterUnavailable as problem:
            print(f"cluster not started: {problem}", file=sys.stderr)
            return 1
        print(f"# cluster up in {seconds:.1f} s; for client commands:")
        print(f"export SLURM_CONF={cluster.conf}")
    elif args.action == "down":
        if (args.dir / STATE_FILE).exists():
            cluster.down()
    else:
        print(json.dumps(cluster.status(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
