"""gRPC handlers of the RegistryService: validate, convert, call the domain, convert back."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2

from atelier.names import parse_name, project_of
from atelier.registry.v1 import registry_service_pb2 as rpc
from atelier.registry.v1 import registry_service_pb2_grpc
from atelier.registry.v1 import resources_pb2 as pb
from atelier.runtime.auth import acting_as
from atelier.runtime.server import BlockingRunner
from services.registry import convert
from services.registry.aliases import Aliases
from services.registry.lineage import lineage_graph, reproduction_spec
from services.registry.metrics import RegistryMetrics
from services.registry.models import Models
from services.registry.new_versions import NewVersions
from services.registry.runs import Tracking
from services.registry.usage import record_job_usage

Context = grpc.aio.ServicerContext[Any, Any]


class RegistryServicer(registry_service_pb2_grpc.RegistryServiceServicer):
    """Thin handlers over `Tracking`, `Models` and `Aliases`."""

    def __init__(
        self, tracking: Tracking, models: Models, run: BlockingRunner, metrics: RegistryMetrics | None = None
    ) -> None:
        self.tracking = tracking
        self.metrics = metrics
        self.models = models
        self.aliases = Aliases(models)
        self.new_versions = NewVersions(models)
        self.run = run

    # Experiments and runs ---------------------------------------------------------------------

    async def CreateExperiment(self, request: rpc.CreateExperimentRequest, context: Context) -> pb.Experiment:
        project, row = await self.run(
            self.tracking.experiments.create, request.parent, request.experiment_id, request.experiment.description
        )
        return convert.experiment(project, row)

    async def GetExperiment(self, request: rpc.GetExperimentRequest, context: Context) -> pb.Experiment:
        row, count = await self.run(self.tracking.experiments.get, request.name)
        return convert.experiment(row.project, row, count)

    async def ListExperiments(
        self, request: rpc.ListExperimentsRequest, context: Context
    ) -> rpc.ListExperimentsResponse:
        rows, token = await self.run(
            self.tracking.experiments.page, request.parent, request.page_size, request.page_token
        )
        return rpc.ListExperimentsResponse(
            experiments=[convert.experiment(r.project, r) for r in rows], next_page_token=token
        )

    async def CreateRun(self, request: rpc.CreateRunRequest, context: Context) -> pb.Run:
        request.run.user = acting_as(request.run.user)
        created = await self.run(self.tracking.create_run, request.parent, request.run)
        if self.metrics is not None:
            self.metrics.runs.labels(project_of(request.parent)).inc()
        return convert.run(created)

    async def GetRun(self, request: rpc.GetRunRequest, context: Context) -> pb.Run:
        return convert.run(await self.run(self.tracking.get_run, request.name))

    async def ListRuns(self, request: rpc.ListRunsRequest, context: Context) -> rpc.ListRunsResponse:
        views, token = await self.run(
            self.tracking.list_runs,
            request.parent,
            request.filter,
            request.order_by,
            request.page_size,
            request.page_token,
        )
        return rpc.ListRunsResponse(runs=[convert.run(v) for v in views], next_page_token=token)

    async def UpdateRun(self, request: rpc.UpdateRunRequest, context: Context) -> pb.Run:
        view = await self.run(self.tracking.update_run, request.run, set(request.update_mask.paths))
        return convert.run(view)

    async def DeleteRun(self, request: rpc.DeleteRunRequest, context: Context) -> empty_pb2.Empty:
        await self.run(self.tracking.delete_run, request.name)
        return empty_pb2.Empty()

    async def LogRunData(self, request: rpc.LogRunDataRequest, context: Context) -> rpc.LogRunDataResponse:
        columns = request.columns if request.HasField("columns") else None
        stored = await self.run(
            self.tracking.log, request.run, list(request.metrics), dict(request.params), dict(request.tags), columns
        )
        if self.metrics is not None and stored:
            self.metrics.points.labels(project_of(request.run)).inc(stored)
        return rpc.LogRunDataResponse(stored_points=stored)

    async def ListMetricHistory(
        self, request: rpc.ListMetricHistoryRequest, context: Context
    ) -> rpc.ListMetricHistoryResponse:
        rows, token = await self.run(
            self.tracking.metric_history, request.run, request.key, request.page_size, request.page_token
        )
        return rpc.ListMetricHistoryResponse(points=[convert.metric_point(r) for r in rows], next_page_token=token)

    async def AddRunArtifact(self, request: rpc.AddRunArtifactRequest, context: Context) -> pb.Run:
        return convert.run(await self.run(self.tracking.add_artifact, request.run, request.artifact))

    async def RecordJobUsage(self, request: rpc.RecordJobUsageRequest, context: Context) -> rpc.RecordJobUsageResponse:
        updated = await self.run(record_job_usage, self.tracking.engine, request.job, request.usage)
        return rpc.RecordJobUsageResponse(updated_runs=updated)

    def close(self) -> None:
        """Write what is queued for the group writer and stop it (at shutdown)."""
        self.new_versions.registrations.close()

    # Models -----------------------------------------------------------------------------------

    async def CreateRegisteredModel(
        self, request: rpc.CreateRegisteredModelRequest, context: Context
    ) -> pb.RegisteredModel:
        row = await self.run(
            self.models.create_model,
            request.parent,
            request.registered_model_id,
            request.registered_model.description,
        )
        return convert.registered_model(row, {})

    async def GetRegisteredModel(self, request: rpc.GetRegisteredModelRequest, context: Context) -> pb.RegisteredModel:
        row, aliases = await self.run(self.models.get_model, request.name)
        return convert.registered_model(row, aliases)

    async def ListRegisteredModels(
        self, request: rpc.ListRegisteredModelsRequest, context: Context
    ) -> rpc.ListRegisteredModelsResponse:
        rows, token = await self.run(self.models.list_models, request.parent, request.page_size, request.page_token)
        models = [convert.registered_model(row, aliases) for row, aliases in rows]
        return rpc.ListRegisteredModelsResponse(registered_models=models, next_page_token=token)

    async def CreateModelVersion(self, request: rpc.CreateModelVersionRequest, context: Context) -> pb.ModelVersion:
        created = await self.new_versions.create_async(request.parent, request.model_version, self.run)
        if self.metrics is not None:
            self.metrics.versions.labels(project_of(request.parent)).inc()
        return convert.created_version(created)

    async def BatchCreateModelVersions(
        self, request: rpc.BatchCreateModelVersionsRequest, context: Context
    ) -> rpc.BatchCreateModelVersionsResponse:
        requests = [(r.parent, r.model_version) for r in request.requests]
        created = await self.run(self.new_versions.create_batch, request.parent, requests)
        if self.metrics is not None:
            self.metrics.versions.labels(project_of(request.parent)).inc(len(created))
        return rpc.BatchCreateModelVersionsResponse(model_versions=[convert.created_version(c) for c in created])

    async def GetModelVersion(self, request: rpc.GetModelVersionRequest, context: Context) -> pb.ModelVersion:
        return convert.model_version(await self.run(self.models.get_version, request.name))

    async def ListModelVersions(
        self, request: rpc.ListModelVersionsRequest, context: Context
    ) -> rpc.ListModelVersionsResponse:
        views, token = await self.run(
            self.models.list_versions,
            request.parent,
            request.filter,
            request.order_by,
            request.page_size,
            request.page_token,
        )
        return rpc.ListModelVersionsResponse(
            model_versions=[convert.model_version(v) for v in views], next_page_token=token
        )

    async def DeleteModelVersion(self, request: rpc.DeleteModelVersionRequest, context: Context) -> empty_pb2.Empty:
        await self.run(self.models.delete_version, request.name)
        return empty_pb2.Empty()

    # Aliases and lineage ----------------------------------------------------------------------

    async def SetAlias(self, request: rpc.SetAliasRequest, context: Context) -> pb.Alias:
        row, view = await self.run(
            self.aliases.set, request.model, request.alias, request.version, request.gate, acting_as(request.author)
        )
        return convert.alias(view.project, view.model.name, row, view.row.number)

    async def DeleteAlias(self, request: rpc.DeleteAliasRequest, context: Context) -> empty_pb2.Empty:
        await self.run(self.aliases.delete, request.name, acting_as(request.author))
        return empty_pb2.Empty()

    async def ListAliasEvents(
        self, request: rpc.ListAliasEventsRequest, context: Context
    ) -> rpc.ListAliasEventsResponse:
        rows, token = await self.run(self.aliases.events, request.model, request.page_size, request.page_token)
        parse_name(request.model, "projects/{project}/models/{model}", "model")
        events = [convert.alias_event(request.model, r) for r in rows]
        return rpc.ListAliasEventsResponse(events=events, next_page_token=token)

    async def GetModelVersionLineage(
        self, request: rpc.GetModelVersionLineageRequest, context: Context
    ) -> rpc.GetModelVersionLineageResponse:
        return await self.run(lineage_graph, self.models, request.name)

    async def GetReproductionSpec(
        self, request: rpc.GetReproductionSpecRequest, context: Context
    ) -> pb.ReproductionSpec:
        return await self.run(reproduction_spec, self.models, request.name)
