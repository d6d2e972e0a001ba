"""What showing a model version's GPU use costs the registry's reads: `Models.list_versions`
in-process on SQLite, the best version by a metric (page size 1) and a page of 100, with the one
lookup of the page's runs' usage and without it (the lookup replaced by nothing), interleaved in
one run. CPU time (`time.process_time`) is what to compare on a loaded machine.

    .venv/bin/python benchmarks/registry_version_usage.py [--versions 20000] [--calls 300]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from atelier.runtime.database import create_engine, migrate
from services.registry import models as models_module
from services.registry import server
from services.registry.models import Models
from services.registry.tables import ExperimentRow, ModelRow, ModelVersionRow, RunRow, VersionMetricRow
from services.registry.usage import Usage, usage_of_runs


def no_lookup(session: Session, runs: Iterable[str]) -> dict[str, Usage]:
    return {}


def fill(engine: Engine, count: int) -> None:
    """One model with `count` versions, each from its own run with usage recorded."""
    now = datetime.now(UTC)
    run = "projects/p/experiments/e/runs/r{:015d}".format
    with engine.begin() as c:
        c.execute(sa.insert(ExperimentRow), [{"id": 1, "project": "p", "name": "e", "create_time": now}])
        c.execute(
            sa.insert(RunRow),
            [
                {"id": i, "run_id": f"r{i:015d}", "experiment_id": 1, "state": 1, "start_time": now,
                 "heartbeat_time": now, "job": f"projects/p/jobs/j{i}", "code": {}, "environment": {}, "inputs": [],
                 "command": [], "params": {}, "tags": {}, "usage_gpu_seconds": float(i),
                 "usage_energy_joules": 2.0 * i, "usage_simulated": False, "usage_time": now}
                for i in range(1, count + 1)
            ],
        )  # fmt: skip
        c.execute(sa.insert(ModelRow), [{"id": 1, "project": "p", "name": "m", "create_time": now}])
        c.execute(
            sa.insert(ModelVersionRow),
            [
                {"id": i, "model_id": 1, "number": i, "artifact": "a", "format": 1, "signature": {},
                 "lineage": {"run": run(i)}, "metrics": {"acc": i / count}, "tags": {}, "create_time": now,
                 "run": run(i), "experiment": "projects/p/experiments/e", "pins": []}
                for i in range(1, count + 1)
            ],
        )  # fmt: skip
        rows = [{"version_id": i, "key": "acc", "model_id": 1, "value": i / count} for i in range(1, count + 1)]
        c.execute(sa.insert(VersionMetricRow), rows)
        c.exec_driver_sql("ANALYZE")


def cpu_ms(call: Callable[[], Any], calls: int) -> float:
    start = time.process_time()
    for _ in range(calls):
        call()
    return (time.process_time() - start) / calls * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        engine = create_engine(f"sqlite:///{Path(directory) / 'registry.db'}")
        migrate(engine, server.MIGRATIONS, "alembic_version_registry")
        fill(engine, args.versions)
        models = Models(engine, None, None)  # type: ignore[arg-type]  # no data service: no dataset filters

        def best() -> object:
            return models.list_versions("projects/p/models/m", "", "metrics.acc desc", 1, "")

        def page() -> object:
            return models.list_versions("projects/p/models/m", "", "", 100, "")

        assert models.list_versions("projects/p/models/m", "", "", 1, "")[0][0].usage is not None
        results: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for label, replacement in (("with usage", usage_of_runs), ("without", no_lookup)):
                vars(models_module)["usage_of_runs"] = replacement
                for query, call, calls in (("best version", best, args.calls), ("page of 100", page, args.calls // 3)):
                    results.setdefault((query, label), []).append(cpu_ms(call, calls))
        vars(models_module)["usage_of_runs"] = usage_of_runs
        engine.dispose()
    print(f"{args.versions:,} versions in one model, SQLite; median CPU ms per call over {args.rounds} rounds")
    print(f"{'query':<14} {'with usage':>11} {'without':>9} {'ratio':>6}")
    for query in ("best version", "page of 100"):
        with_usage = statistics.median(results[(query, "with usage")])
        without = statistics.median(results[(query, "without")])
        print(f"{query:<14} {with_usage:>11.3f} {without:>9.3f} {with_usage / without:>6.2f}")


if __name__ == "__main__":
    main()
