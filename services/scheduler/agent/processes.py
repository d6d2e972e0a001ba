"""A job's process on a node: started in its own process group, its output read line by line,
stopped with SIGTERM, a grace period, then SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from atelier.scheduler.v1 import resources_pb2 as pb

OnLine = Callable[[int, str], None]
"""(LogStream, text) for every line the process prints."""


def resolve_argv(argv: list[str]) -> list[str]:
    """`torchrun` means this interpreter's torch launcher, so jobs run in the agent's environment."""
    if argv and argv[0] == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", *argv[1:]]
    if argv and argv[0] in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    return argv


class TaskProcess:
    """One running process and the threads that read its output."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, on_line: OnLine) -> None:
        self.argv = argv
        self.started = time.monotonic()
        self._stop_requested = False
        self._popen = subprocess.Popen(
            resolve_argv(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: stop() reaches torchrun's workers too
        )
        assert self._popen.stdout is not None
        assert self._popen.stderr is not None
        self._readers = [
            threading.Thread(target=_pump, args=(self._popen.stdout, pb.LOG_STREAM_STDOUT, on_line), daemon=True),
            threading.Thread(target=_pump, args=(self._popen.stderr, pb.LOG_STREAM_STDERR, on_line), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        return self._popen.pid

    def poll(self) -> int | None:
        """The exit code once the process and its output are done (negative: killed by that signal)."""
        code = self._popen.poll()
        if code is None:
            return None
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    def stop(self, grace_seconds: float) -> None:
        """SIGTERM to the whole group, SIGKILL after the grace period if anything is left."""
        self._stop_requested = True
        _signal_group(self._popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline:
            if self._popen.poll() is not None:
                break
            time.sleep(0.05)
        _signal_group(self._popen.pid, signal.SIGKILL)  # also reaps workers left behind by the leader
        self._popen.wait()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(pid, sig)


def _pump(stream: object, kind: int, on_line: OnLine) -> None:
    for raw in iter(stream.readline, b""):  # type: ignore[attr-defined]
        on_line(kind, raw.decode(errors="replace").rstrip("\n"))
    stream.close()  # type: ignore[attr-defined]
