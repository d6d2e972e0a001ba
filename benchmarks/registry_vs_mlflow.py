"""Atelier's registry service side by side with MLflow 3, on the same machine, over the network.

Atelier runs as real processes (`python -m services.data`, `python -m services.registry`, SQLite
under a fresh ATELIER_HOME; optionally a second registry on a scratch PostgreSQL database), driven
over gRPC by `atelier.client`. MLflow runs from its own venv (created here under
benchmarks/.work/mlflow-venv) as `mlflow server` on a SQLite file, driven over HTTP by
`MlflowClient`, plus MlflowClient writing to SQLite directly for reference. Every load generator
is a fresh worker process (this file run with `--worker`), so neither tool's client shares an
interpreter with anything else. Measured:

1. Registering model versions with 8 client threads against one server: versions/s. By default the
   threads share one client process; `--clients N` spreads them over N processes (as N users' jobs
   registering at once would be), started together, for both tools.
   Atelier: one CreateModelVersion per version, carrying its metrics (val_accuracy, loss) and
   params (lr, batch, as lineage params); also the like-for-like path CreateRun (params) +
   LogRunData (metrics) + CreateModelVersion (lineage.run; metrics and params come from the run).
   MLflow: what a user does to give a version metrics: create_run, log_batch (metrics + params),
   create_model_version(source, run_id), through the tracking server and directly on SQLite.
   Also Atelier's BatchCreateModelVersions, 100 versions a call from the same 8 threads (MLflow has
   no batch registration API, so its row compares with MLflow's one-by-one path).
2. With many versions registered in one model, "the best version by val_accuracy among those with
   lr < 0.01": Atelier ListModelVersions(order_by="metrics.val_accuracy desc",
   filter="params.lr < 0.01", page_size=1) over gRPC; MLflow's two steps (search_runs ordered by
   metrics.val_accuracy with a params filter, then search_model_versions by run_id) through the
   server. Median and p99 latency, the answer checked against the generated data, and for Atelier
   a breakdown (gRPC end to end / the registry's query code in-process / the raw SQL) with the
   SQLite query plan.
3. Logging 1,000,000 metric points from one run: a training loop doing a fixed amount of CPU work
   per step (calibrated to ~1 ms) and logging N metrics per step; the time spent inside the logging
   calls as a % of the loop's wall time, the flush at the end, the loop's slowdown against the same
   loop without logging, and whether every point arrived. Atelier: `run.log_metrics` of
   `atelier.start_run`; MLflow: `mlflow.log_metrics`, synchronous and with `synchronous=False`.

Results are a markdown table on stdout; `--write-docs` also replaces the "## Registry vs MLflow"
section of docs/performance.md. Nothing here asserts on a timing.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import gc
import importlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / ".work"
MLFLOW_VENV = WORK / "mlflow-venv"
SCRATCH = WORK / "registry-run"
PYTHON = REPO / ".venv" / "bin" / "python"
DOCS = REPO / "docs" / "performance.md"
SECTION = "## Registry vs MLflow"
PROJECT = "bench"
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
BATCH_SIZE = 100  # versions per BatchCreateModelVersions call
LRS = ("0.1", "0.03", "0.01", "0.003", "0.001", "0.0003")
BATCHES = ("32", "64", "128")
ATELIER_FILTER = "params.lr < 0.01"
# MLflow compares params as strings only (`<` is refused); for the lr values above, "< 0.01" is
# exactly "starts with 0.00".
MLFLOW_FILTER = "params.lr LIKE '0.00%'"
RESULT = "RESULT "
# Benchmarks that must not share the machine with a timed step of this one.
OTHERS = ("benchmarks/data_vs_dvc.py",)
# Other work on the machine (cores, on average) above which a step counts as measured under load,
# and below which one starts (unless --no-wait).
FOREIGN_LIMIT = 0.25
QUIET_LIMIT = 0.1
WORKER_TIMEOUT = 4 * 3600.0
Result = dict[str, Any]


def atelier_module(name: str) -> Any:
    """An Atelier module imported at run time: the MLflow venv's workers lack Atelier, and a dynamic
    import keeps `mypy benchmarks/registry_vs_mlflow.py` to this file rather than all of Atelier."""
    return importlib.import_module(name)


# Configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    threads: int
    clients: int
    register: int
    register_full: int
    register_batch: int
    register_pg: int
    search_versions: int
    mlflow_register: int
    mlflow_direct: int
    mlflow_search_versions: int
    search_calls: int
    log_points: int
    metrics_per_step: int
    mlflow_sync_points: int
    mlflow_async_points: int
    step_ms: float
    postgres: bool
    fill_directly: bool
    wait: bool
    write_docs: bool
    keep: bool


# (full default, --quick)
_COUNTS: dict[str, tuple[int, int]] = {
    "register": (10_000, 1_000),
    "register_full": (2_000, 300),
    "register_batch": (10_000, 1_000),
    "register_pg": (3_000, 500),
    "search_versions": (100_000, 5_000),
    "mlflow_register": (1_000, 100),
    "mlflow_direct": (1_000, 100),
    "mlflow_search_versions": (10_000, 1_000),
    "search_calls": (200, 50),
    "log_points": (1_000_000, 100_000),
    "mlflow_sync_points": (20_000, 2_000),
    "mlflow_async_points": (100_000, 20_000),
}


def parse_args(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--threads", type=int, default=8, help="client threads for registrations (default 8)")
    parser.add_argument(
        "--clients", type=int, default=1, help="client processes the registration threads are spread over (default 1)"
    )
    for name, (full, quick) in _COUNTS.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=int, help=f"default {full:,}; --quick {quick:,}")
    parser.add_argument("--metrics-per-step", type=int, default=10, help="metrics logged per step (default 10)")
    parser.add_argument("--step-ms", type=float, default=1.0, help="CPU work per training step in ms (default 1)")
    parser.add_argument("--no-postgres", action="store_true", help="skip Atelier on PostgreSQL")
    parser.add_argument(
        "--no-wait", action="store_true", help=f"start steps without waiting for a quiet machine ({', '.join(OTHERS)})"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run with small counts")
    parser.add_argument("--write-docs", action="store_true", help=f"replace '{SECTION}' in docs/performance.md")
    parser.add_argument("--keep", action="store_true", help="keep the scratch data under benchmarks/.work")
    parser.add_argument(
        "--fill-directly",
        action="store_true",
        help="add the search model's versions beyond --register straight into the registry's database "
        "(its own group writer, no pins) instead of over gRPC: minutes instead of most of the run",
    )
    args = parser.parse_args(argv)
    counts = {name: getattr(args, name) or pair[1 if args.quick else 0] for name, pair in _COUNTS.items()}
    if counts["search_versions"] < counts["register"] or counts["mlflow_search_versions"] < counts["mlflow_direct"]:
        parser.error("--search-versions >= --register and --mlflow-search-versions >= --mlflow-direct")
    if args.threads < 1 or args.metrics_per_step < 1 or args.step_ms <= 0:
        parser.error("--threads, --metrics-per-step and --step-ms must be positive")
    if not 1 <= args.clients <= args.threads:
        parser.error(f"--clients must be 1 to --threads ({args.threads}): each client process runs at least one thread")
    return Config(
        threads=args.threads,
        clients=args.clients,
        metrics_per_step=args.metrics_per_step,
        step_ms=args.step_ms,
        postgres=not args.no_postgres,
        fill_directly=args.fill_directly,
        wait=not args.no_wait,
        write_docs=args.write_docs,
        keep=args.keep,
        **counts,
    )


# Shared by every worker: the generated versions, the load driver, the training loop ------------


def version_data(index: int) -> tuple[float, float, str, str]:
    """val_accuracy, loss, lr and batch of the `index`-th version (the same for both tools)."""
    rng = random.Random(index)
    return rng.random(), rng.random(), LRS[rng.randrange(len(LRS))], BATCHES[rng.randrange(len(BATCHES))]


def expected_best(count: int) -> float:
    """The highest val_accuracy among the first `count` versions with lr < 0.01."""
    best = -1.0
    for index in range(count):
        accuracy, _, lr, _ = version_data(index)
        if float(lr) < 0.01:
            best = max(best, accuracy)
    return best


def drive(
    count: int, start: int, threads: int, one: Callable[[int], dict[str, float]], start_at: float | None = None
) -> Result:
    """Call `one(i)` for i in start..start+count-1 from `threads` threads; wall time, errors and the
    mean seconds of each phase `one` reports. With `start_at` (a `time.time()`), the threads start
    then, and the wall time counts from then: several client processes start together."""
    indices = itertools.count(start)
    lock = threading.Lock()
    phases: dict[str, float] = {}
    errors: list[str] = []

    def loop() -> None:
        while (index := next(indices)) < start + count:
            try:
                timings = one(index)
            except Exception as error:  # noqa: BLE001 - counted and reported, the load goes on
                with lock:
                    errors.append(f"{type(error).__name__}: {error}"[:300])
                continue
            with lock:
                for phase, seconds in timings.items():
                    phases[phase] = phases.get(phase, 0.0) + seconds

    workers = [threading.Thread(target=loop, name=f"client-{n}") for n in range(threads)]
    cpu = time.process_time()
    if start_at is not None:
        time.sleep(max(start_at - time.time(), 0.0))
    began = time.perf_counter() - (max(time.time() - start_at, 0.0) if start_at is not None else 0.0)
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - began
    done = count - len(errors)
    return {
        "cpu": {"client": (time.process_time() - cpu) / max(done, 1)},
        "count": done,
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "seconds": wall,
        "rate": done / wall if wall > 0 else 0.0,
        "phases": {p: s / max(done, 1) for p, s in phases.items()},
    }


def timed_phases(*steps: tuple[str, Callable[[], Any]]) -> dict[str, float]:
    """Run the steps in order, timing each."""
    timings: dict[str, float] = {}
    for name, step in steps:
        began = time.perf_counter()
        step()
        timings[name] = time.perf_counter() - began
    return timings


def busy(iterations: int) -> int:
    """A fixed amount of pure-Python CPU work (it holds the GIL, like most training-loop glue)."""
    total = 0
    for value in range(iterations):
        total += value * value
    return total


def calibrate(step_ms: float) -> int:
    """Iterations of `busy` that take about `step_ms` here."""
    probe = 100_000
    busy(probe)
    samples = []
    for _ in range(15):
        began = time.perf_counter()
        busy(probe)
        samples.append(time.perf_counter() - began)
    return max(1, int(probe * step_ms / 1000 / statistics.median(samples)))


def metric_names(count: int) -> list[str]:
    return [f"m{k:02d}" for k in range(count)]


def training_loop(steps: int, per_step: int, work: int, log: Callable[[dict[str, float], int], Any]) -> Result:
    """`steps` steps of `busy(work)` then `log(metrics, step)`: wall time, time inside `log`, and the
    garbage collector's pauses (all of them, and those inside `log`)."""
    names = metric_names(per_step)
    state = {"blocked": 0.0, "worst": 0.0, "gc": 0.0, "gc_in_log": 0.0, "gc_start": 0.0, "logging": 0.0}

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            state["gc_start"] = time.perf_counter()
            return
        spent = time.perf_counter() - state["gc_start"]
        state["gc"] += spent
        state["gc_in_log"] += spent * state["logging"]

    gc.callbacks.append(on_gc)
    began = time.perf_counter()
    try:
        for step in range(steps):
            busy(work)
            metrics = {name: step * 1e-3 + k for k, name in enumerate(names)}
            state["logging"] = 1.0
            before = time.perf_counter()
            log(metrics, step)
            spent = time.perf_counter() - before
            state["logging"] = 0.0
            state["blocked"] += spent
            state["worst"] = max(state["worst"], spent)
        wall = time.perf_counter() - began
    finally:
        gc.callbacks.remove(on_gc)
    return {
        "steps": steps,
        "points": steps * per_step,
        "loop": wall,
        "blocked": state["blocked"],
        "worst_call": state["worst"],
        "gc": state["gc"],
        "gc_in_log": state["gc_in_log"],
    }


def baseline_step(steps: int, per_step: int, work: int) -> float:
    """Seconds per step of the same loop without logging (a tenth of its steps, 5,000 to 20,000), here."""
    count = max(1, min(steps, max(5_000, min(steps // 10, 20_000))))
    return float(training_loop(count, per_step, work, lambda metrics, step: None)["loop"]) / count


def latencies(calls: int, query: Callable[[], Any]) -> tuple[list[float], Any]:
    """Seconds of each of `calls` calls of `query` (after 5 untimed ones), and its last answer."""
    answer = None
    for _ in range(5):
        answer = query()
    times = []
    for _ in range(calls):
        began = time.perf_counter()
        answer = query()
        times.append(time.perf_counter() - began)
    return times, answer


# Atelier workers (run with .venv/bin/python) ---------------------------------------------------


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


# MLflow workers (run with the MLflow venv's python) -------------------------------------------


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


WORKERS: dict[str, Callable[[Result], Result]] = {
    "atelier-register": worker_atelier_register,
    "atelier-fill": worker_atelier_fill,
    "atelier-search": worker_atelier_search,
    "atelier-log": worker_atelier_log,
    "mlflow-register": worker_mlflow_register,
    "mlflow-search": worker_mlflow_search,
    "mlflow-log": worker_mlflow_log,
}


def worker_main(name: str, spec_text: str) -> None:
    result = WORKERS[name](json.loads(spec_text))
    print(RESULT + json.dumps(result), flush=True)


# Processes ------------------------------------------------------------------------------------


def atelier_env(**extra: str) -> dict[str, str]:
    # The checkout is not pip-installed into .venv: PYTHONPATH makes `atelier` and `services` importable.
    return {**os.environ, "PYTHONPATH": str(REPO), "ATELIER_PROJECT": PROJECT, **extra}


def mlflow_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{MLFLOW_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["DO_NOT_TRACK"] = "true"
    return env


def run_command(command: Sequence[str | Path], env: dict[str, str], timeout: float, log: Path | None = None) -> str:
    """Run to completion; stdout (stderr goes to `log`, and its tail is shown on failure)."""
    done = subprocess.run(
        [str(c) for c in command], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if log is not None:
        with open(log, "a") as handle:
            handle.write(done.stderr)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise RuntimeError(f"{' '.join(str(c) for c in command)[:300]} exited with {done.returncode}")
    return done.stdout


def worker(name: str, spec: Result) -> Result:
    """Run one measurement in a fresh process of the tool's own Python."""
    mlflow = name.startswith("mlflow")
    python = MLFLOW_VENV / "bin" / "python" if mlflow else PYTHON
    env = mlflow_env() if mlflow else atelier_env(**spec.pop("env", {}))
    log = SCRATCH / f"worker-{name}.log"
    shown = {k: v for k, v in spec.items() if k in ("model", "count", "points", "calls", "synchronous", "mode")}
    print(f"  {time.strftime('%H:%M:%S')} {name} {json.dumps(shown)}", file=sys.stderr, flush=True)
    out = run_command([python, Path(__file__).resolve(), "--worker", name, json.dumps(spec)], env, WORKER_TIMEOUT, log)
    line = next(line for line in reversed(out.splitlines()) if line.startswith(RESULT))
    result: Result = json.loads(line.removeprefix(RESULT))
    return result


def workers(name: str, spec: Result, clients: int) -> Result:
    """`worker`, its threads spread over `clients` processes that start together, each taking its
    share of the versions (numbered apart); their figures combined."""
    if clients == 1:
        return worker(name, spec)
    threads, count = spec["threads"], spec["count"]
    parts = []
    for n in range(clients):
        share = count * (n + 1) // clients - count * n // clients
        part = {**spec, "count": share, "start": spec["start"] + count * n // clients}
        parts.append({**part, "threads": threads * (n + 1) // clients - threads * n // clients})
    # Long enough for every process to start and connect before the first call.
    start_at = time.time() + 3.0 + 0.3 * clients
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda part: worker(name, {**part, "start_at": start_at}), parts))
    done = sum(r["count"] for r in results)
    seconds = max(r["seconds"] for r in results)
    phases = {p for r in results for p in r["phases"]}
    return {
        "cpu": {"client": sum(r["cpu"]["client"] * r["count"] for r in results) / max(done, 1)},
        "count": done,
        "errors": sum(r["errors"] for r in results),
        "first_error": next((r["first_error"] for r in results if r["first_error"]), ""),
        "seconds": seconds,
        "rate": done / seconds if seconds > 0 else 0.0,
        "phases": {p: sum(r["phases"].get(p, 0.0) * r["count"] for r in results) / max(done, 1) for p in phases},
        "clients": clients,
    }


def ensure_mlflow() -> str:
    """Create benchmarks/.work/mlflow-venv with MLflow 3 unless it is there; MLflow's version."""
    python = MLFLOW_VENV / "bin" / "python"
    probe: list[str | Path] = [python, "-c", "import mlflow; print(mlflow.__version__)"]
    if python.exists():
        version = run_command(probe, mlflow_env(), 300).strip()
        if version.startswith("3."):
            return version
        shutil.rmtree(MLFLOW_VENV)
    WORK.mkdir(parents=True, exist_ok=True)
    print("creating the MLflow venv (python3 -m venv; pip install 'mlflow>=3,<4')", file=sys.stderr, flush=True)
    run_command(["python3", "-m", "venv", MLFLOW_VENV], mlflow_env(), 600)
    pip: list[str | Path] = [python, "-m", "pip", "install", "-q"]
    run_command([*pip, "--upgrade", "pip"], mlflow_env(), 1800)
    run_command([*pip, "mlflow>=3,<4"], mlflow_env(), 3600)
    return run_command(probe, mlflow_env(), 300).strip()


def stop(process: subprocess.Popen[bytes], group: bool = False) -> None:
    """SIGTERM (to the process group it leads when `group`), then SIGKILL after a minute."""
    if process.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)
        try:
            process.wait(timeout=60)
            return
        except subprocess.TimeoutExpired:
            continue


def start_service(
    module: str, env: dict[str, str], address_file: Path, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m <module>`; its process and the address it published."""
    with open(log, "ab") as handle:
        process = subprocess.Popen(
            [str(PYTHON), "-m", module], cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 120
    while True:
        try:
            return process, str(json.loads(address_file.read_text())["address"])
        except (OSError, ValueError, KeyError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise RuntimeError(f"{module} did not start; see {log}")
        time.sleep(0.1)


@dataclass
class Stack:
    """A data service and registries on one ATELIER_HOME."""

    home: Path
    data_address: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)

    def start_data(self) -> None:
        address_file = self.home / "run" / "data.json"
        env = atelier_env(
            ATELIER_HOME=str(self.home), ATELIER_DATA_ADDRESS_FILE=str(address_file), ATELIER_DATA_PORT="0"
        )
        process, self.data_address = start_service("services.data", env, address_file, self.home / "data.log")
        self.processes.append(process)
        self.pids["data"] = process.pid

    def start_registry(self, label: str, database_url: str = "") -> str:
        address_file = self.home / "run" / f"{label}.json"
        env = atelier_env(
            ATELIER_HOME=str(self.home),
            ATELIER_DATA_ADDRESS=self.data_address,
            ATELIER_REGISTRY_ADDRESS_FILE=str(address_file),
            ATELIER_REGISTRY_PORT="0",
        )
        if database_url:
            env["ATELIER_REGISTRY_DATABASE_URL"] = database_url
        process, address = start_service("services.registry", env, address_file, self.home / f"{label}.log")
        self.processes.append(process)
        self.pids[label] = process.pid
        return address

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop(process)


@contextmanager
def atelier_stack(home: Path) -> Iterator[Stack]:
    home.mkdir(parents=True)
    stack = Stack(home)
    try:
        stack.start_data()
        yield stack
    finally:
        stack.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds the live processes `pids` have used so far."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def group_pids(group: int) -> list[int]:
    """The processes of a process group (the MLflow server and its workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == group:
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def with_server_cpu(servers: dict[str, Callable[[], list[int]]], run: Callable[[], Result]) -> Result:
    """`run()`, adding the CPU seconds per version each server process (group) used meanwhile."""
    before = {name: cpu_seconds(pids()) for name, pids in servers.items()}
    result = run()
    for name, pids in servers.items():
        result["cpu"][name] = (cpu_seconds(pids()) - before[name]) / max(result["count"], 1)
    return result


@contextmanager
def mlflow_server(database: Path) -> Iterator[tuple[str, int]]:
    """`mlflow server` (default workers) on a SQLite file; its URL and process group."""
    port = free_port()
    command = [
        str(MLFLOW_VENV / "bin" / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{database}",
        "--artifacts-destination",
        str(SCRATCH / "mlartifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with open(SCRATCH / f"mlflow-server-{database.stem}.log", "ab") as log:
        process = subprocess.Popen(
            command, cwd=SCRATCH, env=mlflow_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        wait_settled(process.pid)
        yield url, process.pid
    finally:
        stop(process, group=True)


def wait_settled(group: int, timeout: float = 240.0) -> None:
    """Wait until the server's processes are idle: MLflow 3 starts its job runner and huey consumers
    after it answers /health, and their start-up would eat into the first measurement."""
    deadline = time.monotonic() + timeout
    previous = cpu_seconds(group_pids(group))
    while time.monotonic() < deadline:
        time.sleep(3)
        current = cpu_seconds(group_pids(group))
        if current - previous < 0.15:
            return
        previous = current


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"mlflow server did not start; see {SCRATCH}/mlflow-server-*.log")
        time.sleep(0.5)


@contextmanager
def postgres_database(enabled: bool) -> Iterator[str]:
    """A scratch PostgreSQL database (dropped afterwards); "" when disabled or unreachable."""
    if not enabled:
        yield ""
        return
    try:
        import psycopg

        admin = psycopg.connect(f"{POSTGRES}/postgres", autocommit=True, connect_timeout=5)
    except Exception as error:  # noqa: BLE001 - PostgreSQL is optional here
        print(f"PostgreSQL unavailable, skipping it: {error}", file=sys.stderr)
        yield ""
        return
    name = f"atelier_bench_registry_{os.getpid()}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


# The measurements -----------------------------------------------------------------------------


@dataclass
class Report:
    """Everything measured, and how much other work shared the machine during each step: the
    benchmarks named in OTHERS, and CPU used by any process that is not this script or one it
    started."""

    wait: bool = True
    figures: dict[str, Any] = field(default_factory=dict)
    loads: list[tuple[str, float, bool]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _foreign: float = 0.0
    _others_seen: bool = False

    def __post_init__(self) -> None:
        threading.Thread(target=self._watch, name="watch-machine", daemon=True).start()

    def _watch(self) -> None:
        """Every 2 s: the CPU seconds the machine spent outside this script's process tree."""
        busy, mine = machine_busy(), tree_cpu(os.getpid())
        while True:
            time.sleep(2)
            now_busy, now_mine = machine_busy(), tree_cpu(os.getpid())
            others = others_running()
            with self._lock:
                self._foreign += max(0.0, (now_busy - busy) - (now_mine - mine))
                self._others_seen |= others
            busy, mine = now_busy, now_mine

    def _take(self) -> tuple[float, bool]:
        with self._lock:
            taken = self._foreign, self._others_seen
            self._foreign, self._others_seen = 0.0, False
        return taken

    def measure(self, key: str, label: str, step: Callable[[], Result]) -> Result:
        """Run a timed step once the machine is quiet (unless --no-wait), recording how many cores
        other work took meanwhile: figures taken under load are reported as such, not retried."""
        self._wait_quiet()
        self._take()
        began = time.perf_counter()
        result = step()
        foreign, others = self._take()
        result["foreign_cores"] = foreign / max(time.perf_counter() - began, 1e-9)
        self.loads.append((label, result["foreign_cores"], others))
        self.figures[key] = result
        print(f"  {label}: {summary(result)}", file=sys.stderr, flush=True)
        return result

    def _wait_quiet(self, window: float = 10.0, patience: float = 3600.0) -> None:
        """Wait (at most `patience` seconds) for a `window` with no other benchmark and other work
        under QUIET_LIMIT cores."""
        deadline = time.monotonic() + patience
        while self.wait and time.monotonic() < deadline:
            self._take()
            time.sleep(window)
            foreign, others = self._take()
            if foreign / window <= QUIET_LIMIT and not others:
                return
            why = "another benchmark is running" if others else f"other work takes {foreign / window:.2f} cores"
            print(f"  {time.strftime('%H:%M:%S')} waiting: {why}", file=sys.stderr, flush=True)


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy so far (all cores, everything but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> float:
    """CPU seconds of `root` and its live descendants, with the children each has reaped."""
    own: dict[int, int] = {}
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split() if entry.name.isdigit() else []
        except OSError:
            continue
        if fields:
            own[int(entry.name)] = sum(int(v) for v in fields[11:15])
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += own.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total / os.sysconf("SC_CLK_TCK")


def others_running() -> bool:
    """Whether another benchmark named in OTHERS is running."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if any(other.encode() in command for other in OTHERS):
            return True
    return False


def summary(value: Any) -> str:
    if isinstance(value, dict):
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in value.items() if k != "times"}
        return json.dumps(shown)[:400]
    return str(value)


def make_artifact(stack: Stack) -> str:
    DataClient = atelier_module("atelier.client").DataClient
    store_artifact = atelier_module("atelier.datasets.push").store_artifact
    weights = SCRATCH / "model.pt"
    weights.write_bytes(b"benchmark weights " * 64)
    client = DataClient.at(stack.data_address)
    try:
        return str(store_artifact(client, PROJECT, weights).name)
    finally:
        client.close()


def register_atelier(
    address: str, artifact: str, model: str, count: int, start: int, config: Config, mode: str, batch: int = BATCH_SIZE
) -> Result:
    spec = {
        "address": address,
        "artifact": artifact,
        "model": f"projects/{PROJECT}/models/{model}",
        "experiment": f"projects/{PROJECT}/experiments/{model}",
        "count": count,
        "start": start,
        "threads": config.threads,
        "mode": mode,
        "batch": batch,
    }
    return workers("atelier-register", spec, config.clients)


@dataclass
class Filling:
    """Versions of one model numbered 0..next-1 so far (a repeated step registers new ones)."""

    register: Callable[[int, int], Result]
    next: int = 0

    def add(self, count: int) -> Result:
        result = self.register(count, self.next)
        self.next += count
        return result


def measure_atelier(report: Report, config: Config, stack: Stack, work: int) -> None:
    """(1) on SQLite, (2) and (3) for Atelier."""
    address = stack.start_registry("registry")
    artifact = make_artifact(stack)
    report.figures["at_artifact"] = artifact
    servers = atelier_servers(stack, "registry")

    def register(model: str, count: int, start: int, mode: str) -> Result:
        return with_server_cpu(servers, lambda: register_atelier(address, artifact, model, count, start, config, mode))

    search = Filling(lambda count, start: register("search", count, start, "inline"))
    full = Filling(lambda count, start: register("full", count, start, "full"))
    report.measure("at_1a", "atelier 1a", lambda: search.add(config.register))
    report.measure("at_1b", "atelier 1b", lambda: full.add(config.register_full))
    if config.register_batch:
        batched = Filling(lambda count, start: register("batched", count, start, "batch"))
        report.measure("at_1f", "atelier 1f (batched)", lambda: batched.add(config.register_batch))
    if search.next < config.search_versions:
        rest = config.search_versions - search.next
        report.figures["at_fill_from"] = search.next
        if config.fill_directly:
            database = f"sqlite:///{stack.home / 'registry.db'}"
            fill = {"database": database, "model": "search", "artifact": artifact, "start": search.next, "count": rest}
            report.figures["at_fill_direct"] = worker("atelier-fill", fill)
            search.next += rest
        else:
            report.measure("at_fill", "atelier 1e (filling the model)", lambda: search.add(rest))
    report.figures["at_search_count"] = search.next
    model = f"projects/{PROJECT}/models/search"
    query = {"address": address, "model": model, "calls": config.search_calls}
    report.measure("at_search", "atelier 2", lambda: worker("atelier-search", query))
    report.measure("at_breakdown", "atelier 2, breakdown", lambda: search_breakdown(stack, config))
    env = {"ATELIER_DATA_ADDRESS": stack.data_address, "ATELIER_REGISTRY_ADDRESS": address}
    spec = {"points": config.log_points, "per_step": config.metrics_per_step, "work": work}
    report.measure("at_log", "atelier 3", lambda: worker("atelier-log", {**spec, "env": env}))


def atelier_servers(stack: Stack, registry: str) -> dict[str, Callable[[], list[int]]]:
    return {"registry": lambda: [stack.pids[registry]], "data service": lambda: [stack.pids["data"]]}


def measure_postgres(report: Report, config: Config, stack: Stack) -> None:
    with postgres_database(config.postgres) as url:
        if not url:
            return
        address = stack.start_registry("registry-postgres", url)
        artifact = report.figures["at_artifact"]
        servers = atelier_servers(stack, "registry-postgres")
        versions = Filling(
            lambda count, start: with_server_cpu(
                servers, lambda: register_atelier(address, artifact, "postgres", count, start, config, "inline")
            )
        )
        report.measure("at_pg", "atelier 1d (PostgreSQL)", lambda: versions.add(config.register_pg))
        stop(stack.processes.pop())


def search_breakdown(stack: Stack, config: Config) -> Result:
    """The best-version query three ways: the registry's own code in this process (ORM + SQL, no
    gRPC), the raw SQL it sends on a plain sqlite3 connection, and SQLite's plan for it."""
    import sqlalchemy as sa

    DataClient = atelier_module("atelier.client").DataClient
    create_engine = atelier_module("atelier.runtime.database").create_engine
    DataLink = atelier_module("services.registry.datalink").DataLink
    Models = atelier_module("services.registry.models").Models
    Tracking = atelier_module("services.registry.runs").Tracking

    database = stack.home / "registry.db"
    engine = create_engine(f"sqlite:///{database}")
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        statements.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    data = DataLink(DataClient.at(stack.data_address))
    models = Models(engine, data, Tracking(engine, data))
    parent = f"projects/{PROJECT}/models/search"

    def query() -> Any:
        return models.list_versions(parent, ATELIER_FILTER, "metrics.val_accuracy desc", 1, "")

    domain, _ = latencies(config.search_calls, query)
    statements.clear()
    query()
    engine.dispose()
    sql, parameters = next((s, p) for s, p in statements if "reg_version_metrics" in s and "ORDER BY" in s)
    connection = sqlite3.connect(database)
    try:
        plan = [str(row[-1]) for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", parameters)]
        raw, _ = latencies(config.search_calls, lambda: connection.execute(sql, parameters).fetchall())
    finally:
        connection.close()
    return {"domain": domain, "raw": raw, "plan": plan, "sql": sql, "statements": len(statements)}


def measure_mlflow_server(report: Report, config: Config, work: int) -> None:
    """(1) through the tracking server, and (3), on a fresh SQLite file."""
    database = SCRATCH / "mlflow-server.db"
    with mlflow_server(database) as (url, group):
        spec = {"uri": url, "model": "register", "experiment": "register", "threads": config.threads}
        versions = Filling(
            lambda count, start: with_server_cpu(
                {"server": lambda: group_pids(group)},
                lambda: workers("mlflow-register", {**spec, "count": count, "start": start}, config.clients),
            )
        )
        report.measure("ml_1b", "mlflow 1b (server)", lambda: versions.add(config.mlflow_register))
        for key, points, synchronous in (
            ("ml_log_sync", config.mlflow_sync_points, True),
            ("ml_log_async", config.mlflow_async_points, False),
        ):
            log_spec = {"uri": url, "experiment": key, "per_step": config.metrics_per_step, "work": work}
            log = {**log_spec, "points": points, "synchronous": synchronous}
            label = f"mlflow 3 ({'synchronous' if synchronous else 'synchronous=False'})"
            report.measure(key, label, lambda log=log: mlflow_log(database, log))  # type: ignore[misc]


def mlflow_log(database: Path, spec: Result) -> Result:
    result = worker("mlflow-log", spec)
    result["arrived"] = mlflow_points(database, result["run_id"])
    return result


def mlflow_points(database: Path, run_id: str) -> int:
    """Metric points of a run in MLflow's database (read directly: the fastest exact count)."""
    with sqlite3.connect(database) as connection:
        row = connection.execute("SELECT COUNT(*) FROM metrics WHERE run_uuid = ?", (run_id,)).fetchone()
    return int(row[0])


def measure_mlflow_direct(report: Report, config: Config) -> None:
    """(1) with MlflowClient on SQLite directly; the same file, filled up, for (2) via the server."""
    database = SCRATCH / "mlflow-search.db"
    spec = {"uri": f"sqlite:///{database}", "model": "search", "experiment": "search", "threads": config.threads}
    versions = Filling(lambda count, start: worker("mlflow-register", {**spec, "count": count, "start": start}))
    report.measure("ml_1c", "mlflow 1c (direct SQLite)", lambda: versions.add(config.mlflow_direct))
    if versions.next < config.mlflow_search_versions:
        rest = config.mlflow_search_versions - versions.next
        report.measure("ml_fill", "mlflow filling (direct SQLite)", lambda: versions.add(rest))
    report.figures["ml_search_count"] = versions.next
    search = {"experiment": "search", "calls": config.search_calls}
    direct = {**search, "uri": spec["uri"]}
    report.measure("ml_search_direct", "mlflow 2 (direct SQLite)", lambda: worker("mlflow-search", direct))
    with mlflow_server(database) as (url, _):
        served = {**search, "uri": url}
        report.measure("ml_search", "mlflow 2 (server)", lambda: worker("mlflow-search", served))


# Report ---------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    if seconds < 0.001:
        return f"{seconds * 1000:.3f} ms"
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def times_text(times: Sequence[float]) -> str:
    return f"{ms(statistics.median(times))} / {ms(percentile(times, 0.99))}"


def rate_text(result: Result) -> str:
    errors = f", **{result['errors']} errors**" if result["errors"] else ""
    return f"{result['rate']:,.0f}/s ({result['count']:,} in {result['seconds']:.1f} s{errors})"


def times_better(ours: float, theirs: float) -> str:
    """How many times better Atelier is, `ours` and `theirs` in the same bigger-is-better unit."""
    if theirs <= 0:
        return "∞"
    return f"{ours / theirs:.1f}x" if ours >= theirs else f"{ours / theirs:.2f}x"


Row = tuple[str, str, str, str, str, bool | None]


def registration_rows(f: dict[str, Any], config: Config) -> list[Row]:
    at, full, server, direct = f["at_1a"], f["at_1b"], f["ml_1b"], f["ml_1c"]
    target = at["rate"] >= 1000
    rows: list[Row] = [
        (
            f"1a. Register versions, {config.threads} threads, SQLite, over the network. Atelier: 1 CreateModelVersion "
            "(metrics + params inline); MLflow server: create_run + log_batch + create_model_version",
            rate_text(at),
            rate_text(server),
            times_better(at["rate"], server["rate"]),
            "Atelier >= 1,000/s",
            target,
        ),
        (
            "1b. Same, like for like: Atelier CreateRun + LogRunData + CreateModelVersion(lineage.run)",
            rate_text(full),
            rate_text(server),
            times_better(full["rate"], server["rate"]),
            "",
            None,
        ),
        (
            "1c. MLflow writing SQLite directly (MlflowClient on sqlite:///, no server; reference) vs Atelier 1a",
            rate_text(at),
            rate_text(direct),
            times_better(at["rate"], direct["rate"]),
            "",
            None,
        ),
    ]
    if "at_1f" in f:
        rows.append(
            (
                f"1f. Atelier BatchCreateModelVersions, {BATCH_SIZE} versions a call, {config.threads} threads (MLflow "
                "has no batch registration API: its one-by-one server path of 1a)",
                rate_text(f["at_1f"]),
                rate_text(server),
                times_better(f["at_1f"]["rate"], server["rate"]),
                "Atelier >= 1,000/s",
                f["at_1f"]["rate"] >= 1000,
            )
        )
    if "at_pg" in f:
        rows.append(("1d. Atelier 1a on PostgreSQL (registry database only)", rate_text(f["at_pg"]), "—", "", "", None))
    if "at_fill" in f:
        start, end = f["at_fill_from"], f["at_search_count"]
        rows.append(
            (
                f"1e. Atelier 1a while the model grows from {start:,} to {end:,} versions",
                rate_text(f["at_fill"]),
                "—",
                "",
                "",
                None,
            )
        )
    return rows


def search_rows(f: dict[str, Any], config: Config) -> list[Row]:
    at, server, direct = f["at_search"], f["ml_search"], f["ml_search_direct"]
    at_median = statistics.median(at["times"])
    label = (
        f"2. Best version by val_accuracy with lr < 0.01, median / p99 of {config.search_calls} calls. Atelier: "
        f"{f['at_search_count']:,} versions in one model, 1 ListModelVersions over gRPC; MLflow: "
        f"{f['ml_search_count']:,} versions in one model, search_runs + search_model_versions via the server"
    )
    return [
        (
            label,
            times_text(at["times"]),
            times_text(server["times"]),
            times_better(statistics.median(server["times"]), at_median),
            "Atelier median < 10 ms",
            at_median < 0.010,
        ),
        (
            "2'. MLflow's two steps on SQLite directly (no server; reference)",
            times_text(at["times"]),
            times_text(direct["times"]),
            times_better(statistics.median(direct["times"]), at_median),
            "",
            None,
        ),
        (
            "2''. Answer equals the best val_accuracy in the generated data",
            answer_text(at["answer"], expected_best(f["at_search_count"])),
            answer_text(server["answer"], expected_best(f["ml_search_count"])),
            "",
            "",
            None,
        ),
    ]


def answer_text(answer: float | None, expected: float) -> str:
    return "yes" if answer is not None and abs(answer - expected) < 1e-12 else f"**no** ({answer} vs {expected})"


def blocked_pct(result: Result) -> float:
    return 100 * float(result["blocked"]) / float(result["loop"])


def logging_rows(f: dict[str, Any], config: Config) -> list[Row]:
    at = f["at_log"]
    rows: list[Row] = [
        (
            f"3a. Time inside the logging calls, % of the loop's wall time ({config.metrics_per_step} metrics/step, "
            f"~{config.step_ms:g} ms CPU/step). MLflow synchronous `mlflow.log_metrics`",
            log_text(at),
            log_text(f["ml_log_sync"]),
            times_better(blocked_pct(f["ml_log_sync"]), blocked_pct(at)),
            "Atelier < 1 %",
            blocked_pct(at) < 1.0,
        ),
        (
            "3b. Same, MLflow `mlflow.log_metrics(..., synchronous=False)`",
            log_text(at),
            log_text(f["ml_log_async"]),
            times_better(blocked_pct(f["ml_log_async"]), blocked_pct(at)),
            "",
            None,
        ),
    ]
    for label, key in (("synchronous", "ml_log_sync"), ("synchronous=False", "ml_log_async")):
        ml = f[key]
        flush = "flush_async_logging + " if "async" in key else ""
        rows += [
            (
                "3c. Loop wall time vs the same loop without logging (run just before in the same process); "
                f"MLflow {label}",
                slowdown(at),
                slowdown(ml),
                "",
                "",
                None,
            ),
            (
                f"3d. Flush at the end (Atelier `run.end()`; MLflow {flush}end_run); MLflow {label}",
                ms(at["flush"]),
                ms(ml["flush"]),
                times_better(ml["flush"], at["flush"]),
                "",
                None,
            ),
            (
                f"3e. Points per second from the first log call to the end of the flush; MLflow {label}",
                f"{ingest(at):,.0f}/s",
                f"{ingest(ml):,.0f}/s",
                times_better(ingest(at), ingest(ml)),
                "",
                None,
            ),
            (
                f"3f. Points that arrived (Atelier: ListMetricHistory, report.lost; MLflow: rows in its database); "
                f"MLflow {label}",
                f"{at['arrived']:,} of {at['points']:,}, lost {at['lost']}",
                f"{ml['arrived']:,} of {ml['points']:,}",
                "",
                "all",
                at["arrived"] == at["points"] and at["lost"] == 0,
            ),
        ]
    return rows


def log_text(result: Result) -> str:
    return (
        f"{blocked_pct(result):.2f} % ({result['blocked']:.2f} s of {result['loop']:.1f} s, "
        f"{result['points']:,} points; slowest call {ms(result['worst_call'])}; GC pauses inside it "
        f"{ms(result['gc_in_log'])} of {ms(result['gc'])})"
    )


def ingest(result: Result) -> float:
    return float(result["points"]) / (float(result["loop"]) + float(result["flush"]))


def slowdown(result: Result) -> str:
    expected = result["baseline_step"] * result["steps"]
    return f"{result['loop']:.1f} s vs {expected:.1f} s (+{100 * (result['loop'] / expected - 1):.1f} %)"


def results_table(f: dict[str, Any], config: Config) -> str:
    rows = registration_rows(f, config) + search_rows(f, config) + logging_rows(f, config)
    lines = [
        "| Measurement | Atelier | MLflow | Atelier advantage | Target | Met |",
        "|---|---:|---:|---:|---|---|",
    ]
    for label, at, ml, ratio, target, met in rows:
        shown = "" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {label} | {at} | {ml} | {ratio} | {target} | {shown} |")
    return "\n".join(lines)


def phases_table(f: dict[str, Any]) -> str:
    """Mean latency of each call of a registration, under the same thread count."""
    lines = ["| Registration path | Call | Mean latency |", "|---|---|---:|"]
    for label, key in REGISTRATIONS:
        for phase, seconds in f.get(key, {}).get("phases", {}).items():
            lines.append(f"| {label} | {phase} | {ms(seconds)} |")
    return "\n".join(lines)


REGISTRATIONS = (
    ("Atelier 1a", "at_1a"),
    ("Atelier 1b", "at_1b"),
    (f"Atelier 1f (batches of {BATCH_SIZE})", "at_1f"),
    ("Atelier 1d (PostgreSQL)", "at_pg"),
    ("Atelier 1e (filling)", "at_fill"),
    ("MLflow server", "ml_1b"),
    ("MLflow direct SQLite", "ml_1c"),
)


def cpu_table(f: dict[str, Any], cores: int) -> str:
    """CPU per registered version by process, and how many of the machine's cores that kept busy."""
    lines = [
        f"| Registration path | versions/s | CPU per version, by process | cores busy (of {cores}) |",
        "|---|---:|---|---:|",
    ]
    for label, key in REGISTRATIONS:
        if key not in f:
            continue
        cpu = f[key]["cpu"]
        parts = ", ".join(f"{name} {ms(seconds)}" for name, seconds in cpu.items())
        busy_cores = sum(cpu.values()) * f[key]["rate"]
        lines.append(
            f"| {label} | {f[key]['rate']:,.0f} | {parts} (total {ms(sum(cpu.values()))}) | {busy_cores:.2f} |"
        )
    return "\n".join(lines)


def breakdown_text(f: dict[str, Any]) -> str:
    b = f["at_breakdown"]
    grpc_median = statistics.median(f["at_search"]["times"])
    lines = [
        "| Atelier best-version query | median | p99 |",
        "|---|---:|---:|",
        f"| over gRPC (client, network, server, SQL) | {times_text(f['at_search']['times']).replace(' / ', ' | ')} |",
        f"| the registry's `Models.list_versions` in-process (ORM + SQL, no gRPC) | "
        f"{times_text(b['domain']).replace(' / ', ' | ')} |",
        f"| its main SQL statement on a plain sqlite3 connection | {times_text(b['raw']).replace(' / ', ' | ')} |",
        "",
        f"gRPC + client + server framework: {ms(grpc_median - statistics.median(b['domain']))} of the median; "
        f"the query makes {b['statements']} SQL statements. SQLite's plan for the main one "
        "(`EXPLAIN QUERY PLAN`):",
        "",
        "```",
        *b["plan"],
        "```",
    ]
    return "\n".join(lines)


def machine() -> str:
    memory = next(
        (
            int(line.split()[1]) // 1024**2
            for line in Path("/proc/meminfo").read_text().splitlines()
            if "MemTotal" in line
        ),
        0,
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        "unknown CPU",
    )
    return f"{os.cpu_count()} CPUs ({cpu}), {memory} GiB RAM, Python {sys.version.split()[0]}"


def git_revision() -> str:
    try:
        return run_command(["git", "rev-parse", "--short", "HEAD"], dict(os.environ), 30).strip()
    except (RuntimeError, OSError):
        return "unknown"


def method_notes(f: dict[str, Any], config: Config) -> list[str]:
    fill = f.get("ml_fill")
    filled = f" ({fill['rate']:.0f} versions/s)" if fill else ""
    direct = f.get("at_fill_direct")
    atelier_fill = (
        f"the first {f['at_fill_from']:,} over gRPC with the 1a path, the other {direct['count']:,} written straight "
        f"into its SQLite file by the registry's own group writer, without pins, at {direct['rate']:,.0f}/s "
        "(`--fill-directly`)"
        if direct
        else "filled over gRPC with the 1a path"
    )
    return [
        "- Atelier: `python -m services.data` and `python -m services.registry` on a fresh `ATELIER_HOME` (SQLite, "
        "WAL, synchronous=NORMAL, the default; the registry's 8 worker threads), clients "
        "`atelier.client.RegistryClient` over gRPC on 127.0.0.1. Every version refers to one artifact stored once; "
        "the registry checks it with the data service once, and pins it for each version: registrations that "
        "arrive together are pinned in one BatchCreatePins call and inserted in one transaction. 1f sends "
        f"{BATCH_SIZE} versions per BatchCreateModelVersions call (all or none; the client builds each call's "
        "messages inside the measurement); MLflow has no call that registers several versions.",
        "- MLflow: `mlflow server --backend-store-uri sqlite:///... --host 127.0.0.1 --port P` with its default "
        "workers, `MlflowClient(tracking_uri=url)`; `create_model_version` keeps its default "
        "`await_creation_for`. Its versions get metrics the only way MLflow has: through the run "
        "(create_run, log_batch with the metrics and params, create_model_version(source=<run artifact uri>/model, "
        "run_id)). Runs are not terminated in either tool.",
        f"- Each measurement's client is a fresh process with {config.threads} threads sharing one client; the "
        "versions' values come from a seeded generator shared by both tools (val_accuracy and loss uniform in "
        f"[0, 1), lr one of {', '.join(LRS)}, batch one of {', '.join(BATCHES)}).",
        f"- Search: Atelier holds {f['at_search_count']:,} versions in the single model `search` ({atelier_fill}); "
        f"MLflow {f['ml_search_count']:,} in the single model `search`, filled by "
        f"MlflowClient directly on SQLite{filled}, then served by `mlflow server` for the timed calls. MLflow "
        "refuses `params.lr < '0.01'` (params compare as strings: `=`, `!=`, `LIKE`, `ILIKE` only) and cannot "
        f'filter or order model versions by metrics, so it runs `search_runs(filter_string="{MLFLOW_FILTER}", '
        'order_by=["metrics.val_accuracy DESC"], max_results=1)` (the same set for these lr values) and then '
        "`search_model_versions(\"run_id = '...'\")`.",
        f"- Logging: one run, {config.metrics_per_step} metrics per step after `busy()` work calibrated to "
        f"~{config.step_ms:g} ms of pure-Python CPU per step (it holds the GIL); `time.perf_counter()` around each "
        "logging call. Atelier: `atelier.start_run(..., capture_code=False)`, `run.log_metrics` (appends to "
        "in-memory arrays; a background thread sends column-wise batches), `run.end()`. MLflow: `mlflow.start_run`, "
        f"`mlflow.log_metrics(..., synchronous=...)` against the tracking server, synchronous for "
        f"{config.mlflow_sync_points:,} points only (one HTTP request per call) and with `synchronous=False` for "
        f"{config.mlflow_async_points:,}.",
    ]


INTRO = (
    "Measured by `benchmarks/registry_vs_mlflow.py`: Atelier's registry service and MLflow 3 on the same "
    'machine, both as servers on 127.0.0.1 backed by SQLite, driven by their own Python clients. "Atelier '
    'advantage" is how many times faster (or less blocked) Atelier is. The targets come from the issue that '
    "asked for this comparison; whether each is met is reported, never asserted."
)


def report_body(report: Report, config: Config, mlflow_version: str) -> str:
    f = report.figures
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            f"{stamp}; Atelier {git_revision()}, MLflow {mlflow_version}; {machine()}.",
            "",
            results_table(f, config),
            "",
            "How it was measured:",
            "",
            *method_notes(f, config),
            "",
            "Mean latency of each call while registering:",
            "",
            phases_table(f),
            "",
            "CPU used per registered version (user + system time of each process over the measurement):",
            "",
            cpu_table(f, os.cpu_count() or 1),
            "",
            "Where the time of Atelier's best-version query goes:",
            "",
            breakdown_text(f),
            "",
            load_text(report),
        ]
    )


def load_text(report: Report) -> str:
    """How busy the machine was with other work during each step."""
    cores = os.cpu_count() or 1
    loaded = [label for label, load, others in report.loads if load > FOREIGN_LIMIT or others]
    verdict = (
        f"**Measured under load**: other work took more than {FOREIGN_LIMIT} core on average during "
        f"{len(loaded)} of {len(report.loads)} steps; their figures are indicative (wall-clock rates and "
        "latencies suffer most; CPU per version less so)."
        if loaded
        else f"The machine was quiet: other work took at most {FOREIGN_LIMIT} core during every step."
    )
    lines = [
        verdict,
        "",
        f"| Step | Other work (cores of {cores}, mean) |",
        "|---|---:|",
        *(
            f"| {label} | {load:.2f}{' (another benchmark ran)' if others else ''} |"
            for label, load, others in report.loads
        ),
    ]
    return "\n".join(lines)


def write_docs(body: str) -> None:
    """Replace (or add) the "## Registry vs MLflow" section of docs/performance.md, keeping the rest."""
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    text = DOCS.read_text() if DOCS.exists() else "# Performance\n"
    section = f"{SECTION}\n\n{INTRO}\n\n{body}\n\n"
    found = re.search(rf"^{re.escape(SECTION)}\n.*?(?=^# |^## |\Z)", text, re.MULTILINE | re.DOTALL)
    text = text[: found.start()] + section + text[found.end() :] if found else text.rstrip("\n") + "\n\n" + section
    DOCS.write_text(text.rstrip("\n") + "\n")


# Main -----------------------------------------------------------------------------------------


def run_all(config: Config, report: Report) -> None:
    work = calibrate(config.step_ms)
    report.figures["work"] = work
    print(f"  busy() iterations per ~{config.step_ms:g} ms step: {work}", file=sys.stderr)
    with atelier_stack(SCRATCH / "atelier-home") as stack:
        measure_atelier(report, config, stack, work)
        measure_postgres(report, config, stack)
    measure_mlflow_server(report, config, work)
    measure_mlflow_direct(report, config)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--worker"]:
        worker_main(args[1], args[2])
        return
    config = parse_args(args)
    mlflow_version = ensure_mlflow()
    shutil.rmtree(SCRATCH, ignore_errors=True)
    SCRATCH.mkdir(parents=True)
    report = Report(wait=config.wait)
    try:
        run_all(config, report)
    finally:
        if not config.keep:
            shutil.rmtree(SCRATCH, ignore_errors=True)
    body = report_body(report, config, mlflow_version)
    print(f"{SECTION}\n\n{INTRO}\n\n{body}")
    if config.write_docs:
        write_docs(body)
        print(f"wrote '{SECTION}' in {DOCS}", file=sys.stderr)


if __name__ == "__main__":
    main()
