"""Each load generator in a fresh process: the workers by name, the child's side and the parent's."""

from __future__ import annotations

import concurrent.futures
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.paths import PYTHON

from .atelier_workers import worker_atelier_fill, worker_atelier_log, worker_atelier_register, worker_atelier_search
from .config import MLFLOW_VENV, RESULT, SCRATCH, WORKER_TIMEOUT, Result
from .mlflow_workers import worker_mlflow_log, worker_mlflow_register, worker_mlflow_search
from .processes import atelier_env, mlflow_env, run_command

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


def worker(name: str, spec: Result) -> Result:
    """Run one measurement in a fresh process of the tool's own Python."""
    mlflow = name.startswith("mlflow")
    python = MLFLOW_VENV / "bin" / "python" if mlflow else PYTHON
    env = mlflow_env() if mlflow else atelier_env(**spec.pop("env", {}))
    log = SCRATCH / f"worker-{name}.log"
    shown = {k: v for k, v in spec.items() if k in ("model", "count", "points", "calls", "synchronous", "mode")}
    print(f"  {time.strftime('%H:%M:%S')} {name} {json.dumps(shown)}", file=sys.stderr, flush=True)
    command: list[str | Path] = [python, "-m", "benchmarks.registry_vs_mlflow", "--worker", name, json.dumps(spec)]
    out = run_command(command, env, WORKER_TIMEOUT, log)
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
