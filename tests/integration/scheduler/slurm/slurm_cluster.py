"""A real single-machine Slurm (Debian's slurm-wlm and munge) with typed fake GPUs, for the tests.

One node named after this host with 2 x a100 and 2 x v100: device files made with mknod (the null
device's numbers, as the recipe has it) under a private directory, listed in gres.conf. munged,
slurmctld and slurmd run in the foreground as root with everything (config, key, sockets, state,
logs) in that directory, on ports picked free at start, so a run never touches the machine's own
Slurm or another run's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROGRAMS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "sacct", "scancel", "scontrol", "sinfo")
GPU_TYPES = {"a100": "A100-80", "v100": "V100M32"}
"""Slurm type -> Atelier card model, as the scheduler under test is configured."""
CARDS_PER_TYPE = 2
NODE_CPUS = 16
"""CPUs the node declares (config_overrides lets it claim more than it has), so jobs run side by side."""


def missing_programs() -> list[str]:
    return [program for program in PROGRAMS if shutil.which(program, path=_search_path()) is None]


def _search_path() -> str:
    return os.environ.get("PATH", "") + ":/usr/sbin:/sbin"


@dataclass(frozen=True)
class Slurm:
    """A running test Slurm: its config file and home directory, and the one node's name."""

    root: Path
    node: str

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf), "PATH": _search_path()}

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, env=self.env(), capture_output=True, text=True, timeout=60, check=check)


def free_port() -> int:
    # Slurm daemons take no port 0; a port the kernel just handed out is the best guess there is.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(root: Path, node: str) -> None:
    devices = root / "dev"
    devices.mkdir()
    files = []
    for index in range(CARDS_PER_TYPE * len(GPU_TYPES)):
        path = devices / f"fakegpu{index}"
        os.mknod(path, 0o666 | 0o020000, os.makedev(1, 3))
        files.append(path)
    gres = []
    for position, kind in enumerate(sorted(GPU_TYPES)):
        first, last = position * CARDS_PER_TYPE, (position + 1) * CARDS_PER_TYPE - 1
        gres.append(f"NodeName={node} Name=gpu Type={kind} File={devices}/fakegpu[{first}-{last}]")
    (root / "gres.conf").write_text("\n".join(gres) + "\n")
    node_gres = ",".join(f"gpu:{kind}:{CARDS_PER_TYPE}" for kind in sorted(GPU_TYPES))
    for folder in ("state", "spool", "log"):
        (root / folder).mkdir()
    settings = {
        "ClusterName": f"atelier{os.getpid()}",
        "SlurmctldHost": f"{node}(127.0.0.1)",
        "SlurmctldPort": free_port(),
        "SlurmdPort": free_port(),
        "SlurmUser": "root",
        "SlurmdUser": "root",
        "AuthType": "auth/munge",
        "CredType": "cred/munge",
        "AuthInfo": f"socket={root / 'munge' / 'munge.socket'}",
        "StateSaveLocation": root / "state",
        "SlurmdSpoolDir": root / "spool",
        "SlurmctldPidFile": root / "slurmctld.pid",
        "SlurmdPidFile": root / "slurmd.pid",
        "SlurmctldLogFile": root / "log" / "slurmctld.log",
        "SlurmdLogFile": root / "log" / "slurmd.log",
        "ProctrackType": "proctrack/linuxproc",
        "TaskPlugin": "task/none",
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_Core",
        "GresTypes": "gpu",
        "SlurmdParameters": "config_overrides",
        "JobAcctGatherType": "jobacct_gather/none",
        "AccountingStorageType": "accounting_storage/none",
        "JobCompType": "jobcomp/filetxt",
        "JobCompLoc": root / "log" / "jobcomp.txt",
        "MpiDefault": "none",
        "ReturnToService": 2,
        "KillWait": 2,
        "MinJobAge": 300,
        "SchedulerParameters": "sched_interval=2",
    }
    lines = [f"{key}={value}" for key, value in settings.items()]
    lines.append(f"NodeName={node} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} RealMemory=16000 Gres={node_gres} State=UNKNOWN")
    lines.append(f"PartitionName=gpu Nodes={node} Default=YES MaxTime=INFINITE State=UP")
    (root / "slurm.conf").write_text("\n".join(lines) + "\n")


def start(node: str) -> Slurm:
    """munged, slurmctld and slurmd from a fresh directory; returns once the node is idle."""
    root = Path(tempfile.mkdtemp(prefix="atelier-slurm-"))
    root.chmod(0o755)  # munged wants its socket's directories searchable by all
    slurm = Slurm(root, node)
    write_config(root, node)
    munge = root / "munge"
    munge.mkdir(mode=0o755)
    key_dir = root / "munge-key"
    key_dir.mkdir(mode=0o700)
    key = key_dir / "munge.key"
    subprocess.run(["mungekey", "--create", f"--keyfile={key}"], env=slurm.env(), check=True, capture_output=True)
    key.chmod(0o600)
    _spawn(
        slurm,
        "munged",
        [
            "munged",
            "--foreground",
            f"--socket={munge / 'munge.socket'}",
            f"--key-file={key}",
            f"--pid-file={munge / 'munged.pid'}",
            f"--log-file={root / 'log' / 'munged.log'}",
            f"--seed-file={munge / 'munged.seed'}",
        ],
    )
    _wait(lambda: (munge / "munge.socket").exists(), "munged did not create its socket", root)
    _spawn(slurm, "slurmctld", ["slurmctld", "-D"])
    _spawn(slurm, "slurmd", ["slurmd", "-D", "-N", node])
    _wait(lambda: _node_state(slurm) == "idle", f"node {node} did not become idle in Slurm", root)
    return slurm


def stop(slurm: Slurm) -> None:
    """Cancels what still runs, stops the daemons (SIGTERM, then SIGKILL) and removes the directory."""
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        slurm.run("scancel", "--full", f"--nodelist={slurm.node}", check=False)
        _wait(lambda: not slurm.run("squeue", "--noheader", check=False).stdout.strip(), "", None, 20, quiet=True)
    for name in ("slurmd", "slurmctld", "munged"):
        pid_file = slurm.root / f"{name}.pid.atelier"
        if pid_file.exists():
            _terminate(int(pid_file.read_text()))
    shutil.rmtree(slurm.root, ignore_errors=True)


def _spawn(slurm: Slurm, name: str, argv: list[str]) -> None:
    output = (slurm.root / "log" / f"{name}.out").open("wb")
    process = subprocess.Popen(
        argv, env=slurm.env(), stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, cwd=slurm.root
    )
    (slurm.root / f"{name}.pid.atelier").write_text(str(process.pid))


def _node_state(slurm: Slurm) -> str:
    done = slurm.run("sinfo", "--noheader", f"--nodes={slurm.node}", "--format=%T", check=False)
    return done.stdout.strip().rstrip("*")


def _terminate(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait(lambda: not _alive(pid), "", None, 15, quiet=True):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it when it is ours


def _alive(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return False


def _wait(
    condition: Callable[[], bool], message: str, root: Path | None, timeout: float = 90.0, quiet: bool = False
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    if quiet:
        return False
    logs = ""
    if root is not None:
        for path in sorted((root / "log").glob("*")):
            logs += f"\n--- {path.name}\n" + path.read_text(errors="replace")[-3000:]
    raise RuntimeError(message + logs)
