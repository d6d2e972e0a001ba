"""Registering model versions, one (CreateModelVersion) or a batch (BatchCreateModelVersions), by
one path: each requested version is checked and its lineage resolved, then all are written
together by the group writer, all or none."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf import json_format

from atelier.errors import AtelierError, InvalidArgument
from atelier.names import parse_name
from atelier.registry.v1 import resources_pb2 as pb
from atelier.runtime.server import BlockingRunner
from services.registry.experiments import now
from services.registry.models import MODEL, Models
from services.registry.points import check_entries, check_metric
from services.registry.registration import Registration, Registrations
from services.registry.runs import RunView, numeric
from services.registry.usage import Usage, of_run

# Versions in one BatchCreateModelVersions call.
MAX_BATCH = 1000


@dataclass(frozen=True)
class CreatedVersion:
    """A version just registered, as its message needs it: the values it was written with and the
    messages its signature and lineage JSON came from (building its ORM row would cost more than
    writing it)."""

    registration: Registration
    signature: pb.ModelSignature
    lineage: pb.Lineage
    usage: Usage | None = None


@dataclass(frozen=True)
class _Checked:
    """A requested version with its canonical references resolved, not yet written."""

    version: pb.ModelVersion
    artifact: str
    run: RunView | None
    lineage: pb.Lineage
    metrics: dict[str, float]


@dataclass(frozen=True)
class _Prepared:
    """Checked versions and their registrations, to hand to the group writer."""

    checked: list[_Checked]
    registrations: list[Registration]

    def created(self) -> list[CreatedVersion]:
        """The versions as written (once the group writer is done with them)."""
        return [
            CreatedVersion(registration, one.version.signature, one.lineage, of_run(one.run.row) if one.run else None)
            for registration, one in zip(self.registrations, self.checked, strict=True)
        ]


class NewVersions:
    """Checks requested versions and hands them to the group writer."""

    def __init__(self, models: Models) -> None:
        self.models = models
        self.data = models.data
        self.tracking = models.tracking
        self.registrations = Registrations(models.engine, models.data, now)

    def create(self, parent: str, version: pb.ModelVersion) -> CreatedVersion:
        """Register one version of the model `parent` (created if missing)."""
        return self._register(parent, [version], batch=False)[0]

    async def create_async(self, parent: str, version: pb.ModelVersion, blocking: BlockingRunner) -> CreatedVersion:
        """`create` for an event loop: checked on the loop when that needs no database or data
        service (every reference already known), else on `blocking`'s threads; then queued to the
        group writer, awaited without holding a thread."""
        parts = parse_name(parent, MODEL, "parent")
        if self._known(parts["project"], parts["model"], version):
            prepared = self._prepare(parts, [version], batch=False)
        else:
            prepared = await blocking(self._prepare, parts, [version], False)
        await self.registrations.commit_async(prepared.registrations)
        return prepared.created()[0]

    def create_batch(self, parent: str, requests: Sequence[tuple[str, pb.ModelVersion]]) -> list[CreatedVersion]:
        """Register `(parent, version)` requests of the model `parent` all or none, in order; an
        error names the index of the request that caused it."""
        if not 1 <= len(requests) <= MAX_BATCH:
            raise InvalidArgument(
                f"requests holds {len(requests)} versions; a batch holds 1 to {MAX_BATCH}",
                metadata={"field": "requests"},
            )
        for index, (own, _) in enumerate(requests):
            if own not in ("", parent):
                raise InvalidArgument(
                    f"requests[{index}].parent is {own!r}: leave it empty or set it to the batch's parent {parent!r}",
                    metadata={"field": f"requests[{index}].parent"},
                )
        return self._register(parent, [version for _, version in requests], batch=True)

    def _register(self, parent: str, versions: Sequence[pb.ModelVersion], batch: bool) -> list[CreatedVersion]:
        prepared = self._prepare(parse_name(parent, MODEL, "parent"), versions, batch)
        self.registrations.commit(prepared.registrations)
        return prepared.created()

    def _known(self, project: str, model: str, version: pb.ModelVersion) -> bool:
        """Whether checking `version` needs no lookup: its model, artifact and datasets are known
        and it names no run or parent version (whose rows are read)."""
        lineage = version.lineage
        return (
            not lineage.run
            and not lineage.parent_model_version
            and self.models.known_model(project, model) is not None
            and self.data.known(version.artifact)
            and all(self.data.known(dataset) for dataset in lineage.datasets)
        )

    def _prepare(self, parts: dict[str, str], versions: Sequence[pb.ModelVersion], batch: bool) -> _Prepared:
        """Check each version and make its registration (not yet written)."""
        project = parts["project"]
        checked = []
        for index, version in enumerate(versions):
            try:
                checked.append(self._check(project, version))
            except AtelierError as error:
                if not batch:
                    raise
                raise _at_index(error, index) from error
        model = self.models.ensure_model(project, parts["model"])
        assert model.id is not None
        return _Prepared(checked, [_registration(project, model.id, model.name, one) for one in checked])

    def _check(self, project: str, version: pb.ModelVersion) -> _Checked:
        check_version(version)
        artifact = self.data.artifact(version.artifact)
        run = self.tracking.get_run(version.lineage.run) if version.lineage.run else None
        lineage = self._lineage(version, run, project)
        if lineage.parent_model_version:
            lineage.parent_model_version = self.models.get_version(lineage.parent_model_version).name
        # A run's last values that are NaN or infinite say nothing of the model: they are not its metrics.
        metrics = dict(version.metrics) or (
            {key: value for key, value in run.metrics.items() if math.isfinite(value)} if run else {}
        )
        return _Checked(version, artifact, run, lineage, metrics)

    def _lineage(self, version: pb.ModelVersion, run: RunView | None, project: str) -> pb.Lineage:
        lineage = pb.Lineage()
        lineage.CopyFrom(version.lineage)
        if run is not None:
            lineage.run = run.name
            if not lineage.datasets:
                lineage.datasets.extend(run.row.inputs)
            if not lineage.HasField("code"):
                json_format.ParseDict(run.row.code, lineage.code)
            if not lineage.params:
                lineage.params.update(run.row.params)
        canonical = sorted({self.data.dataset_version(d, project) for d in lineage.datasets})
        del lineage.datasets[:]
        lineage.datasets.extend(canonical)
        return lineage


def _registration(project: str, model_id: int, model_name: str, checked: _Checked) -> Registration:
    version, run, lineage = checked.version, checked.run, checked.lineage
    return Registration(
        project=project,
        model_id=model_id,
        model_name=model_name,
        row={
            "description": version.description,
            "artifact": checked.artifact,
            "artifact_digest": version.artifact_digest,
            "format": version.format,
            "module_class": version.module_class,
            "signature": json_format.MessageToDict(version.signature, preserving_proto_field_name=True),
            "lineage": json_format.MessageToDict(lineage, preserving_proto_field_name=True),
            "metrics": checked.metrics,
            "tags": dict(version.tags),
            "author": version.author,
            "run": run.name if run else "",
            "experiment": f"projects/{project}/experiments/{run.experiment}" if run else "",
            "parent_version": lineage.parent_model_version,
        },
        metrics=checked.metrics,
        params={k: (v, numeric(v)) for k, v in lineage.params.items()},
        tags=dict(version.tags),
        datasets=list(lineage.datasets),
        targets=[checked.artifact, *lineage.datasets],
    )


def _at_index(error: AtelierError, index: int) -> AtelierError:
    """The same error, saying which request of the batch caused it."""
    metadata = {**error.metadata, "index": str(index)}
    if "field" in metadata:
        metadata["field"] = f"requests[{index}].{metadata['field']}"
    return type(error)(f"requests[{index}]: {error.message}", reason=error.reason, metadata=metadata)


def check_version(version: pb.ModelVersion) -> None:
    """INVALID_ARGUMENT unless the version's own fields make a loadable model."""
    if not version.artifact:
        raise InvalidArgument("model_version.artifact is required: the data service artifact with the model file")
    if version.format == pb.MODEL_FORMAT_UNSPECIFIED or version.format not in pb.ModelFormat.values():
        raise InvalidArgument(
            f"model_version.format {version.format} is not one of TORCHSCRIPT, TORCH_EXPORT or STATE_DICT",
            metadata={"field": "model_version.format"},
        )
    for key, value in version.metrics.items():
        check_metric(key, value)
    check_entries("param", version.lineage.params, "model_version.lineage.params")
    check_entries("tag", version.tags, "model_version.tags")
    if version.format == pb.MODEL_FORMAT_STATE_DICT and ":" not in version.module_class:
        raise InvalidArgument(
            f"a STATE_DICT version needs module_class as `package.module:Class`, got {version.module_class!r}",
            metadata={"field": "model_version.module_class"},
        )
    for group, specs in (("inputs", version.signature.inputs), ("outputs", version.signature.outputs)):
        names = [s.name for s in specs]
        if len(set(names)) != len(names) or "" in names:
            raise InvalidArgument(f"signature {group} need distinct, non-empty names; got {names}")
        for spec in specs:
            if spec.datatype == pb.TENSOR_DATATYPE_UNSPECIFIED or spec.datatype not in pb.TensorDatatype.values():
                raise InvalidArgument(f"signature tensor {spec.name!r} has no known datatype ({spec.datatype})")
            if any(d < -1 or d == 0 for d in spec.shape):
                raise InvalidArgument(f"signature tensor {spec.name!r} has shape {list(spec.shape)}: dims are >0 or -1")
