"""The services as processes: started with their address files, read from /proc, stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.inference_vs_peers.config import CLOCK
from benchmarks.inference_vs_peers.procfs import cpu_seconds, process_tree
from benchmarks.paths import REPO

from .config import WORK


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    address: str = ""

    def cpu_seconds(self) -> float:
        """CPU seconds of the service's process and its descendants: behind Envoy (the inference service's
        default) the process started only launches Envoy, where the service runs."""
        return cpu_seconds(process_tree(self.process.pid))

    def thread_cpu_seconds(self) -> dict[str, float]:
        """CPU per kind of thread over the process tree: each process's `main` (for the service's own
        process, the event loop; behind Envoy, Envoy's main thread) and the others by their name, summed."""
        seconds: dict[str, float] = {}
        for pid in process_tree(self.process.pid):
            try:
                tasks = list(Path(f"/proc/{pid}/task").iterdir())
            except OSError:  # the process ended meanwhile
                continue
            for task in tasks:
                try:
                    stat = (task / "stat").read_text()
                except OSError:  # the thread ended meanwhile
                    continue
                name = "main" if task.name == str(pid) else stat[stat.index("(") + 1 : stat.rindex(")")]
                fields = stat.rpartition(")")[2].split()
                seconds[name] = seconds.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / CLOCK
        return seconds


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle and iowait
    return sum(values) - idle, sum(values)


def start(
    name: str, home: Path, extra: dict[str, str], file_name: str | None = None, cpus: set[int] | None = None
) -> Service:
    file_name = file_name or name
    address_file = home / "run" / f"{file_name}.json"
    prefix = f"ATELIER_{name.upper()}_"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATELIER_")}
    env.update({"ATELIER_HOME": str(home), "PYTHONPATH": str(REPO), f"{prefix}PORT": "0"})
    env.update({f"{prefix}ADDRESS_FILE": str(address_file), f"{prefix}METRICS_PORT": "-1", **extra})
    log = (WORK / f"{file_name}.log").open("wb")
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None  # every thread it starts inherits it
    process = subprocess.Popen(
        [sys.executable, "-m", f"services.{name}"], env=env, stdout=log, stderr=log, cwd=REPO, preexec_fn=pin
    )
    deadline = time.monotonic() + 60
    while not address_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{file_name} did not start; see {WORK / f'{file_name}.log'}")
        time.sleep(0.1)
    return Service(file_name, process, json.loads(address_file.read_text())["address"])


def stop_all(services: list[Service]) -> None:
    """SIGTERM to each, the last started first; then wait for each, killing any still up after 30 s."""
    for service in reversed(services):
        service.process.send_signal(signal.SIGTERM)
    for service in reversed(services):
        try:
            service.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.process.kill()
