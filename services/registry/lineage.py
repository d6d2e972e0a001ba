"""Lineage graphs and reproduction specs of model versions."""

from __future__ import annotations

from google.protobuf import json_format

from atelier.registry.v1 import registry_service_pb2 as rpc
from atelier.registry.v1 import resources_pb2 as pb
from services.registry.models import Models

_MAX_DEPTH = 50


def lineage_graph(models: Models, name: str) -> rpc.GetModelVersionLineageResponse:
    """Nodes and edges from a version back through its run, code, datasets and parent versions."""
    graph = rpc.GetModelVersionLineageResponse()
    seen: set[str] = set()

    def node(resource: str, kind: str) -> None:
        if resource not in seen:
            seen.add(resource)
            graph.nodes.add(name=resource, kind=kind)

    current = models.get_version(name)
    for _ in range(_MAX_DEPTH):
        node(current.name, "model_version")
        lineage = json_format.ParseDict(current.row.lineage, pb.Lineage(), ignore_unknown_fields=True)
        if lineage.run:
            node(lineage.run, "run")
            graph.edges.add(source=lineage.run, target=current.name, relation="produced_by")
        for dataset in lineage.datasets:
            node(dataset, "dataset_version")
            graph.edges.add(source=dataset, target=current.name, relation="trained_on")
        if lineage.code.commit:
            code = f"git:{lineage.code.git_remote or 'local'}@{lineage.code.commit}"
            node(code, "code")
            graph.edges.add(source=code, target=lineage.run or current.name, relation="ran_code")
        if not lineage.parent_model_version or lineage.parent_model_version in seen:
            break
        graph.edges.add(source=lineage.parent_model_version, target=current.name, relation="fine_tuned_from")
        current = models.get_version(lineage.parent_model_version)
    return graph


def reproduction_spec(models: Models, name: str) -> pb.ReproductionSpec:
    """Data versions, code (with its diff), params, environment and command that made a version."""
    version = models.get_version(name)
    lineage = json_format.ParseDict(version.row.lineage, pb.Lineage(), ignore_unknown_fields=True)
    spec = pb.ReproductionSpec(model_version=version.name, datasets=lineage.datasets, params=lineage.params)
    spec.code.CopyFrom(lineage.code)
    if lineage.run:
        run = models.tracking.get_run(lineage.run)
        json_format.ParseDict(run.row.environment, spec.environment, ignore_unknown_fields=True)
        spec.command.extend(run.row.command)
    return spec
