"""A run's latest metric values and its params, as later batches change them."""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from atelier.client import DataClient, RegistryClient
from atelier.registry.v1 import resources_pb2 as pb
from tests.integration.registry.test_tracking import EXPERIMENT


def _point(key: str, step: int, value: float, seconds: int) -> pb.MetricPoint:
    return pb.MetricPoint(key=key, step=step, value=value, time=timestamp_pb2.Timestamp(seconds=seconds))


def test_the_latest_step_then_time_wins(stack: tuple[DataClient, RegistryClient]) -> None:
    _, registry = stack
    run = registry.create_run(EXPERIMENT, pb.Run(params={"lr": "0.01"}))
    registry.log(run.name, metrics=[_point("loss", 5, 0.5, 100), _point("acc", 1, 0.1, 100)])
    registry.log(run.name, metrics=[_point("loss", 3, 0.9, 200), _point("acc", 2, 0.2, 50)])
    assert dict(registry.get_run(run.name).metrics) == {"loss": 0.5, "acc": 0.2}
    registry.log(run.name, metrics=[_point("loss", 5, 0.4, 150), _point("loss", 5, 0.3, 90)])
    assert dict(registry.get_run(run.name).metrics) == {"loss": 0.4, "acc": 0.2}


def test_params_are_added_once_and_kept(stack: tuple[DataClient, RegistryClient]) -> None:
    _, registry = stack
    run = registry.create_run(EXPERIMENT, pb.Run(params={"lr": "0.01"}))
    registry.log(run.name, params={"lr": "0.01", "batch": "64"})
    registry.log(run.name, params={"batch": "64", "epochs": "3"})
    assert dict(registry.get_run(run.name).params) == {"lr": "0.01", "batch": "64", "epochs": "3"}
    found = list(registry.list_runs(EXPERIMENT, filter="params.batch > 32 and params.epochs = 3"))
    assert [r.name for r in found] == [run.name]
