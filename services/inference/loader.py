"""From a registry reference to a warmed-up model: resolve, fetch, verify, load, warm up.

The registry resolves `MODEL@vN|latest|ALIAS` to a version; the data service streams the version's
artifact, which is kept in a cache by digest and checked against the version's `artifact_digest`
before torch reads it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atelier.client import DataClient, RegistryClient
from atelier.datasets.pull import file_digest
from atelier.errors import DataLoss, FailedPrecondition
from atelier.names import ModelRef, parse_model_ref
from atelier.registry.v1 import resources_pb2 as registry
from services.inference.runner import ModelRunner
from services.inference.signature import Signature, from_registry

log = logging.getLogger(__name__)
SERVABLE = {registry.MODEL_FORMAT_TORCHSCRIPT: "TORCHSCRIPT", registry.MODEL_FORMAT_TORCH_EXPORT: "TORCH_EXPORT"}


@dataclass(frozen=True)
class ResolvedModel:
    """A registry reference and the version it resolved to."""

    ref: ModelRef
    version: registry.ModelVersion

    @property
    def number(self) -> int:
        return int(self.version.number)


def follows(text: str, project: str) -> bool:
    """Whether a reference moves (an alias or `latest`) rather than naming one version."""
    ref = parse_model_ref(text, project).ref
    return not (ref.startswith("v") and ref[1:].isdigit())


def resolve(client: RegistryClient, text: str, project: str) -> ResolvedModel:
    """Resolve `MODEL@REF` (the registry raises NotFound naming what is missing)."""
    ref = parse_model_ref(text, project)
    version = client.get_version(ref.version_name)
    if version.format not in SERVABLE:
        fmt = registry.ModelFormat.Name(version.format).removeprefix("MODEL_FORMAT_")
        raise FailedPrecondition(
            f"{version.name} is stored as {fmt}, which cannot be served; formats served are "
            f"{', '.join(SERVABLE.values())} (log_model(format='torchscript' or 'export'))",
            metadata={"resource": version.name, "format": fmt},
        )
    from_registry(version.signature, version.name)
    return ResolvedModel(ref, version)


def fetch(client: DataClient, version: registry.ModelVersion, cache: Path) -> Path:
    """The version's model file in the cache, fetched when missing, its digest verified."""
    files = list(client.list_files(version.artifact))
    if len(files) != 1:
        raise FailedPrecondition(
            f"{version.name}: artifact {version.artifact} holds {len(files)} files; a served model is one file",
            metadata={"resource": version.name},
        )
    entry = files[0]
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{version.artifact_digest or entry.digest}{Path(entry.path).suffix}"
    if not (target.exists() and _verified(target, version)):
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        with open(partial, "wb") as handle:
            for piece in client.read_file(version.artifact, entry.path):
                handle.write(piece)
        if not _verified(partial, version):
            got = file_digest(partial)
            partial.unlink()
            raise DataLoss(
                f"{version.name}: model file digest {got} does not match the registered {version.artifact_digest}",
                metadata={"resource": version.name},
            )
        os.replace(partial, target)
    return target


def _verified(path: Path, version: registry.ModelVersion) -> bool:
    if not version.artifact_digest:
        log.warning("%s has no artifact_digest; its model file is not verified", version.name)
        return True
    return file_digest(path) == version.artifact_digest


def load(path: Path, version: registry.ModelVersion, device: str) -> ModelRunner:
    """Load the model file on `device` and run it once on zeros (the warm-up)."""
    import torch

    signature = from_registry(version.signature, version.name)
    if version.format == registry.MODEL_FORMAT_TORCHSCRIPT:
        module: Any = torch.jit.load(str(path), map_location=device)  # type: ignore[no-untyped-call]
        module.eval()
    else:
        module = torch.export.load(str(path)).module()
        if device != "cpu":
            module = module.to(device)
    runner = ModelRunner(module, device, signature)
    warm_up(runner, signature)
    return runner


def warm_up(runner: ModelRunner, signature: Signature) -> None:
    """One run with a batch of one (dynamic dimensions 1), so the first request pays no set-up."""
    inputs = []
    for spec in signature.inputs:
        shape = tuple(1 if d < 0 else d for d in spec.shape)
        inputs.append(np.zeros(shape, dtype=spec.datatype.numpy))
    runner.run(inputs)
