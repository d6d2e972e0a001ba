"""A run's latest metric values and its params, as later batches change them."""

from __future__ import annotations

import math

import pytest
from google.protobuf import timestamp_pb2

from atelier.client import DataClient, RegistryClient
from atelier.errors import InvalidArgument
from atelier.registry.v1 import registry_service_pb2 as rpc
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


def test_points_that_cannot_be_stored_are_refused_and_nothing_is_kept(stack: tuple[DataClient, RegistryClient]) -> None:
    _, registry = stack
    run = registry.create_run(EXPERIMENT, pb.Run())
    for point, expected in [
        (_point("loss", 1, math.nan, 100), "metric 'loss' is nan: metric values are finite numbers"),
        (_point("loss", 1, math.inf, 100), "metric 'loss' is inf"),
        (_point("loss", 1, 0.5, 10**13), "metric 'loss' has time 1e\\+13: times are seconds since 1970"),
    ]:
        with pytest.raises(InvalidArgument, match=expected):
            registry.log(run.name, metrics=[_point("acc", 1, 0.9, 100), point])
    columns = rpc.MetricColumns(keys=["loss"], key_index=[0], steps=[1], values=[0.5], times=[1e300])
    with pytest.raises(InvalidArgument, match="has time 1e\\+300"):
        registry.call(registry.stub.LogRunData, rpc.LogRunDataRequest(run=run.name, columns=columns))

    assert dict(registry.get_run(run.name).metrics) == {}
    assert list(registry.metric_history(run.name, "acc")) == []
