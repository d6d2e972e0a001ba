"""A run's latest metric values and its params, as later batches change them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from google.protobuf import timestamp_pb2

from atelier.client import DataClient, RegistryClient
from atelier.datasets.push import store_artifact
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
        (_point("loss", 1, 0.5, 10**13), "metric 'loss' has time 1e\\+13: times are seconds since 1970"),
        (_point("", 1, 0.5, 100), "metric key '' must be 1-250 characters"),
    ]:
        with pytest.raises(InvalidArgument, match=expected):
            registry.log(run.name, metrics=[_point("acc", 1, 0.9, 100), point])
    columns = rpc.MetricColumns(keys=["loss"], key_index=[0], steps=[1], values=[0.5], times=[1e300])
    with pytest.raises(InvalidArgument, match="has time 1e\\+300"):
        registry.call(registry.stub.LogRunData, rpc.LogRunDataRequest(run=run.name, columns=columns))

    assert dict(registry.get_run(run.name).metrics) == {}
    assert list(registry.metric_history(run.name, "acc")) == []


def test_nan_and_infinite_values_are_kept_and_left_out_of_comparisons(
    stack: tuple[DataClient, RegistryClient],
) -> None:
    """A diverging run's NaN loss is recorded (in its history, and as its last value) like MLflow's; a
    comparison or an ordering by the metric leaves it out, as it leaves out runs without the metric."""
    _, registry = stack
    diverged = registry.create_run(EXPERIMENT, pb.Run())
    exploded = registry.create_run(EXPERIMENT, pb.Run())
    fine = registry.create_run(EXPERIMENT, pb.Run())
    registry.log(diverged.name, metrics=[_point("loss", 1, 0.7, 100), _point("loss", 2, math.nan, 110)])
    registry.log(exploded.name, metrics=[_point("loss", 1, math.inf, 100), _point("grad", 1, -math.inf, 100)])
    registry.log(fine.name, metrics=[_point("loss", 1, 0.2, 100)])

    assert math.isnan(registry.get_run(diverged.name).metrics["loss"])
    history = [(p.step, p.value) for p in registry.metric_history(diverged.name, "loss")]
    assert history[0] == (1, 0.7)
    assert history[1][0] == 2
    assert math.isnan(history[1][1])
    assert dict(registry.get_run(exploded.name).metrics) == {"loss": math.inf, "grad": -math.inf}

    def names(**query: str) -> list[str]:
        return [r.name for r in registry.list_runs(EXPERIMENT, **query) if r.name in mine]

    mine = {diverged.name, exploded.name, fine.name}
    assert names(order_by="metrics.loss") == [fine.name, exploded.name]
    assert names(order_by="metrics.loss desc") == [exploded.name, fine.name]
    assert sorted(names(filter="metrics.loss > 0.1")) == sorted([exploded.name, fine.name])
    assert names(filter="metrics.loss < 1") == [fine.name]
    assert names(filter="metrics.loss != 0.2") == [exploded.name]


def test_a_version_registered_from_a_run_leaves_its_non_finite_metrics_out(
    stack: tuple[DataClient, RegistryClient], tmp_path: Path
) -> None:
    data, registry = stack
    run = registry.create_run(EXPERIMENT, pb.Run())
    registry.log(
        run.name,
        metrics=[_point("loss", 3, math.nan, 100), _point("acc", 3, 0.8, 100), _point("grad", 3, math.inf, 100)],
    )
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"weights")
    artifact = store_artifact(data, "lab", weights)
    version = registry.create_version(
        "projects/lab/models/diverged",
        pb.ModelVersion(artifact=artifact.name, format=pb.MODEL_FORMAT_TORCHSCRIPT, lineage=pb.Lineage(run=run.name)),
    )
    assert dict(version.metrics) == {"acc": pytest.approx(0.8)}
    with pytest.raises(InvalidArgument, match="metric 'loss' is nan: metric values are finite numbers"):
        registry.create_version(
            "projects/lab/models/diverged",
            pb.ModelVersion(artifact=artifact.name, format=pb.MODEL_FORMAT_TORCHSCRIPT, metrics={"loss": math.nan}),
        )
