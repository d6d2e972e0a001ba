"""The node agent: registers its node, heartbeats, and makes the node run what the scheduler says.

Each heartbeat reports every task with its state and gets back the tasks the node should run. New
ones are started (datasets fetched first, through the data service, into a cache shared by jobs);
running ones that are no longer listed are stopped with SIGTERM, a grace period, then SIGKILL.
The agent outlives its jobs' crashes: an exit is a status to report, nothing more.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import timestamp_pb2
from opentelemetry import propagate, trace
from opentelemetry.trace import Status, StatusCode

from atelier.client.scheduler import AgentClient
from atelier.errors import AtelierError, DeadlineExceeded, Unavailable
from atelier.scheduler.v1 import agent_service_pb2 as agent
from atelier.scheduler.v1 import resources_pb2 as pb
from services.scheduler.agent.discovery import GpuDiscovery
from services.scheduler.agent.processes import TaskProcess
from services.scheduler.agent.telemetry.exporter import Holder

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("atelier.agent")
TaskKey = tuple[str, int, int]
DatasetFetcher = Callable[[str, Path, str], Path]
"""(version name, cache root, the job's token or '') -> directory holding that version's files, fetched
when missing (as the job: the node's own token has no role in the job's project)."""


@dataclass
class AgentConfig:
    """Who the agent is and where it works."""

    node_id: str
    address: str
    work_dir: Path
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    memory_bytes: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    log_flush_seconds: float = 0.25


@dataclass
class LocalTask:
    """A task as this agent knows it."""

    spec: agent.Task
    state: int = agent.TASK_STATE_STARTING
    process: TaskProcess | None = None
    exit_code: int = 0
    message: str = ""
    stopping: bool = False

    def status(self) -> agent.TaskStatus:
        return agent.TaskStatus(
            job=self.spec.job,
            attempt=self.spec.attempt,
            rank=self.spec.rank,
            state=self.state,  # type: ignore[arg-type]
            exit_code=self.exit_code,
            message=self.message,
        )


class Agent:
    """One node's agent. `run()` blocks until `stop` is set, then stops every task."""

    def __init__(
        self, config: AgentConfig, discovery: GpuDiscovery, client: AgentClient, fetch: DatasetFetcher
    ) -> None:
        self.config = config
        self.discovery = discovery
        self.client = client
        self.fetch = fetch
        self.name = f"nodes/{config.node_id}"
        self.interval = 1.0
        self._tasks: dict[TaskKey, LocalTask] = {}
        self._lock = threading.Lock()
        self._logs: dict[str, list[pb.LogLine]] = {}
        self._logs_lock = threading.Lock()

    # The loop ---------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.register()
                break
            except (Unavailable, DeadlineExceeded) as error:  # the scheduler may start after its agents
                log.warning("could not register (retrying): %s", error)
                stop.wait(2.0)
            # Any other refusal (a bad node name, no permission) would be the same on every try: it ends the agent.
        shipper = threading.Thread(target=self._ship_logs_until, args=(stop,), daemon=True, name="agent-logs")
        shipper.start()
        try:
            while not stop.is_set():
                try:
                    self.beat()
                except AtelierError as error:
                    log.warning("heartbeat failed: %s", error)
                stop.wait(self.interval)
        finally:
            self.stop_all()
            self._ship_logs()

    def holders(self) -> dict[int, Holder]:
        """Card index -> the job holding it, for every task starting or running here."""
        held = {}
        with self._lock:
            for task in self._tasks.values():
                if task.state in (agent.TASK_STATE_STARTING, agent.TASK_STATE_RUNNING):
                    project = task.spec.job.split("/")[1] if task.spec.job.count("/") >= 3 else ""
                    for card in task.spec.cards:
                        held[card] = Holder(task.spec.job, project, task.spec.user)
        return held

    def register(self) -> pb.Node:
        found = self.discovery.inventory()
        node = pb.Node(
            address=self.config.address,
            cards=found.cards,
            links=found.links,
            cpus=self.config.cpus,
            memory_bytes=self.config.memory_bytes or _host_memory(),
            labels=self.config.labels,
            discovery=found.source,
            driver_version=found.driver_version,
        )
        registered = self.client.register(node, self.config.node_id)
        log.info("registered %s with %d cards (%s)", registered.name, len(found.cards), found.source)
        return registered

    def beat(self) -> None:
        self._enforce_limits()
        with self._lock:
            reported = list(self._tasks.values())
            statuses = [t.status() for t in reported]
        response = self.client.heartbeat(self.name, self.discovery.refresh(), statuses)
        if not response.registered:
            self.register()
            return
        self.interval = response.interval.ToNanoseconds() / 1e9 or self.interval
        self._reconcile(list(response.tasks), reported)

    def _reconcile(self, desired: list[agent.Task], reported: list[LocalTask]) -> None:
        wanted = {(t.job, t.attempt, t.rank): t for t in desired}
        with self._lock:
            # Ended tasks the scheduler has now heard about are forgotten.
            for task in reported:
                key = (task.spec.job, task.spec.attempt, task.spec.rank)
                if task.state in (agent.TASK_STATE_EXITED, agent.TASK_STATE_FAILED_TO_START) and key not in wanted:
                    self._tasks.pop(key, None)
            for key, task in list(self._tasks.items()):
                if (
                    key not in wanted
                    and not task.stopping
                    and task.state
                    in (
                        agent.TASK_STATE_STARTING,
                        agent.TASK_STATE_RUNNING,
                    )
                ):
                    task.stopping = True
                    threading.Thread(target=self._stop, args=(task, "stopped by the scheduler"), daemon=True).start()
            for key, spec in wanted.items():
                if key not in self._tasks:
                    self._tasks[key] = LocalTask(spec)
                    threading.Thread(target=self._start, args=(self._tasks[key],), daemon=True).start()

    # Starting and stopping ----------------------------------------------------------------------

    def _start(self, task: LocalTask) -> None:
        """Fetch the task's datasets and start its process, in a span of the submission's trace; the
        process gets that span as its TRACEPARENT, so a job's own spans join the same trace."""
        spec = task.spec
        parent = propagate.extract({"traceparent": spec.env["TRACEPARENT"]}) if "TRACEPARENT" in spec.env else None
        attributes: dict[str, str | int] = {
            "atelier.job": spec.job,
            "atelier.attempt": spec.attempt,
            "atelier.rank": spec.rank,
        }
        with _tracer.start_as_current_span("agent.start_task", context=parent, attributes=attributes) as span:
            try:
                directory = self._task_dir(spec)
                env = self._environment(spec, directory)
                if task.stopping:
                    return
                carrier: dict[str, str] = {}
                propagate.inject(carrier)
                if "traceparent" in carrier:
                    env["TRACEPARENT"] = carrier["traceparent"]
                # A relative working directory is inside the job's own directory (an absolute one wins).
                workdir = Path(directory) / spec.working_directory
                process = TaskProcess(list(spec.argv), env, workdir, self._printer(spec))
            except (OSError, AtelierError) as error:
                span.set_status(Status(StatusCode.ERROR, str(error)))
                self._system(spec, f"could not start: {error}")
                with self._lock:
                    task.state, task.message = agent.TASK_STATE_FAILED_TO_START, str(error)
                return
        with self._lock:
            task.process = process
            task.state = agent.TASK_STATE_RUNNING
        self._system(spec, f"started pid {process.pid} on cards {list(spec.cards)}: {' '.join(spec.argv)}")
        threading.Thread(target=self._wait, args=(task,), daemon=True).start()

    def _task_dir(self, spec: agent.Task) -> Path:
        _, project, _, job = spec.job.split("/")
        directory = self.config.work_dir / "jobs" / project / job / f"attempt-{spec.attempt}" / f"rank-{spec.rank}"
        (directory / "data").mkdir(parents=True, exist_ok=True)
        return directory

    def _environment(self, spec: agent.Task, directory: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("ATELIER_TOKEN", None)  # the node's own token never reaches a job; the scheduler's job token may
        env.update(spec.env)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(c) for c in spec.cards)
        data_dir = directory / "data"
        env["ATELIER_DATA_DIR"] = str(data_dir)
        for dataset in spec.datasets:
            self._system(spec, f"fetching {dataset.version}")
            cached = self.fetch(dataset.version, self.config.work_dir / "datasets", spec.env.get("ATELIER_TOKEN", ""))
            link = data_dir / dataset.path
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(cached, target_is_directory=True)
        return env

    def _wait(self, task: LocalTask) -> None:
        assert task.process is not None
        while (code := task.process.poll()) is None:
            time.sleep(0.1)
        with self._lock:
            task.exit_code = code
            if task.stopping and not task.message:
                task.message = "stopped by the scheduler"
            task.state = agent.TASK_STATE_EXITED
        self._system(task.spec, f"exited with {code}" + (f" ({task.message})" if task.message else ""))

    def _stop(self, task: LocalTask, message: str) -> None:
        with self._lock:
            task.message = task.message or message
        self._system(task.spec, f"stopping: {task.message}")
        deadline = time.monotonic() + 60
        while task.process is None and task.state == agent.TASK_STATE_STARTING and time.monotonic() < deadline:
            time.sleep(0.05)  # still fetching data; stop it once it has started
        if task.process is not None:
            task.process.stop(task.spec.grace_period.ToNanoseconds() / 1e9)
        elif task.state == agent.TASK_STATE_STARTING:
            with self._lock:
                task.state, task.exit_code = agent.TASK_STATE_EXITED, -15

    def _enforce_limits(self) -> None:
        with self._lock:
            running = [t for t in self._tasks.values() if t.process is not None and not t.stopping]
        for task in running:
            limit = task.spec.max_run_time.ToNanoseconds() / 1e9
            if limit and task.process is not None and time.monotonic() - task.process.started > limit:
                task.stopping = True
                threading.Thread(
                    target=self._stop, args=(task, f"exceeded max run time of {limit:g} s"), daemon=True
                ).start()

    def stop_all(self) -> None:
        with self._lock:
            tasks = [t for t in self._tasks.values() if t.process is not None and t.process.poll() is None]
        for task in tasks:
            task.stopping = True
            self._stop(task, "agent shutting down")

    # Logs -------------------------------------------------------------------------------------

    def _printer(self, spec: agent.Task) -> Callable[[int, str], None]:
        def on_line(stream: int, text: str) -> None:
            self._queue_line(spec, stream, text)

        return on_line

    def _system(self, spec: agent.Task, text: str) -> None:
        log.info("%s rank %d: %s", spec.job, spec.rank, text)
        self._queue_line(spec, pb.LOG_STREAM_SYSTEM, f"[agent {self.config.node_id}] {text}")

    def _queue_line(self, spec: agent.Task, stream: int, text: str) -> None:
        stamp = timestamp_pb2.Timestamp()
        stamp.GetCurrentTime()
        line = pb.LogLine(attempt=spec.attempt, rank=spec.rank, stream=stream, time=stamp, text=text)  # type: ignore[arg-type]
        with self._logs_lock:
            self._logs.setdefault(spec.job, []).append(line)

    def _ship_logs_until(self, stop: threading.Event) -> None:
        while not stop.wait(self.config.log_flush_seconds):
            self._ship_logs()

    def _ship_logs(self) -> None:
        with self._logs_lock:
            pending, self._logs = self._logs, {}
        for job, lines in pending.items():
            for start in range(0, len(lines), 2000):
                try:
                    self.client.write_logs(job, lines[start : start + 2000])
                except AtelierError as error:
                    log.warning("could not ship %d log lines of %s: %s", len(lines), job, error)
                    with self._logs_lock:  # keep them for the next round
                        self._logs.setdefault(job, [])[:0] = lines[start:]
                    break


def _host_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0
