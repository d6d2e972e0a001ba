"""The Report: every step's figures, and how much other work shared the machine meanwhile."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import OTHERS, QUIET_LIMIT, Result


@dataclass
class Report:
    """Everything measured, and how much other work shared the machine during each step: the
    benchmarks named in OTHERS, and CPU used by any process that is not this script or one it
    started."""

    wait: bool = True
    figures: dict[str, Any] = field(default_factory=dict)
    loads: list[tuple[str, float, bool]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _foreign: float = 0.0
    _others_seen: bool = False

    def __post_init__(self) -> None:
        threading.Thread(target=self._watch, name="watch-machine", daemon=True).start()

    def _watch(self) -> None:
        """Every 2 s: the CPU seconds the machine spent outside this script's process tree."""
        busy, mine = machine_busy(), tree_cpu(os.getpid())
        while True:
            time.sleep(2)
            now_busy, now_mine = machine_busy(), tree_cpu(os.getpid())
            others = others_running()
            with self._lock:
                self._foreign += max(0.0, (now_busy - busy) - (now_mine - mine))
                self._others_seen |= others
            busy, mine = now_busy, now_mine

    def _take(self) -> tuple[float, bool]:
        with self._lock:
            taken = self._foreign, self._others_seen
            self._foreign, self._others_seen = 0.0, False
        return taken

    def measure(self, key: str, label: str, step: Callable[[], Result]) -> Result:
        """Run a timed step once the machine is quiet (unless --no-wait), recording how many cores
        other work took meanwhile: figures taken under load are reported as such, not retried."""
        self._wait_quiet()
        self._take()
        began = time.perf_counter()
        result = step()
        foreign, others = self._take()
        result["foreign_cores"] = foreign / max(time.perf_counter() - began, 1e-9)
        self.loads.append((label, result["foreign_cores"], others))
        self.figures[key] = result
        print(f"  {label}: {summary(result)}", file=sys.stderr, flush=True)
        return result

    def _wait_quiet(self, window: float = 10.0, patience: float = 3600.0) -> None:
        """Wait (at most `patience` seconds) for a `window` with no other benchmark and other work
        under QUIET_LIMIT cores."""
        deadline = time.monotonic() + patience
        while self.wait and time.monotonic() < deadline:
            self._take()
            time.sleep(window)
            foreign, others = self._take()
            if foreign / window <= QUIET_LIMIT and not others:
                return
            why = "another benchmark is running" if others else f"other work takes {foreign / window:.2f} cores"
            print(f"  {time.strftime('%H:%M:%S')} waiting: {why}", file=sys.stderr, flush=True)


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy so far (all cores, everything but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> float:
    """CPU seconds of `root` and its live descendants, with the children each has reaped."""
    own: dict[int, int] = {}
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split() if entry.name.isdigit() else []
        except OSError:
            continue
        if fields:
            own[int(entry.name)] = sum(int(v) for v in fields[11:15])
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += own.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total / os.sysconf("SC_CLK_TCK")


def others_running() -> bool:
    """Whether another benchmark named in OTHERS is running."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if any(other.encode() in command for other in OTHERS):
            return True
    return False


def summary(value: Any) -> str:
    if isinstance(value, dict):
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in value.items() if k != "times"}
        return json.dumps(shown)[:400]
    return str(value)
