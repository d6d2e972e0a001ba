"""The processes of the stack: which one a pid is (pid plus start time), stopping them, and the
signals `atelier up` handles while it supervises them."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from atelier.stack.addresses import pid_alive

POLL_SECONDS = 0.1


@dataclass(frozen=True)
class ProcessRecord:
    """A process the stack started; the start time tells it apart from a later process with its pid."""

    pid: int
    start_time: int | None

    @classmethod
    def of(cls, pid: int) -> ProcessRecord:
        """The record of a running process."""
        return cls(pid=pid, start_time=process_start_time(pid))

    def running(self) -> bool:
        """Whether this very process is still running."""
        if not pid_alive(self.pid):
            return False
        return self.start_time is None or process_start_time(self.pid) == self.start_time


def process_start_time(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (Linux), or None where that is unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return int(fields[19]) if len(fields) > 19 else None


def terminate(processes: Sequence[ProcessRecord], grace: float, kill_groups: bool = False) -> None:
    """SIGTERM each process, wait up to `grace` seconds for all to exit, then SIGKILL the rest (with
    `kill_groups`, the whole process group of those that lead one)."""
    for process in processes:
        send(process.pid, signal.SIGTERM)
    if wait_gone(processes, grace):
        return
    for process in processes:
        if process.running():
            kill(process.pid, kill_groups)
    wait_gone(processes, 5.0)


def wait_gone(processes: Sequence[ProcessRecord], seconds: float) -> bool:
    """Wait until none of the processes runs (reaping those that are our children)."""
    deadline = time.monotonic() + seconds
    while True:
        for process in processes:
            with suppress(ChildProcessError):
                os.waitpid(process.pid, os.WNOHANG)
        if not any(p.running() for p in processes):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_SECONDS)


def send(pid: int, signum: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


def kill(pid: int, group: bool) -> None:
    with suppress(ProcessLookupError, PermissionError):
        if group and os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)


def runs_module(pid: int, module: str) -> bool:
    """Whether the process runs `python -m <module>` or the program `module` (True where its command
    line cannot be read)."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return not Path("/proc/self").exists()
    return module.encode() in arguments or Path(arguments[0].decode(errors="replace")).name == module


class StopSignal:
    """Handler of SIGINT and SIGTERM: sets `event`; while `interrupt` (during startup) also raises
    KeyboardInterrupt, so the services started so far get stopped."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.interrupt = True

    def __call__(self, _signum: int, _frame: FrameType | None) -> None:
        self.event.set()
        if self.interrupt:
            raise KeyboardInterrupt


@contextmanager
def signals(handler: Callable[[int, FrameType | None], Any]) -> Iterator[None]:
    """Handle SIGINT and SIGTERM with `handler` inside the block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
