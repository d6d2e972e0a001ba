"""Runs: inputs validated against the data service, batched metrics, params, search, heartbeats."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from google.protobuf import timestamp_pb2

from atelier.client import DataClient, RegistryClient
from atelier.datasets.push import push, store_artifact
from atelier.errors import FailedPrecondition, InvalidArgument
from atelier.names import parse_dataset_ref
from atelier.registry.v1 import registry_service_pb2 as rpc
from atelier.registry.v1 import resources_pb2 as pb
from tests.integration.data.helpers import write_tree

EXPERIMENT = "projects/lab/experiments/digits"


def dataset(data: DataClient, tmp_path: Path) -> str:
    write_tree(tmp_path / "digits", {"labels.csv": b"a,1\n"})
    return push(data, tmp_path / "digits", parse_dataset_ref("digits", "lab")).version.name


def test_run_records_inputs_params_and_metrics(stack: tuple[DataClient, RegistryClient], tmp_path: Path) -> None:
    data, registry = stack
    version = dataset(data, tmp_path)
    run = registry.create_run(
        EXPERIMENT,
        pb.Run(params={"lr": "0.01", "epochs": "3"}, inputs=["digits@latest"], user="ana", command=["train.py"]),
    )
    assert run.state == pb.RUN_STATE_RUNNING
    assert list(run.inputs) == [version]
    points = [pb.MetricPoint(key="loss", step=s, value=1.0 / (s + 1)) for s in range(2500)]
    assert registry.log(run.name, metrics=points[:2000], params={"batch": "32"}) == 2000
    registry.log(run.name, metrics=points[2000:] + [pb.MetricPoint(key="val_accuracy", step=3, value=0.93)])

    fetched = registry.get_run(run.name)
    assert fetched.metrics["loss"] == pytest.approx(1.0 / 2500)
    assert fetched.metrics["val_accuracy"] == pytest.approx(0.93)
    assert dict(fetched.params) == {"lr": "0.01", "epochs": "3", "batch": "32"}
    history = list(registry.metric_history(run.name, "loss"))
    assert [p.step for p in history] == list(range(2500))
    with pytest.raises(FailedPrecondition, match="param 'lr' of the run is already '0.01'"):
        registry.log(run.name, params={"lr": "0.1"})


def test_unknown_input_dataset_is_failed_precondition(stack: tuple[DataClient, RegistryClient]) -> None:
    data, registry = stack
    data.ensure_dataset("lab", "digits")
    with pytest.raises(FailedPrecondition, match="unknown dataset version 'digits@v9'"):
        registry.create_run(EXPERIMENT, pb.Run(inputs=["digits@v9"]))


def test_finished_run_takes_no_more_metrics(stack: tuple[DataClient, RegistryClient]) -> None:
    _, registry = stack
    run = registry.create_run(EXPERIMENT, pb.Run())
    with pytest.raises(InvalidArgument, match="run.state must be RUNNING, FINISHED, FAILED or KILLED"):
        registry.update_run(pb.Run(name=run.name, state=7), ["state"])  # type: ignore[arg-type]
    finished = registry.update_run(pb.Run(name=run.name, state=pb.RUN_STATE_FINISHED), ["state"])
    assert finished.HasField("end_time")
    with pytest.raises(FailedPrecondition, match="is FINISHED"):
        registry.log(run.name, metrics=[pb.MetricPoint(key="x", step=1, value=1)])
    columns = rpc.MetricColumns(keys=["x"], key_index=[0], steps=[2], values=[1.0], times=[0.0])
    with pytest.raises(FailedPrecondition, match="is FINISHED"):  # the SDK's column-wise batches too
        registry.call(registry.stub.LogRunData, rpc.LogRunDataRequest(run=run.name, columns=columns))


def test_search_runs_by_metrics_params_and_state(stack: tuple[DataClient, RegistryClient]) -> None:
    _, registry = stack
    names = []
    for lr, acc in [("0.1", 0.80), ("0.01", 0.95), ("0.001", 0.91)]:
        run = registry.create_run(EXPERIMENT, pb.Run(params={"lr": lr}))
        registry.log(run.name, metrics=[pb.MetricPoint(key="val_accuracy", step=1, value=acc)])
        names.append(run.name)
    registry.update_run(pb.Run(name=names[2], state=pb.RUN_STATE_FAILED), ["state"])

    found = list(registry.list_runs(EXPERIMENT, filter="metrics.val_accuracy > 0.9 and params.lr < 0.05"))
    assert sorted(r.name for r in found) == sorted(names[1:])
    best = list(registry.list_runs(EXPERIMENT, order_by="metrics.val_accuracy desc", page_size=1))
    assert best[0].name == names[1]
    finished = list(registry.list_runs("projects/lab/experiments/-", filter="NOT state = FAILED"))
    assert {r.name for r in finished} == set(names[:2])
    with pytest.raises(InvalidArgument, match="position"):
        list(registry.list_runs(EXPERIMENT, filter="metrics.val_accuracy > "))
    with pytest.raises(InvalidArgument, match="unknown field colour"):
        list(registry.list_runs(EXPERIMENT, filter="colour = 1"))
    with pytest.raises(InvalidArgument, match="order by metrics.<name> with a name of 1-250 characters"):
        list(registry.list_runs(EXPERIMENT, order_by="metrics. desc"))


def test_silent_runs_are_failed(stack: tuple[DataClient, RegistryClient], database_url: str) -> None:
    _, registry = stack
    run = registry.create_run(EXPERIMENT, pb.Run())
    ahead = registry.create_run(EXPERIMENT, pb.Run(start_time=timestamp_pb2.Timestamp(seconds=4_000_000_000)))
    from atelier.runtime.database import create_engine
    from services.registry.runs import Tracking

    tracking = Tracking(create_engine(database_url), data=None)  # type: ignore[arg-type]
    assert tracking.fail_silent_runs(timeout_seconds=3600) == 0
    assert tracking.fail_silent_runs(timeout_seconds=0.0001) == 2
    failed = registry.get_run(run.name)
    assert failed.state == pb.RUN_STATE_FAILED
    assert "no heartbeat" in failed.state_message
    assert failed.end_time.seconds >= failed.start_time.seconds
    assert registry.get_run(ahead.name).end_time.seconds == 4_000_000_000  # its start, not before it


def test_run_fields_naming_a_job_or_artifact_are_checked_before_anything_is_written(
    stack: tuple[DataClient, RegistryClient],
) -> None:
    _, registry = stack
    for run, expected in [
        (pb.Run(job="train-7"), "invalid run.job 'train-7': expected projects/{project}/jobs/{job}"),
        (pb.Run(code=pb.CodeVersion(diff_artifact="diff.patch")), "invalid run.code.diff_artifact 'diff.patch'"),
        (
            pb.Run(code=pb.CodeVersion(diff_artifact="projects/lab/artifacts/zz")),
            "run.code.diff_artifact 'projects/lab/artifacts/zz' must be projects/{project}/artifacts/{digest} with "
            "the artifact's whole digest (64 lowercase hex characters)",
        ),
        (pb.Run(params={"": "1"}), "param key '' must be 1-250 characters"),
        (pb.Run(tags={"k" * 251: "v"}), "tag key 'kkk"),
        (pb.Run(params={"lr": "0.1\x00"}), "param 'lr' holds a NUL character (0x00)"),
        (pb.Run(start_time=timestamp_pb2.Timestamp(seconds=10**13)), "run.start_time has seconds 10000000000000"),
    ]:
        with pytest.raises(InvalidArgument, match=re.escape(expected)):
            registry.create_run("projects/lab/experiments/untouched", run)
    assert "untouched" not in [e.name.rsplit("/", 1)[-1] for e in registry.list_experiments("lab")]

    diff = "projects/lab/artifacts/" + "a" * 64
    run = registry.create_run(
        EXPERIMENT, pb.Run(job="projects/lab/jobs/train-7", code=pb.CodeVersion(diff_artifact=diff))
    )
    assert (run.job, run.code.diff_artifact) == ("projects/lab/jobs/train-7", diff)


def test_bad_keys_and_an_end_before_the_start_are_refused_and_nothing_is_kept(
    stack: tuple[DataClient, RegistryClient],
) -> None:
    _, registry = stack
    run = registry.create_run(EXPERIMENT, pb.Run(start_time=timestamp_pb2.Timestamp(seconds=2_000_000_000)))
    point = pb.MetricPoint(key="loss", step=1, value=0.5)
    with pytest.raises(InvalidArgument, match="param key '' must be 1-250 characters"):
        registry.log(run.name, metrics=[point], params={"": "0.1"})
    with pytest.raises(InvalidArgument, match="tag key '' must be 1-250 characters"):
        registry.log(run.name, metrics=[point], tags={"": "x"})
    with pytest.raises(InvalidArgument, match=re.escape("tag 'note' holds a NUL character (0x00)")):
        registry.log(run.name, metrics=[point], tags={"note": "a\x00b"})
    with pytest.raises(InvalidArgument, match="metric key '' must be 1-250 characters"):
        registry.log(run.name, metrics=[point, pb.MetricPoint(key="", step=1, value=1)])
    assert dict(registry.get_run(run.name).metrics) == {}

    early = pb.Run(name=run.name, state=pb.RUN_STATE_FINISHED, end_time=timestamp_pb2.Timestamp(seconds=1_999_999_999))
    with pytest.raises(
        InvalidArgument,
        match=re.escape(
            "run.end_time 2033-05-18T03:33:19+00:00 is before the run's start_time 2033-05-18T03:33:20+00:00; "
            "allowed: the start time or later"
        ),
    ):
        registry.update_run(early, ["state", "end_time"])
    with pytest.raises(InvalidArgument, match="run.end_time has seconds -99999999999"):
        registry.update_run(
            pb.Run(name=run.name, end_time=timestamp_pb2.Timestamp(seconds=-99_999_999_999)), ["end_time"]
        )
    assert registry.get_run(run.name).state == pb.RUN_STATE_RUNNING
    early.end_time.seconds = 2_000_000_000
    assert registry.update_run(early, ["state", "end_time"]).end_time.seconds == 2_000_000_000


def test_a_run_started_in_the_future_and_finished_without_an_end_time_ends_at_its_start(
    stack: tuple[DataClient, RegistryClient],
) -> None:
    _, registry = stack
    run = registry.create_run(EXPERIMENT, pb.Run(start_time=timestamp_pb2.Timestamp(seconds=4_000_000_000)))
    finished = registry.update_run(pb.Run(name=run.name, state=pb.RUN_STATE_FINISHED), ["state"])
    assert finished.end_time.seconds == 4_000_000_000  # not now, which is before it


def test_run_artifacts_need_a_relative_path_a_whole_digest_and_a_size(stack: tuple[DataClient, RegistryClient]) -> None:
    _, registry = stack
    run = registry.create_run(EXPERIMENT, pb.Run())
    stored = "projects/lab/artifacts/" + "a" * 64
    for path, artifact, size, expected in [
        ("model.pt", "projects/lab/artifacts/zz", 1, "artifact.artifact 'projects/lab/artifacts/zz' must be projects/"),
        ("../x", stored, 1, "artifact.path '../x' must be a relative path of 1-1000 characters without '..' or empty"),
        ("/etc/passwd", stored, 1, "artifact.path '/etc/passwd' must be a relative path"),
        ("out//model.pt", stored, 1, "artifact.path 'out//model.pt' must be a relative path"),
        ("", stored, 1, "artifact.path '' must be a relative path"),
        ("model.pt", stored, -5, "artifact.size_bytes is -5; allowed: 0 or more"),
    ]:
        with pytest.raises(InvalidArgument, match=re.escape(expected)):
            registry.add_artifact(run.name, path, artifact, size)
    assert list(registry.get_run(run.name).artifacts) == []


def test_a_run_artifacts_size_is_the_stored_artifacts(stack: tuple[DataClient, RegistryClient], tmp_path: Path) -> None:
    data, registry = stack
    (tmp_path / "model.pt").write_bytes(b"w" * 1234)
    artifact = store_artifact(data, "lab", tmp_path / "model.pt").name
    run = registry.create_run(EXPERIMENT, pb.Run())
    with pytest.raises(InvalidArgument, match=re.escape(f"artifact.size_bytes is 99, but {artifact} holds 1234 bytes")):
        registry.add_artifact(run.name, "model.pt", artifact, 99)
    added = registry.add_artifact(run.name, "model.pt", artifact, 0)
    assert [(a.path, a.size_bytes) for a in added.artifacts] == [("model.pt", 1234)]
