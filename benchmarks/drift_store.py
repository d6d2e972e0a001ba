"""What storing drift samples costs the monitor: CPU per WriteDriftSamples call with the store and without.

The monitor stores each call's blocks in its database (one INSERT) before it adds them to the windows
(`services/monitor/sample_store.py`). This script runs the monitor's domain side in-process, fed the
protobuf messages inference sends (64 features per row, as `drift_sampling/`), and alternates rounds
of calls to a `DriftMonitor` that keeps windows in memory only and to one that stores them, on SQLite
(the default, `synchronous=NORMAL`) and, with `--postgres URL`, on PostgreSQL. It prints the process CPU
time (user + system) and the wall time per call for each side and their ratio, then the cost of one
pruning round and of restoring every window at start with the table as full as the windows allow.
gRPC's own cost per call is the same on both sides and is left out. For PostgreSQL the CPU column is
the monitor's alone; the server's work shows in the wall time.

    .venv/bin/python benchmarks/drift_store.py [--rounds 5] [--calls 200] [--postgres postgresql://...]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from atelier.client.links import Links
from atelier.monitor.v1 import monitor_service_pb2 as pb
from atelier.runtime.database import create_engine, migrate
from services.monitor.drifts import DriftMonitor, Samples, WindowSettings
from services.monitor.references import ReferenceLoader
from services.monitor.sample_store import SampleStore
from services.monitor.server import MIGRATIONS

WORK = Path(__file__).resolve().parent / ".work" / "drift_store"
FEATURES = 64
VERSION = "projects/bench/models/m/versions/v1"


def message(rows: int, deployment: str, rng: np.random.Generator) -> pb.DriftSamples:
    return pb.DriftSamples(
        deployment=deployment,
        model_version=VERSION,
        feature_names=[f"input[{i}]" for i in range(FEATURES)],
        features=rng.normal(0, 1, rows * FEATURES).tolist(),
        predictions=rng.integers(0, 10, rows).astype(float).tolist(),
    )


def call(monitor: DriftMonitor, request: pb.DriftSamples) -> None:
    """What the servicer's WriteDriftSamples does with one message."""
    sent = Samples(request.deployment, request.model_version, list(request.feature_names), request.features,
                   request.predictions)  # fmt: skip
    monitor.record_all([sent])


def per_call(run: Callable[[], None], calls: int) -> tuple[float, float]:
    """(CPU us, wall us) per call."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        run()
    return (time.process_time() - cpu) / calls * 1e6, (time.perf_counter() - wall) / calls * 1e6


def bench(url: str, label: str, rounds: int, calls: int) -> None:
    engine = create_engine(url)
    migrate(engine, MIGRATIONS, "alembic_version_monitor")
    store = SampleStore(engine)
    settings = WindowSettings(max_rows=5000, max_age_seconds=3600.0)
    loader = ReferenceLoader(Links(lambda: "127.0.0.1:1", lambda: "127.0.0.1:1"), 5000, 1 << 20)
    rng = np.random.default_rng(0)
    print(f"\n{label}: CPU and wall time per WriteDriftSamples message ({FEATURES} features per row)")
    print(f"{'rows/call':>9} {'memory CPU us':>14} {'stored CPU us':>14} {'CPU ratio':>9} "
          f"{'memory wall us':>15} {'stored wall us':>15}")  # fmt: skip
    for rows in (5, 100, 1000):
        requests = [message(rows, f"projects/bench/deployments/d{i % 20}", rng) for i in range(calls)]
        memory = DriftMonitor(loader, settings)
        stored = DriftMonitor(loader, settings, store=store)
        sides: dict[str, list[tuple[float, float]]] = {"memory": [], "stored": []}
        for _ in range(rounds):
            for name, monitor in (("memory", memory), ("stored", stored)):
                queue = iter(requests)
                sides[name].append(per_call(lambda m=monitor, q=queue: call(m, next(q)), calls))  # type: ignore[misc]
        mem_cpu = statistics.median(c for c, _ in sides["memory"])
        sto_cpu = statistics.median(c for c, _ in sides["stored"])
        mem_wall = statistics.median(w for _, w in sides["memory"])
        sto_wall = statistics.median(w for _, w in sides["stored"])
        print(
            f"{rows:>9} {mem_cpu:>14.0f} {sto_cpu:>14.0f} {sto_cpu / mem_cpu:>9.2f} {mem_wall:>15.0f} {sto_wall:>15.0f}"
        )
    blocks = sum(1 for _ in store.blocks_since(None))
    cpu, wall = time.process_time(), time.perf_counter()
    deleted = stored.prune()
    print(f"prune: {blocks} blocks, {deleted} deleted, {(time.process_time() - cpu) * 1e3:.1f} ms CPU, "
          f"{(time.perf_counter() - wall) * 1e3:.1f} ms wall")  # fmt: skip
    left = sum(1 for _ in store.blocks_since(None))
    cpu, wall = time.process_time(), time.perf_counter()
    restored = DriftMonitor(loader, settings, store=store).restore()
    print(f"restore: {left} blocks, {restored} rows, {(time.process_time() - cpu) * 1e3:.0f} ms CPU, "
          f"{(time.perf_counter() - wall) * 1e3:.0f} ms wall")  # fmt: skip
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200, help="calls per round and side")
    parser.add_argument("--postgres", default="", help="a PostgreSQL URL whose database may be written to")
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    bench(f"sqlite:///{WORK / 'monitor.db'}", "SQLite (synchronous=NORMAL)", args.rounds, args.calls)
    if args.postgres:
        bench(args.postgres, "PostgreSQL", args.rounds, args.calls)


if __name__ == "__main__":
    main()
