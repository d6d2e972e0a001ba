"""The stack's run files under its home: `run/stack.json` (the processes `up` started), the address
files, Prometheus target files, and the lock that keeps two `atelier up` apart."""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atelier.errors import FailedPrecondition
from atelier.stack import prometheus
from atelier.stack.addresses import address_file, read_address_file, run_dir
from atelier.stack.processes import ProcessRecord, runs_module
from atelier.stack.services import StackService


@dataclass
class StackRecord:
    """The contents of `run/stack.json`: the supervising `atelier up` (foreground only) and the services."""

    supervisor: ProcessRecord | None
    services: dict[str, ProcessRecord]


def stack_file(home: Path) -> Path:
    return run_dir(home) / "stack.json"


def read_stack(home: Path) -> StackRecord | None:
    """The processes recorded in `run/stack.json`, or None when there is no (readable) record."""
    try:
        content = json.loads(stack_file(home).read_text())
        supervisor = content.get("supervisor")
        return StackRecord(
            supervisor=process_record(supervisor) if supervisor else None,
            services={name: process_record(entry) for name, entry in content.get("services", {}).items()},
        )
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def process_record(entry: Mapping[str, Any]) -> ProcessRecord:
    start_time = entry.get("start_time")
    return ProcessRecord(pid=int(entry["pid"]), start_time=None if start_time is None else int(start_time))


def remove_run_files(
    home: Path, services: Sequence[StackService], extra: Mapping[str, ProcessRecord] | None = None
) -> None:
    """Remove the stack record and the address files of the services."""
    names = {s.name for s in services} | set(extra or {})
    for path in [stack_file(home), *(address_file(home, name) for name in names)]:
        path.unlink(missing_ok=True)
    for name in names:
        prometheus.remove_targets(home, name)


@contextmanager
def startup_lock(home: Path) -> Iterator[None]:
    """Hold `run/stack.lock`, so two `atelier up` in one home cannot start at the same time."""
    run_dir(home).mkdir(parents=True, exist_ok=True)
    with (run_dir(home) / "stack.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FailedPrecondition(f"another `atelier up` is starting a stack in {home}") from None
        yield


def refuse_running(home: Path, services: Sequence[StackService]) -> None:
    """Fail when any process of a stack in `home` still runs."""
    record = running_record(home, services)
    running = [f"{name} pid {p.pid}" for name, p in record.services.items() if p.running()]
    if record.supervisor is not None and record.supervisor.running():
        running.insert(0, f"atelier up pid {record.supervisor.pid}")
    if running:
        raise FailedPrecondition(
            f"a stack is already running in {home} ({', '.join(running)}): "
            "stop it with `atelier down` or use another --home"
        )


def running_record(home: Path, services: Sequence[StackService]) -> StackRecord:
    """The stack record, completed with services that published an address file but are not in it."""
    record = read_stack(home) or StackRecord(supervisor=None, services={})
    for service in services:
        if service.name in record.services:
            continue
        published = read_address_file(address_file(home, service.name))
        pid = published.pid if published is not None else None
        if pid is not None and runs_module(pid, service.module):
            record.services[service.name] = ProcessRecord(pid=pid, start_time=None)
    return record
