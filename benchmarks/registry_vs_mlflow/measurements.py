"""The measurements: each tool's steps, run in order on its servers and recorded in the Report."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ATELIER_FILTER, BATCH_SIZE, PROJECT, SCRATCH, Config, Result, atelier_module
from .processes import group_pids, stop, with_server_cpu
from .report import Report
from .servers import Stack, mlflow_server, postgres_database
from .workers import worker, workers
from .workload import latencies


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
