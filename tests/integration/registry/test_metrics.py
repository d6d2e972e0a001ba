"""The registry's Prometheus series: runs, model versions and metric points created, per project."""

from __future__ import annotations

import json
from pathlib import Path

from atelier.client import DataClient, RegistryClient
from atelier.registry.v1 import resources_pb2 as pb
from tests.integration.registry.helpers import EXPERIMENT, trained
from tests.prometheus import scrape, value


def test_runs_versions_and_points_are_counted(
    stack: tuple[DataClient, RegistryClient], tmp_path: Path, digits: str
) -> None:
    data, registry = stack
    trained(data, registry, tmp_path, "0.01", 0.9)
    trained(data, registry, tmp_path, "0.02", 0.8)
    run = registry.create_run(EXPERIMENT, pb.Run())
    registry.log(run.name, metrics=[pb.MetricPoint(key="loss", step=s, value=1.0 / (s + 1)) for s in range(5)])

    published = json.loads((tmp_path / "home" / "run" / "registry.json").read_text())
    samples = scrape(published["metrics"])
    assert value(samples, "atelier_registry_runs_created_total", project="lab") == 3
    assert value(samples, "atelier_registry_model_versions_created_total", project="lab") == 2
    assert value(samples, "atelier_registry_metric_points_total", project="lab") == 2 + 5
    assert value(samples, "grpc_server_handled_total", grpc_method="CreateModelVersion", grpc_code="OK") == 2
