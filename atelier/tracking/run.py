"""`atelier.start_run`: tracking a training script's run from its first line to its last.

    with atelier.start_run(experiment="digits", params={"lr": 0.01}, inputs=["digits@v2"]) as run:
        for step in range(steps):
            run.log_metrics({"loss": loss}, step=step)
        run.log_model(model, example_input, name="digits")

Metrics are buffered and sent in the background; an exception inside the block (or the script
dying with one) marks the run FAILED; a script killed outright is marked FAILED by the registry
once its heartbeat stops.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from atelier.client import DataClient, RegistryClient
from atelier.datasets.push import store_artifact
from atelier.errors import AtelierError
from atelier.names import default_project
from atelier.registry.v1 import resources_pb2 as pb
from atelier.stack.addresses import service_address
from atelier.tracking.buffer import BufferReport, MetricBuffer
from atelier.tracking.environment import environment, git_state

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 60.0


class ActiveRun:
    """A run in progress; use it as a context manager or call `end()`."""

    def __init__(self, registry: RegistryClient, data: DataClient, run: pb.Run, project: str) -> None:
        self.registry = registry
        self.data = data
        self.project = project
        self.run = run
        self.name = run.name
        self.report: BufferReport | None = None
        self._buffer = MetricBuffer(lambda columns: self._send(columns))
        self._ended = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name="atelier-heartbeat", daemon=True)
        self._heartbeat.start()
        atexit.register(self._at_exit)

    def _send(self, columns: Any) -> None:
        from atelier.registry.v1 import registry_service_pb2 as rpc

        request = rpc.LogRunDataRequest(run=self.name, columns=columns)
        self.registry.call(self.registry.stub.LogRunData, request, timeout=10)

    def _beat(self) -> None:
        while not self._ended.wait(HEARTBEAT_SECONDS):
            try:
                self.registry.log(self.name, timeout=5)
            except AtelierError as error:
                log.debug("heartbeat of %s failed: %s", self.name, error)

    # Logging ----------------------------------------------------------------------------------

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        """Record metric values at a step; returns at once (sent in the background)."""
        self._buffer.add(metrics, step)

    def log_metric(self, key: str, value: float, step: int = 0) -> None:
        self._buffer.add({key: value}, step)

    def log_params(self, params: dict[str, Any]) -> None:
        """Record hyper-parameters (each once; logging another value for one is refused)."""
        self.registry.log(self.name, params={k: str(v) for k, v in params.items()})

    def set_tags(self, tags: dict[str, str]) -> None:
        self.registry.log(self.name, tags=dict(tags))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> pb.Run:
        """Store a file or directory in the data service and record it on the run."""
        source = Path(path)
        artifact = store_artifact(self.data, self.project, source)
        return self.registry.add_artifact(
            self.name, artifact_path or source.name, artifact.name, artifact.total_size_bytes
        )

    def log_model(
        self,
        module: Any,
        example_input: Any,
        name: str,
        *,
        format: str = "torchscript",
        metrics: dict[str, float] | None = None,
        parent: str = "",
        description: str = "",
    ) -> pb.ModelVersion:
        """Serialize a torch module, store it and register it as a new version of model `name`.

        `format` is `torchscript`, `export` (torch.export) or `state_dict`. The version's lineage
        (datasets, code, params) comes from this run; its metrics default to the run's latest.
        """
        from atelier.tracking.models import register_model

        self.flush()
        return register_model(
            self, module, example_input, name, format=format, metrics=metrics, parent=parent, description=description
        )

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait (at most `timeout`) until the metrics logged so far are sent; False on timeout."""
        return self._buffer.flush(timeout)

    # Ending -----------------------------------------------------------------------------------

    def end(self, state: int = pb.RUN_STATE_FINISHED, message: str = "", timeout: float = 30.0) -> BufferReport:
        """Send what is buffered, then mark the run FINISHED (or the given state)."""
        if self._ended.is_set():
            return self.report or BufferReport(0, 0)
        self._ended.set()
        atexit.unregister(self._at_exit)
        self.report = self._buffer.close(timeout)
        if self.report.lost:
            message = (message + "; " if message else "") + f"{self.report.lost} metric points were lost"
            log.warning("run %s: %d metric points could not be sent", self.name, self.report.lost)
        try:
            self.registry.update_run(
                pb.Run(name=self.name, state=state, state_message=message),  # type: ignore[arg-type]
                ["state", "state_message"],
            )
        except AtelierError as error:
            log.warning("could not mark run %s as ended: %s", self.name, error)
        return self.report

    def _at_exit(self) -> None:
        failed = getattr(sys, "last_value", None) is not None
        self.end(pb.RUN_STATE_FAILED if failed else pb.RUN_STATE_FINISHED, "the script exited" if failed else "")

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if error is None:
            self.end()
        elif isinstance(error, KeyboardInterrupt):
            self.end(pb.RUN_STATE_KILLED, "interrupted")
        else:
            self.end(pb.RUN_STATE_FAILED, f"{type(error).__name__}: {error}")


def start_run(
    experiment: str,
    params: dict[str, Any] | None = None,
    *,
    project: str | None = None,
    inputs: list[str] | None = None,
    tags: dict[str, str] | None = None,
    name: str = "",
    job: str = "",
    parent_run: str = "",
    capture_code: bool = True,
) -> ActiveRun:
    """Start a run of `experiment` (created if missing) in `project` ($ATELIER_PROJECT or `default`).

    `inputs` are dataset version references (`digits@v2`) checked by the registry; the code version
    (git commit, branch, remote and the uncommitted diff, stored as an artifact) and the
    environment are recorded.
    """
    project = project or default_project()
    data = DataClient.at(service_address("data"))
    registry = RegistryClient.at(service_address("registry"))
    data.ensure_project(project)
    run = pb.Run(
        display_name=name,
        params={k: str(v) for k, v in (params or {}).items()},
        tags=tags or {},
        inputs=inputs or [],
        job=job or os.environ.get("ATELIER_JOB", ""),
        parent_run=parent_run,
        user=os.environ.get("ATELIER_USER") or os.environ.get("USER", ""),
        command=[sys.executable, *sys.argv],
        environment=environment(),
    )
    if capture_code:
        state = git_state()
        if state is not None:
            run.code.CopyFrom(state.code)
            if state.code.dirty and state.diff:
                run.code.diff_artifact = _store_diff(data, project, state.diff)
    created = registry.create_run(f"projects/{project}/experiments/{experiment}", run)
    return ActiveRun(registry, data, created, project)


def _store_diff(data: DataClient, project: str, diff: bytes) -> str:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "uncommitted.diff"
        path.write_bytes(diff)
        return store_artifact(data, project, path).name
