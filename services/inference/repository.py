"""The models this server holds: loading in the background, swapping in, unloading, lookup.

Each deployment has at most one served version at a time. A load runs off the event loop; when it
succeeds the new version's batcher takes the traffic and the previous one (if any) is stopped.
Statistics are kept per deployment and version across reloads, as Triton keeps them per version.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from atelier.errors import AtelierError, NotFound, Unavailable
from atelier.inference.v1 import resources_pb2 as pb
from atelier.runtime.server import BlockingRunner
from services.inference.batcher import Batcher
from services.inference.deployments import DeploymentView
from services.inference.loader import SERVABLE, ResolvedModel
from services.inference.runner import ModelRunner
from services.inference.signature import Signature, without_state
from services.inference.spec import DeploymentSpec
from services.inference.statistics import ModelStatistics
from services.inference.tracing import InferenceSpans

log = logging.getLogger(__name__)
LoadModel = Callable[[DeploymentView], tuple[ResolvedModel, ModelRunner]]
RecordState = Callable[[str, int, str, str], None]
"""(deployment id, state, reason, resolved version name) -> persisted."""
STATE_NAMES: dict[int, str] = {
    pb.DEPLOYMENT_STATE_LOADING: "LOADING",
    pb.DEPLOYMENT_STATE_READY: "READY",
    pb.DEPLOYMENT_STATE_FAILED: "FAILED",
    pb.DEPLOYMENT_STATE_UNLOADED: "UNLOADED",
}


@dataclass
class Served:
    """A loaded version of a deployment, taking requests."""

    deployment_id: str
    project: str
    version: int
    version_name: str
    format: str
    signature: Signature
    spec: DeploymentSpec
    batcher: Batcher
    statistics: ModelStatistics


@dataclass
class Status:
    """Where a deployment's model is."""

    state: int
    reason: str = ""
    version: int = 0


class ModelRepository:
    """Served models by deployment id (the model name clients use)."""

    def __init__(
        self, load_model: LoadModel, record_state: RecordState, run: BlockingRunner, spans: InferenceSpans | None = None
    ) -> None:
        self._load_model = load_model
        self.spans = spans or InferenceSpans()
        self._record_state = record_state
        self._run = run
        self._served: dict[str, Served] = {}
        self._status: dict[str, Status] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._statistics: dict[tuple[str, int], ModelStatistics] = {}

    # Loading ---------------------------------------------------------------------------------

    def start_loading(self, view: DeploymentView) -> asyncio.Task[None]:
        """Load (or reload) a deployment's model in the background; the task ends when it is done."""
        previous = self._tasks.get(view.deployment_id)
        self._status.setdefault(view.deployment_id, Status(pb.DEPLOYMENT_STATE_LOADING))
        if view.deployment_id not in self._served:
            self._status[view.deployment_id] = Status(pb.DEPLOYMENT_STATE_LOADING)
        task = asyncio.create_task(self._load(view, previous), name=f"load-{view.deployment_id}")
        self._tasks[view.deployment_id] = task
        return task

    async def _load(self, view: DeploymentView, previous: asyncio.Task[None] | None) -> None:
        if previous is not None and not previous.done():
            await asyncio.gather(previous, return_exceptions=True)
        name = view.deployment_id
        try:
            resolved, runner = await self._run(self._load_model, view)
        except Exception as error:  # noqa: BLE001 - any loading failure is the deployment's state
            reason = error.message if isinstance(error, AtelierError) else f"{type(error).__name__}: {error}"
            log.warning("deployment %s failed to load: %s", name, reason)
            self._status[name] = Status(pb.DEPLOYMENT_STATE_FAILED, reason)
            await self._run(self._record_state, name, pb.DEPLOYMENT_STATE_FAILED, reason, "")
            return
        statistics = self._statistics.setdefault((name, resolved.number), ModelStatistics())
        spec = view.spec
        public = without_state(runner.signature, spec.state_input, spec.state_output, resolved.version.name)
        batcher = Batcher(name, runner, view.spec, statistics, resolved.number, self.spans)
        batcher.start()
        old = self._served.get(name)
        self._served[name] = Served(
            deployment_id=name,
            project=view.project,
            version=resolved.number,
            version_name=resolved.version.name,
            format=SERVABLE[resolved.version.format],
            signature=public,
            spec=view.spec,
            batcher=batcher,
            statistics=statistics,
        )
        self._status[name] = Status(pb.DEPLOYMENT_STATE_READY, "", resolved.number)
        log.info("deployment %s serves %s", name, resolved.version.name)
        await self._run(self._record_state, name, pb.DEPLOYMENT_STATE_READY, "", resolved.version.name)
        if old is not None:
            # New requests already go to the new version; the old one finishes what it holds.
            await self._run(old.batcher.drain)

    async def unload(self, deployment_id: str, *, forget: bool = False) -> None:
        """Stop serving a deployment (queued requests fail); `forget` drops it altogether."""
        task = self._tasks.pop(deployment_id, None)
        if task is not None and not task.done():
            await asyncio.gather(task, return_exceptions=True)
        served = self._served.pop(deployment_id, None)
        if forget:
            self._status.pop(deployment_id, None)
            for key in [k for k in self._statistics if k[0] == deployment_id]:
                del self._statistics[key]
        else:
            self._status[deployment_id] = Status(pb.DEPLOYMENT_STATE_UNLOADED, "unloaded on request")
        if served is not None:
            await self._run(served.batcher.stop)

    async def close(self) -> None:
        for name in list(self._served):
            served = self._served.pop(name)
            await self._run(served.batcher.stop)
        for task in self._tasks.values():
            task.cancel()

    # Lookup ----------------------------------------------------------------------------------

    def status(self, deployment_id: str) -> Status | None:
        return self._status.get(deployment_id)

    def served(self) -> list[Served]:
        return list(self._served.values())

    def served_project(self, deployment_id: str) -> str | None:
        """The project of a deployment this server serves now; None when it serves none by that id."""
        served = self._served.get(deployment_id)
        return None if served is None else served.project

    def known(self) -> dict[str, Status]:
        return dict(self._status)

    def get(self, model: str, version: str = "") -> Served:
        """The served version a request names, worded as Triton words unknown models."""
        served = self._served.get(model)
        status = self._status.get(model)
        if served is None:
            if status is None:
                raise NotFound(f"Request for unknown model: '{model}' is not found", metadata={"model": model})
            detail = f": {status.reason}" if status.reason else ""
            raise Unavailable(
                f"model '{model}' is not ready: it is {STATE_NAMES.get(status.state, 'UNKNOWN')}{detail}",
                metadata={"model": model},
            )
        if version and version != str(served.version):
            raise NotFound(
                f"Request for unknown model: '{model}' version {version} is not found; it serves version "
                f"{served.version}",
                metadata={"model": model, "version": version},
            )
        return served

    def statistics(self, model: str = "", version: str = "") -> list[tuple[str, int, ModelStatistics]]:
        """Statistics of every version kept (of one model, or every model)."""
        if model and model not in {name for name, _ in self._statistics}:
            self.get(model)  # raises the not-found or not-ready error
        found = [
            (name, number, stats)
            for (name, number), stats in sorted(self._statistics.items())
            if (not model or name == model) and (not version or str(number) == version)
        ]
        if model and version and not found:
            raise NotFound(
                f"Request for unknown model: '{model}' version {version} is not found",
                metadata={"model": model, "version": version},
            )
        return found
