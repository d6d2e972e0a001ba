"""The MLflow workers (run with the MLflow venv's python): registering, searching, logging."""

from __future__ import annotations

import time
from typing import Any

from .config import MLFLOW_FILTER, Result
from .workload import baseline_step, drive, latencies, timed_phases, training_loop, version_data


def mlflow_client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def mlflow_experiment(client: Any, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return str(found.experiment_id) if found else str(client.create_experiment(name))


def mlflow_register_one(client: Any, experiment: str, model: str, index: int) -> dict[str, float]:
    """A run with the version's params and metrics, then the version from the run."""
    from mlflow.entities import Metric, Param

    accuracy, loss, lr, batch = version_data(index)
    state: dict[str, Any] = {}

    def log() -> None:
        stamp = int(time.time() * 1000)
        metrics = [Metric("val_accuracy", accuracy, stamp, 1), Metric("loss", loss, stamp, 1)]
        client.log_batch(state["run"].info.run_id, metrics=metrics, params=[Param("lr", lr), Param("batch", batch)])

    def version() -> None:
        info = state["run"].info
        client.create_model_version(model, f"{info.artifact_uri}/model", info.run_id)

    return timed_phases(
        ("create_run", lambda: state.update(run=client.create_run(experiment))),
        ("log_batch", log),
        ("create_model_version", version),
    )


def worker_mlflow_register(spec: Result) -> Result:
    client = mlflow_client(spec["uri"])
    experiment = mlflow_experiment(client, spec["experiment"])
    if client.search_registered_models(f"name = '{spec['model']}'") == []:
        client.create_registered_model(spec["model"])
    one = lambda index: mlflow_register_one(client, experiment, spec["model"], index)  # noqa: E731
    return drive(spec["count"], spec["start"], spec["threads"], one, spec.get("start_at"))


def worker_mlflow_search(spec: Result) -> Result:
    client = mlflow_client(spec["uri"])
    experiment = mlflow_experiment(client, spec["experiment"])

    def best() -> tuple[float, list[Any]]:
        runs = client.search_runs([experiment], MLFLOW_FILTER, order_by=["metrics.val_accuracy DESC"], max_results=1)
        versions = client.search_model_versions(f"run_id = '{runs[0].info.run_id}'")
        return float(runs[0].data.metrics["val_accuracy"]), list(versions)

    times, (accuracy, versions) = latencies(spec["calls"], best)
    return {"times": times, "answer": accuracy if versions else None}


def worker_mlflow_log(spec: Result) -> Result:
    import mlflow

    steps = spec["points"] // spec["per_step"]
    base = baseline_step(steps, spec["per_step"], spec["work"])
    mlflow.set_tracking_uri(spec["uri"])
    mlflow.set_experiment(spec["experiment"])
    run = mlflow.start_run()
    mlflow.log_params({"lr": 0.01, "batch": 64})
    synchronous = bool(spec["synchronous"])

    def log(metrics: dict[str, float], step: int) -> None:
        mlflow.log_metrics(metrics, step=step, synchronous=synchronous)

    result = training_loop(steps, spec["per_step"], spec["work"], log)
    result["baseline_step"] = base
    began = time.perf_counter()
    if not synchronous:
        mlflow.flush_async_logging()
    mlflow.end_run()
    result["flush"] = time.perf_counter() - began
    result["run_id"] = run.info.run_id
    return result
