"""Starting, stopping and inspecting the one-machine stack: each service its own process.

Everything lives under the stack's home: `run/<service>.json` (the address each service publishes once
serving), `run/stack.json` (the pids `up` started) and `logs/<service>.log` (each service's output).
Services start in the order of `SERVICES`, each once the ones before it are serving, so a service can
resolve the addresses of those before it while it starts.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

import atelier
from atelier.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, Unavailable
from atelier.stack import prometheus
from atelier.stack.addresses import address_file, pid_alive, read_address_file, run_dir, write_address_file
from atelier.stack.services import DEFAULT_BASE_PORT, KNOWN, SERVICES, StackService

STOP_GRACE_SECONDS = 15.0
"""How long `down` waits after SIGTERM before it sends SIGKILL."""
LOG_TAIL_LINES = 20
_POLL_SECONDS = 0.1


class Health(StrEnum):
    """What a `grpc.health.v1` check of a service's overall health (service "") said."""

    SERVING = "SERVING"
    NOT_SERVING = "NOT_SERVING"
    UNREACHABLE = "UNREACHABLE"


@dataclass(frozen=True)
class ServiceStatus:
    """One service of the stack as `atelier status` shows it."""

    name: str
    address: str | None
    pid: int | None
    alive: bool
    health: Health
    metrics: str = ""

    def to_json(self) -> dict[str, Any]:
        """The status as a JSON-ready mapping."""
        return {
            "name": self.name,
            "address": self.address,
            "pid": self.pid,
            "alive": self.alive,
            "health": self.health.value,
            "metrics": self.metrics or None,
        }


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


@dataclass
class StackRecord:
    """The contents of `run/stack.json`: the supervising `atelier up` (foreground only) and the services."""

    supervisor: ProcessRecord | None
    services: dict[str, ProcessRecord]


@dataclass
class _Started:
    """A service process `up` started, and where its output of this run begins in its log."""

    service: StackService
    process: subprocess.Popen[bytes]
    record: ProcessRecord
    log: Path
    log_offset: int


def check_health(address: str, timeout: float = 1.0) -> Health:
    """Ask the `grpc.health.v1` service at `address` about the server's overall health."""
    with grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)]) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return Health.UNREACHABLE
    if response.status == health_pb2.HealthCheckResponse.SERVING:
        return Health.SERVING
    return Health.NOT_SERVING


def up(
    home: Path,
    base_port: int = DEFAULT_BASE_PORT,
    services: Sequence[StackService] = SERVICES,
    detach: bool = True,
    timeout: float = 60.0,
    on_ready: Callable[[list[ServiceStatus]], None] | None = None,
) -> list[ServiceStatus]:
    """Start the stack in `home` and wait until every service is serving.

    With `detach` return then, leaving the services running; without it call `on_ready`, stay until
    SIGINT or SIGTERM and stop the services. Fails, stopping whatever it started, when a service exits
    early or is not serving within `timeout` seconds, and refuses when a stack already runs in `home`.
    """
    _check_ports(base_port, services)
    home = home.absolute()
    supervisor = None if detach else ProcessRecord.of(os.getpid())
    stop = _StopSignal()
    with _signals(stop):
        with _startup_lock(home):
            _refuse_running(home, services)
            _remove_run_files(home, services)
            started = _start_all(home, base_port, services, supervisor, timeout)
        stop.interrupt = False
        try:
            statuses = status(home, services)
            if on_ready is not None:
                on_ready(statuses)
            if not detach:
                _wait_for_stop(stop.event, started)
        finally:
            if not detach:
                _stop_started(home, services, started)
    return statuses


def down(home: Path, services: Sequence[StackService] = SERVICES) -> dict[str, int]:
    """Stop the stack in `home` (SIGTERM, then SIGKILL after `STOP_GRACE_SECONDS`), remove its run files.

    Returns the pid of each service that was running.
    """
    home = home.absolute()
    record = _running_record(home, services)
    supervisor = record.supervisor
    if supervisor is not None and supervisor.pid != os.getpid() and supervisor.running():
        _send(supervisor.pid, signal.SIGTERM)
    running = {name: process for name, process in record.services.items() if process.running()}
    _terminate(list(running.values()), STOP_GRACE_SECONDS, kill_groups=True)
    if supervisor is not None and supervisor.pid != os.getpid():
        _terminate([supervisor], STOP_GRACE_SECONDS)
    _remove_run_files(home, services, extra=record.services)
    return {name: process.pid for name, process in running.items()}


def status(home: Path, services: Sequence[StackService] = SERVICES) -> list[ServiceStatus]:
    """The address, pid, liveness and health of each service of the stack in `home`."""
    home = home.absolute()
    record = _read_stack(home) or StackRecord(supervisor=None, services={})
    names = [s.name for s in services] + [n for n in record.services if n not in {s.name for s in services}]
    return [_service_status(home, name, record.services.get(name)) for name in names]


def _service_status(home: Path, name: str, process: ProcessRecord | None) -> ServiceStatus:
    published = read_address_file(address_file(home, name))
    if process is None and published is not None and published.pid is not None:
        process = ProcessRecord(pid=published.pid, start_time=None)
    alive = process is not None and process.running()
    address = published.address if published is not None and (alive or process is None) else None
    health = _health(KNOWN.get(name), address)
    pid = process.pid if process else None
    metrics = published.metrics if published is not None and address else ""
    return ServiceStatus(name=name, address=address, pid=pid, alive=alive, health=health, metrics=metrics)


def _health(service: StackService | None, address: str | None) -> Health:
    if not address:
        return Health.UNREACHABLE
    if service is not None and service.kind == "prometheus":
        return Health.SERVING if prometheus.ready(address) else Health.UNREACHABLE
    return check_health(address)


def _check_ports(base_port: int, services: Sequence[StackService]) -> None:
    """Fail unless every service's port (base port plus its offset) is a valid port."""
    last = base_port + max((s.default_port_offset for s in services), default=0)
    if base_port and not 0 < last <= 65535:
        raise InvalidArgument(f"base port {base_port} puts the last service on port {last}, above 65535")


def _start_all(
    home: Path,
    base_port: int,
    services: Sequence[StackService],
    supervisor: ProcessRecord | None,
    timeout: float,
) -> list[_Started]:
    """Start the services one after the other, each once the ones before it are serving; on failure
    stop those started."""
    deadline = time.monotonic() + timeout
    started: list[_Started] = []
    addresses: dict[str, str] = {}
    try:
        for service in services:
            started.append(_spawn(service, home, base_port, addresses))
            _write_stack(home, supervisor, started)
            addresses[service.env_var("address")] = _wait_serving(home, started[-1], deadline, timeout)
            published = read_address_file(address_file(home, service.name))
            if published is not None and published.metrics:
                prometheus.write_targets(home, service.name, published.metrics)
    except BaseException:
        _stop_started(home, services, started)
        raise
    return started


def _stop_started(home: Path, services: Sequence[StackService], started: Sequence[_Started]) -> None:
    """Stop the services this process started, reap them and remove the run files."""
    _terminate([item.record for item in started], STOP_GRACE_SECONDS, kill_groups=True)
    for item in started:
        item.process.poll()
    _remove_run_files(home, services)


def _spawn(service: StackService, home: Path, base_port: int, addresses: Mapping[str, str]) -> _Started:
    """Start one service as `python -m <module>` in its own session, its output going to its log."""
    log = home / "logs" / f"{service.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    if service.kind == "prometheus":
        port = service.port(base_port) or prometheus.free_port()
        argv, env = prometheus.command(home, port), dict(os.environ)
    else:
        argv = [sys.executable, "-m", service.module]
        env = _service_env(service, home, service.port(base_port), addresses)
    with log.open("ab") as output:
        offset = output.tell()
        process = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    if service.kind == "prometheus":
        write_address_file(address_file(home, service.name), f"127.0.0.1:{port}", process.pid)
    record = ProcessRecord.of(process.pid)
    return _Started(service=service, process=process, record=record, log=log, log_offset=offset)


def _service_env(service: StackService, home: Path, port: int, peers: Mapping[str, str]) -> dict[str, str]:
    """The environment of a service: the caller's, plus its home, port and address file, and `peers`
    (the `ATELIER_<NAME>_ADDRESS` of the services started before it)."""
    project_root = str(Path(atelier.__file__).resolve().parent.parent)
    python_path = os.pathsep.join(p for p in (project_root, os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ,
        **peers,
        "ATELIER_HOME": str(home),
        service.env_var("home"): str(home),
        service.env_var("port"): str(port),
        service.env_var("address_file"): str(address_file(home, service.name)),
        "PYTHONPATH": python_path,
        "PYTHONUNBUFFERED": "1",
    }


def _wait_serving(home: Path, started: _Started, deadline: float, timeout: float) -> str:
    """Wait until the service has published its address and reports SERVING there; return the address."""
    name = started.service.name
    while True:
        code = started.process.poll()
        if code is not None:
            raise Unavailable(
                f"the {name} service exited with code {code} before it was serving; "
                f"last lines of {started.log}:\n{_log_tail(started)}"
            )
        published = read_address_file(address_file(home, name))
        if published is not None and _serving(started.service, published.address):
            return published.address
        if time.monotonic() > deadline:
            raise DeadlineExceeded(
                f"the {name} service was not serving after {timeout:g}s; "
                f"last lines of {started.log}:\n{_log_tail(started)}"
            )
        time.sleep(_POLL_SECONDS)


def _serving(service: StackService, address: str) -> bool:
    if service.kind == "prometheus":
        return prometheus.ready(address, timeout=0.5)
    return check_health(address, timeout=0.5) is Health.SERVING


def _log_tail(started: _Started) -> str:
    """The last lines the service wrote to its log in this run, indented."""
    try:
        with started.log.open("rb") as log:
            log.seek(started.log_offset)
            text = log.read().decode(errors="replace")
    except OSError as error:
        return f"  (log unreadable: {error})"
    lines = text.rstrip().splitlines()[-LOG_TAIL_LINES:]
    return "\n".join(f"  {line}" for line in lines) if lines else "  (the log is empty)"


def _wait_for_stop(stop: threading.Event, started: Sequence[_Started]) -> None:
    """Wait until `stop` is set (by SIGINT or SIGTERM); fail if a service exits by itself before that."""
    while not stop.wait(0.5):
        for item in started:
            code = item.process.poll()
            if code is not None and not stop.is_set():
                raise Unavailable(
                    f"the {item.service.name} service exited with code {code}; stopping the stack; "
                    f"last lines of {item.log}:\n{_log_tail(item)}"
                )


def _terminate(processes: Sequence[ProcessRecord], grace: float, kill_groups: bool = False) -> None:
    """SIGTERM each process, wait up to `grace` seconds for all to exit, then SIGKILL the rest (with
    `kill_groups`, the whole process group of those that lead one)."""
    for process in processes:
        _send(process.pid, signal.SIGTERM)
    if _wait_gone(processes, grace):
        return
    for process in processes:
        if process.running():
            _kill(process.pid, kill_groups)
    _wait_gone(processes, 5.0)


def _wait_gone(processes: Sequence[ProcessRecord], seconds: float) -> bool:
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
        time.sleep(_POLL_SECONDS)


def _send(pid: int, signum: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


def _kill(pid: int, group: bool) -> None:
    with suppress(ProcessLookupError, PermissionError):
        if group and os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)


def _refuse_running(home: Path, services: Sequence[StackService]) -> None:
    """Fail when any process of a stack in `home` still runs."""
    record = _running_record(home, services)
    running = [f"{name} pid {p.pid}" for name, p in record.services.items() if p.running()]
    if record.supervisor is not None and record.supervisor.running():
        running.insert(0, f"atelier up pid {record.supervisor.pid}")
    if running:
        raise FailedPrecondition(
            f"a stack is already running in {home} ({', '.join(running)}): "
            "stop it with `atelier down` or use another --home"
        )


def _running_record(home: Path, services: Sequence[StackService]) -> StackRecord:
    """The stack record, completed with services that published an address file but are not in it."""
    record = _read_stack(home) or StackRecord(supervisor=None, services={})
    for service in services:
        if service.name in record.services:
            continue
        published = read_address_file(address_file(home, service.name))
        pid = published.pid if published is not None else None
        if pid is not None and _runs_module(pid, service.module):
            record.services[service.name] = ProcessRecord(pid=pid, start_time=None)
    return record


def _runs_module(pid: int, module: str) -> bool:
    """Whether the process runs `python -m <module>` or the program `module` (True where its command
    line cannot be read)."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return not Path("/proc/self").exists()
    return module.encode() in arguments or Path(arguments[0].decode(errors="replace")).name == module


def _stack_file(home: Path) -> Path:
    return run_dir(home) / "stack.json"


def _write_stack(home: Path, supervisor: ProcessRecord | None, started: Sequence[_Started]) -> None:
    """Atomically record the processes of the stack in `run/stack.json`."""

    def entry(process: ProcessRecord) -> dict[str, Any]:
        return {"pid": process.pid, "start_time": process.start_time}

    content = {
        "supervisor": entry(supervisor) if supervisor else None,
        "services": {
            item.service.name: {
                **entry(item.record),
                "module": item.service.module,
                "log": str(item.log),
            }
            for item in started
        },
    }
    path = _stack_file(home)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(content, indent=2))
    os.replace(tmp, path)


def _read_stack(home: Path) -> StackRecord | None:
    """The processes recorded in `run/stack.json`, or None when there is no (readable) record."""
    try:
        content = json.loads(_stack_file(home).read_text())
        supervisor = content.get("supervisor")
        return StackRecord(
            supervisor=_process_record(supervisor) if supervisor else None,
            services={name: _process_record(entry) for name, entry in content.get("services", {}).items()},
        )
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _process_record(entry: Mapping[str, Any]) -> ProcessRecord:
    start_time = entry.get("start_time")
    return ProcessRecord(pid=int(entry["pid"]), start_time=None if start_time is None else int(start_time))


def _remove_run_files(
    home: Path, services: Sequence[StackService], extra: Mapping[str, ProcessRecord] | None = None
) -> None:
    """Remove the stack record and the address files of the services."""
    names = {s.name for s in services} | set(extra or {})
    for path in [_stack_file(home), *(address_file(home, name) for name in names)]:
        path.unlink(missing_ok=True)
    for name in names:
        prometheus.remove_targets(home, name)


def process_start_time(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (Linux), or None where that is unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return int(fields[19]) if len(fields) > 19 else None


@contextmanager
def _startup_lock(home: Path) -> Iterator[None]:
    """Hold `run/stack.lock`, so two `atelier up` in one home cannot start at the same time."""
    run_dir(home).mkdir(parents=True, exist_ok=True)
    with (run_dir(home) / "stack.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FailedPrecondition(f"another `atelier up` is starting a stack in {home}") from None
        yield


class _StopSignal:
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
def _signals(handler: Callable[[int, FrameType | None], Any]) -> Iterator[None]:
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
