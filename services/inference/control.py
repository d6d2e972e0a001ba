"""Deployments end to end: validate, resolve through the registry, store, load, update, delete.

The one place the management API (and RepositoryModelLoad/Unload) changes what is served.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from atelier.client.links import Links
from atelier.errors import AtelierError, InvalidArgument, NotFound, Unavailable
from atelier.inference.v1 import resources_pb2 as pb
from atelier.names import parse_name
from atelier.runtime.server import BlockingRunner
from services.inference import loader
from services.inference.deployments import Deployments, DeploymentView
from services.inference.repository import ModelRepository
from services.inference.runner import ModelRunner
from services.inference.signature import from_registry, without_state
from services.inference.spec import DeploymentSpec, check_device_available, validated

log = logging.getLogger(__name__)
UPDATABLE = ("model", "device", "instances", "batching", "queue", "sequences", "description")


class ModelLoader:
    """What the repository calls to load a deployment: resolve its reference anew (so an alias
    is followed across restarts), fetch and verify the artifact, load it on the device, warm up."""

    def __init__(self, links: Links, cache: Path, torch_threads: int = 0) -> None:
        self.links = links
        self.cache = cache
        self.torch_threads = torch_threads

    def __call__(self, view: DeploymentView) -> tuple[loader.ResolvedModel, ModelRunner]:
        if self.torch_threads:
            import torch

            if torch.get_num_threads() != self.torch_threads:
                torch.set_num_threads(self.torch_threads)
        resolved = loader.resolve(self.links.registry(), view.model_ref, view.project)
        path = loader.fetch(self.links.data(), resolved.version, self.cache)
        return resolved, loader.load(path, resolved.version, view.spec.device)


class DeploymentControl:
    """Create, read, list, update and delete deployments, keeping the repository in step."""

    def __init__(
        self, deployments: Deployments, repository: ModelRepository, links: Links, run: BlockingRunner
    ) -> None:
        self.deployments = deployments
        self.repository = repository
        self.links = links
        self.run = run

    async def create(
        self, parent: str, deployment_id: str, model_ref: str, spec: DeploymentSpec, description: str
    ) -> DeploymentView:
        project = parse_name(parent, "projects/{project}", "parent")["project"]
        if not model_ref:
            raise InvalidArgument(
                "deployment.model is required: MODEL@vN, MODEL@latest or MODEL@ALIAS", metadata={"field": "model"}
            )
        spec = validated(spec)
        check_device_available(spec.device)
        resolved = await self.run(loader.resolve, self.links.registry(), model_ref, project)
        _check_state(resolved, spec)
        view = await self.run(
            self.deployments.create, project, deployment_id, model_ref, resolved.version.name, spec, description
        )
        self.repository.start_loading(view)
        return view

    async def get(self, name: str) -> DeploymentView:
        return await self.run(self.deployments.get, name)

    async def list_deployments(self, parent: str, page_size: int, token: str) -> tuple[list[DeploymentView], str]:
        return await self.run(self.deployments.list_deployments, parent, page_size, token)

    async def update(
        self, name: str, paths: list[str], model_ref: str, spec: DeploymentSpec, description: str
    ) -> DeploymentView:
        """Apply the fields named in `paths` (from `spec` and the other arguments)."""
        if not paths:
            raise InvalidArgument(f"update_mask is empty; fields are {', '.join(UPDATABLE)}")
        unknown = [p for p in paths if p not in _SPEC_FIELDS and p not in ("model", "description")]
        if unknown:
            raise InvalidArgument(
                f"cannot update {', '.join(unknown)}; fields are {', '.join(UPDATABLE)} "
                "(or one field of batching, queue or sequences, e.g. batching.max_batch_size)",
                metadata={"field": "update_mask"},
            )
        current = await self.get(name)
        new_spec = _merge(current.spec, spec, paths)
        new_ref = model_ref if "model" in paths else current.model_ref
        version = current.model_version
        reload = set(paths) - {"description"}
        if reload:
            new_spec = validated(new_spec)
            check_device_available(new_spec.device)
            resolved = await self.run(loader.resolve, self.links.registry(), new_ref, current.project)
            _check_state(resolved, new_spec)
            version = resolved.version.name
        view = await self.run(
            self.deployments.update,
            name,
            model_ref=new_ref,
            model_version=version,
            spec=new_spec,
            description=description if "description" in paths else current.description,
            state=pb.DEPLOYMENT_STATE_LOADING if reload else current.state,
        )
        if reload:
            self.repository.start_loading(view)
        return view

    async def delete(self, name: str) -> None:
        view = await self.run(self.deployments.delete, name)
        await self.repository.unload(view.deployment_id, forget=True)

    async def _by_model(self, model: str) -> DeploymentView:
        view = await self.run(self.deployments.by_id, model)
        if view is None:
            raise NotFound(f"Request for unknown model: '{model}' is not found", metadata={"model": model})
        return view

    async def load(self, model: str) -> None:
        """(Re)load a deployment by its model name and wait for the outcome (RepositoryModelLoad)."""
        view = await self._by_model(model)
        await self.run(self.deployments.set_state, model, pb.DEPLOYMENT_STATE_LOADING)
        await self.repository.start_loading(view)
        status = self.repository.status(model)
        if status is None or status.state != pb.DEPLOYMENT_STATE_READY:
            reason = status.reason if status else "deleted while loading"
            raise Unavailable(f"failed to load '{model}': {reason}", metadata={"model": model})

    async def unload(self, model: str) -> None:
        """Stop serving a deployment but keep it (RepositoryModelUnload)."""
        await self._by_model(model)
        await self.repository.unload(model)
        await self.run(self.deployments.set_state, model, pb.DEPLOYMENT_STATE_UNLOADED, "unloaded on request")

    async def follow_aliases(self) -> None:
        """Reload every READY deployment whose alias (or `latest`) now resolves to another version.

        The new version loads and warms up while the old one serves; then requests switch over
        and the old version drains, so callers see no failure.
        """
        for view in await self.run(self.deployments.all):
            served = self.repository.status(view.deployment_id)
            if view.state != pb.DEPLOYMENT_STATE_READY or served is None or not served.version:
                continue
            if not loader.follows(view.model_ref, view.project):
                continue
            try:
                resolved = await self.run(loader.resolve, self.links.registry(), view.model_ref, view.project)
            except AtelierError as error:
                log.warning("cannot follow %s for %s: %s", view.model_ref, view.name, error)
                continue
            if resolved.number != served.version:
                log.info("%s moved to %s; reloading %s", view.model_ref, resolved.version.name, view.name)
                await self.repository.start_loading(view)

    async def restore(self) -> None:
        """At start: load every deployment that was not unloaded on purpose."""
        for view in await self.run(self.deployments.all):
            if view.state != pb.DEPLOYMENT_STATE_UNLOADED:
                self.repository.start_loading(view)


def _check_state(resolved: loader.ResolvedModel, spec: DeploymentSpec) -> None:
    """Refuse state tensors the model does not have (InvalidArgument naming the ones it has)."""
    signature = from_registry(resolved.version.signature, resolved.version.name)
    without_state(signature, spec.state_input, spec.state_output, resolved.version.name)


# Update-mask paths (the API's field names) -> the DeploymentSpec fields they set.
_SPEC_FIELDS: dict[str, tuple[str, ...]] = {
    "device": ("device",),
    "instances": ("instances",),
    "batching.max_batch_size": ("max_batch_size",),
    "batching.preferred_batch_sizes": ("preferred_batch_sizes",),
    "batching.max_queue_delay_us": ("max_queue_delay_us",),
    "batching.priority_levels": ("priority_levels",),
    "batching.default_priority": ("default_priority",),
    "queue.max_queue_size": ("max_queue_size",),
    "queue.default_timeout_us": ("default_timeout_us",),
    "sequences.idle_timeout_us": ("sequence_idle_timeout_us",),
    "sequences.max_sequences": ("max_sequences",),
    "sequences.state_input": ("state_input",),
    "sequences.state_output": ("state_output",),
}
_SPEC_FIELDS["batching"] = tuple(n for p, f in _SPEC_FIELDS.items() if p.startswith("batching.") for n in f)
_SPEC_FIELDS["queue"] = tuple(n for p, f in _SPEC_FIELDS.items() if p.startswith("queue.") for n in f)
_SPEC_FIELDS["sequences"] = tuple(n for p, f in _SPEC_FIELDS.items() if p.startswith("sequences.") for n in f)


def _merge(current: DeploymentSpec, given: DeploymentSpec, paths: list[str]) -> DeploymentSpec:
    """`current` with the fields named by the mask's `paths` taken from `given` (a group path
    such as `batching` takes the whole group, `batching.max_batch_size` one field)."""
    changes = {name: getattr(given, name) for path in paths for name in _SPEC_FIELDS.get(path, ())}
    return replace(current, **changes)
