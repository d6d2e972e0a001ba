"""Client of the registry service."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import grpc
from google.protobuf import field_mask_pb2

from atelier.client.channel import ServiceClient, connect
from atelier.registry.v1 import registry_service_pb2 as rpc
from atelier.registry.v1 import registry_service_pb2_grpc
from atelier.registry.v1 import resources_pb2 as pb


class RegistryClient(ServiceClient):
    """Typed calls of `atelier.registry.v1.RegistryService`."""

    service = "registry"

    def __init__(self, channel: grpc.Channel, timeout: float = 30.0, address: str = "") -> None:
        super().__init__(channel, timeout, address)
        self.stub = registry_service_pb2_grpc.RegistryServiceStub(channel)

    @classmethod
    def at(cls, address: str) -> RegistryClient:
        return cls(connect(address), address=address)

    # Experiments and runs ---------------------------------------------------------------------

    def create_experiment(self, project: str, experiment_id: str, description: str = "") -> pb.Experiment:
        request = rpc.CreateExperimentRequest(
            parent=f"projects/{project}", experiment=pb.Experiment(description=description), experiment_id=experiment_id
        )
        return self.call(self.stub.CreateExperiment, request)

    def list_experiments(self, project: str) -> Iterator[pb.Experiment]:
        request = rpc.ListExperimentsRequest(parent=f"projects/{project}")
        return self.pages(self.stub.ListExperiments, request, "experiments")

    def create_run(self, experiment: str, run: pb.Run) -> pb.Run:
        return self.call(self.stub.CreateRun, rpc.CreateRunRequest(parent=experiment, run=run))

    def get_run(self, name: str) -> pb.Run:
        return self.call(self.stub.GetRun, rpc.GetRunRequest(name=name))

    def list_runs(self, experiment: str, filter: str = "", order_by: str = "", page_size: int = 0) -> Iterator[pb.Run]:
        request = rpc.ListRunsRequest(parent=experiment, filter=filter, order_by=order_by, page_size=page_size)
        return self.pages(self.stub.ListRuns, request, "runs")

    def update_run(self, run: pb.Run, paths: list[str]) -> pb.Run:
        request = rpc.UpdateRunRequest(run=run, update_mask=field_mask_pb2.FieldMask(paths=paths))
        return self.call(self.stub.UpdateRun, request)

    def log(
        self,
        run: str,
        metrics: list[pb.MetricPoint] | None = None,
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> int:
        request = rpc.LogRunDataRequest(run=run, metrics=metrics or [], params=params or {}, tags=tags or {})
        return self.call(self.stub.LogRunData, request, timeout).stored_points

    def metric_history(self, run: str, key: str) -> Iterator[pb.MetricPoint]:
        request = rpc.ListMetricHistoryRequest(run=run, key=key)
        return self.pages(self.stub.ListMetricHistory, request, "points")

    def add_artifact(self, run: str, path: str, artifact: str, size: int) -> pb.Run:
        request = rpc.AddRunArtifactRequest(
            run=run, artifact=pb.RunArtifact(path=path, artifact=artifact, size_bytes=size)
        )
        return self.call(self.stub.AddRunArtifact, request)

    def record_job_usage(self, job: str, usage: pb.ResourceUsage, timeout: float | None = None) -> int:
        """Set a job's GPU time and energy totals on the runs naming it (the monitor's call); how many."""
        request = rpc.RecordJobUsageRequest(job=job, usage=usage)
        return self.call(self.stub.RecordJobUsage, request, timeout).updated_runs

    # Models -----------------------------------------------------------------------------------

    def get_model(self, name: str) -> pb.RegisteredModel:
        return self.call(self.stub.GetRegisteredModel, rpc.GetRegisteredModelRequest(name=name))

    def list_models(self, project: str) -> Iterator[pb.RegisteredModel]:
        request = rpc.ListRegisteredModelsRequest(parent=f"projects/{project}")
        return self.pages(self.stub.ListRegisteredModels, request, "registered_models")

    def create_version(self, model: str, version: pb.ModelVersion) -> pb.ModelVersion:
        return self.call(
            self.stub.CreateModelVersion, rpc.CreateModelVersionRequest(parent=model, model_version=version)
        )

    def create_versions(self, model: str, versions: Sequence[pb.ModelVersion]) -> list[pb.ModelVersion]:
        """Register `versions` of `model` in one call (at most 1000), all or none; the versions
        created, in order. An error names the index of the version that caused it."""
        requests = [rpc.CreateModelVersionRequest(model_version=version) for version in versions]
        request = rpc.BatchCreateModelVersionsRequest(parent=model, requests=requests)
        return list(self.call(self.stub.BatchCreateModelVersions, request).model_versions)

    def get_version(self, name: str) -> pb.ModelVersion:
        return self.call(self.stub.GetModelVersion, rpc.GetModelVersionRequest(name=name))

    def list_versions(
        self, model: str, filter: str = "", order_by: str = "", page_size: int = 0
    ) -> Iterator[pb.ModelVersion]:
        request = rpc.ListModelVersionsRequest(parent=model, filter=filter, order_by=order_by, page_size=page_size)
        return self.pages(self.stub.ListModelVersions, request, "model_versions")

    def best_version(self, model: str, metric: str, filter: str = "", lowest: bool = False) -> pb.ModelVersion | None:
        """The version with the highest (or lowest) value of a metric among those matching `filter`."""
        request = rpc.ListModelVersionsRequest(
            parent=model, filter=filter, order_by=f"metrics.{metric} {'asc' if lowest else 'desc'}", page_size=1
        )
        found = self.call(self.stub.ListModelVersions, request).model_versions
        return found[0] if found else None

    def delete_version(self, name: str) -> None:
        self.call(self.stub.DeleteModelVersion, rpc.DeleteModelVersionRequest(name=name))

    def set_alias(self, model: str, alias: str, version: str, gate: str = "", author: str = "") -> pb.Alias:
        request = rpc.SetAliasRequest(model=model, alias=alias, version=version, gate=gate, author=author)
        return self.call(self.stub.SetAlias, request)

    def delete_alias(self, name: str, author: str = "") -> None:
        self.call(self.stub.DeleteAlias, rpc.DeleteAliasRequest(name=name, author=author))

    def alias_events(self, model: str) -> list[pb.AliasEvent]:
        return list(self.pages(self.stub.ListAliasEvents, rpc.ListAliasEventsRequest(model=model), "events"))

    def lineage(self, name: str) -> rpc.GetModelVersionLineageResponse:
        return self.call(self.stub.GetModelVersionLineage, rpc.GetModelVersionLineageRequest(name=name))

    def reproduction_spec(self, name: str) -> pb.ReproductionSpec:
        return self.call(self.stub.GetReproductionSpec, rpc.GetReproductionSpecRequest(name=name))
