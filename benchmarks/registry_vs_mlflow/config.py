"""Paths, constants and the Config of a run, from its command line."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.paths import WORK

from . import __doc__ as overview

MLFLOW_VENV = WORK / "mlflow-venv"
SCRATCH = WORK / "registry-run"
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
# Benchmarks that must not share the machine with a timed step of this one, as found in a process's
# /proc/PID/cmdline (arguments separated by NULs): `python -m benchmarks.data_vs_dvc` has the module's
# name as one argument.
OTHERS = ("benchmarks.data_vs_dvc",)
# Other work on the machine (cores, on average) above which a step counts as measured under load,
# and below which one starts (unless --no-wait).
FOREIGN_LIMIT = 0.25
QUIET_LIMIT = 0.1
WORKER_TIMEOUT = 4 * 3600.0
Result = dict[str, Any]


def atelier_module(name: str) -> Any:
    """An Atelier module imported at run time: the MLflow venv's workers lack Atelier, and a dynamic
    import keeps `mypy benchmarks/registry_vs_mlflow` to this package rather than all of Atelier."""
    return importlib.import_module(name)


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
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.registry_vs_mlflow", description=overview.splitlines()[0] if overview else None
    )
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
