"""The Atelier workers (run with .venv/bin/python): registering, filling, searching, logging."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

from .config import ATELIER_FILTER, PROJECT, Result, atelier_module
from .workload import baseline_step, drive, latencies, timed_phases, training_loop, version_data


def atelier_version(spec: Result, index: int) -> Any:
    pb = atelier_module("atelier.registry.v1.resources_pb2")
    accuracy, loss, lr, batch = version_data(index)
    return pb.ModelVersion(
        artifact=spec["artifact"],
        format=pb.MODEL_FORMAT_TORCHSCRIPT,
        metrics={"val_accuracy": accuracy, "loss": loss},
        lineage=pb.Lineage(params={"lr": lr, "batch": batch}),
        author="bench",
    )


def atelier_full(registry: Any, spec: Result, index: int) -> dict[str, float]:
    """What the SDK does: a run with params, its metrics, a version registered from the run."""
    pb = atelier_module("atelier.registry.v1.resources_pb2")
    accuracy, loss, lr, batch = version_data(index)
    state: dict[str, Any] = {}
    metrics = [
        pb.MetricPoint(key="val_accuracy", step=1, value=accuracy),
        pb.MetricPoint(key="loss", step=1, value=loss),
    ]

    def version() -> Any:
        lineage = pb.Lineage(run=state["run"].name)
        made = pb.ModelVersion(artifact=spec["artifact"], format=pb.MODEL_FORMAT_TORCHSCRIPT, lineage=lineage)
        return registry.create_version(spec["model"], made)

    return timed_phases(
        (
            "CreateRun",
            lambda: state.update(
                run=registry.create_run(spec["experiment"], pb.Run(params={"lr": lr, "batch": batch}))
            ),
        ),
        ("LogRunData", lambda: registry.log(state["run"].name, metrics=metrics)),
        ("CreateModelVersion", version),
    )


def create_parents(registry: Any, spec: Result) -> None:
    """Create the model and the experiment before the threads start: the first CreateModelVersion (or
    CreateRun) of several threads at once would each try to create them, and all but one fail."""
    errors = atelier_module("atelier.errors")
    rpc = atelier_module("atelier.registry.v1.registry_service_pb2")
    model = rpc.CreateRegisteredModelRequest(
        parent=f"projects/{PROJECT}", registered_model_id=spec["model"].split("/")[-1]
    )
    experiment = spec["experiment"].split("/")[-1]
    with suppress(errors.AlreadyExists):
        registry.call(registry.stub.CreateRegisteredModel, model)
    with suppress(errors.AlreadyExists):
        registry.create_experiment(PROJECT, experiment)


def worker_atelier_register(spec: Result) -> Result:
    RegistryClient = atelier_module("atelier.client").RegistryClient

    registry = RegistryClient.at(spec["address"])
    create_parents(registry, spec)

    def inline(index: int) -> dict[str, float]:
        return timed_phases(
            ("CreateModelVersion", lambda: registry.create_version(spec["model"], atelier_version(spec, index)))
        )

    if spec["mode"] == "batch":
        return register_batches(registry, spec)
    one = inline if spec["mode"] == "inline" else (lambda index: atelier_full(registry, spec, index))
    return drive(spec["count"], spec["start"], spec["threads"], one, spec.get("start_at"))


def register_batches(registry: Any, spec: Result) -> Result:
    """The versions in BatchCreateModelVersions calls of spec["batch"] each; figures per version,
    but the phase (the call's mean latency) per call."""
    size = spec["batch"]

    def batch(index: int) -> dict[str, float]:
        first = index * size
        versions = [atelier_version(spec, i) for i in range(first, first + size)]
        return timed_phases(
            (f"BatchCreateModelVersions ({size} versions)", lambda: registry.create_versions(spec["model"], versions))
        )

    result = drive(spec["count"] // size, spec["start"] // size, spec["threads"], batch, spec.get("start_at"))
    for key in ("count", "errors", "rate"):
        result[key] *= size
    result["cpu"] = {name: seconds / size for name, seconds in result["cpu"].items()}
    return result


def worker_atelier_fill(spec: Result) -> Result:
    """Versions start..start+count-1 of the search model written straight into the registry's
    SQLite file by the registry's own group writer, 1,000 per group, without pins."""
    create_engine = atelier_module("atelier.runtime.database").create_engine
    registration = atelier_module("services.registry.registration")
    numeric = atelier_module("services.registry.runs").numeric
    engine = create_engine(spec["database"])
    with engine.connect() as connection:
        model_id = connection.exec_driver_sql(
            "SELECT id FROM reg_models WHERE project = ? AND name = ?", (PROJECT, spec["model"])
        ).scalar_one()

    class NoPins:
        def pin_groups(self, project: str, groups: Sequence[tuple[list[str], str]]) -> list[list[str]]:
            return [[] for _ in groups]

    writer = registration.Registrations(engine, NoPins(), lambda: dt.datetime.now(dt.UTC))
    began = time.perf_counter()
    end = spec["start"] + spec["count"]
    for first in range(spec["start"], end, 1000):
        group = []
        for index in range(first, min(first + 1000, end)):
            accuracy, loss, lr, batch = version_data(index)
            metrics = {"val_accuracy": accuracy, "loss": loss}
            row = {"artifact": spec["artifact"], "format": 1, "signature": {}, "metrics": metrics, "tags": {}}
            row |= {"lineage": {"params": {"lr": lr, "batch": batch}}, "author": "bench"}
            params = {"lr": (lr, numeric(lr)), "batch": (batch, numeric(batch))}
            group.append(
                registration.Registration(
                    project=PROJECT,
                    model_id=model_id,
                    model_name=spec["model"],
                    row=row,
                    metrics=metrics,
                    params=params,
                    tags={},
                    datasets=[],
                    targets=[],
                )
            )
        batch = registration.Batch(group)
        writer.write([batch])
        if batch.error is not None:
            raise batch.error
    engine.dispose()
    seconds = time.perf_counter() - began
    return {"count": spec["count"], "seconds": seconds, "rate": spec["count"] / seconds}


def worker_atelier_search(spec: Result) -> Result:
    RegistryClient = atelier_module("atelier.client").RegistryClient

    registry = RegistryClient.at(spec["address"])
    times, best = latencies(spec["calls"], lambda: registry.best_version(spec["model"], "val_accuracy", ATELIER_FILTER))
    return {"times": times, "answer": best.metrics["val_accuracy"] if best else None}


def count_points(registry: Any, run: str, key: str) -> int:
    rpc = atelier_module("atelier.registry.v1.registry_service_pb2")
    request = rpc.ListMetricHistoryRequest(run=run, key=key, page_size=100_000)
    return sum(1 for _ in registry.pages(registry.stub.ListMetricHistory, request, "points"))


def worker_atelier_log(spec: Result) -> Result:
    atelier = atelier_module("atelier")
    steps = spec["points"] // spec["per_step"]
    base = baseline_step(steps, spec["per_step"], spec["work"])
    run = atelier.start_run(experiment="log-bench", params={"lr": 0.01, "batch": 64}, capture_code=False)
    result = training_loop(steps, spec["per_step"], spec["work"], run.log_metrics)
    result["baseline_step"] = base
    began = time.perf_counter()
    report = run.end()
    result["flush"] = time.perf_counter() - began
    result["lost"] = report.lost
    began = time.perf_counter()
    stored = run.registry.get_run(run.name)
    result["arrived"] = sum(count_points(run.registry, run.name, key) for key in stored.metrics)
    result["check_seconds"] = time.perf_counter() - began
    return result
