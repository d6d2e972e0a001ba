"""Measuring: one cell (the load against a server, both sides' CPU), the soak, the in-process limit."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.inference_report import Cell, describe
from benchmarks.paths import PYTHON, REPO

from .config import ENTRY
from .load import Load
from .procfs import cpu_seconds, machine_busy_seconds, process_tree, rss_mib
from .servers import Server, clean_env


def measure(server: Server, model: str, protocol: str, concurrency: int, seconds: float, log: Callable[[str], None],
            sample_memory: bool = False) -> Cell:  # fmt: skip
    """Run the load generator against `server` and read the CPU of both sides over its window."""
    load = Load(protocol, server.urls[protocol], model, concurrency, seconds, warmup=min(3.0, max(1.0, seconds / 5)))
    command = [str(PYTHON), *ENTRY, "--worker", json.dumps(asdict(load))]
    worker = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=clean_env(), cwd=REPO)
    assert worker.stdout is not None
    cell = Cell(model, server.name, protocol, concurrency, seconds=seconds)
    marks: dict[str, tuple[float, float, float]] = {}
    result: dict[str, Any] = {}
    for line in worker.stdout:
        if line.startswith(("MEASURING", "DONE")):
            tree = process_tree(server.pid)
            marks[line.strip()] = (cpu_seconds(tree), machine_busy_seconds(), time.perf_counter())
            if sample_memory:
                cell.rss_mib.append(rss_mib(tree))
        elif line.startswith("RESULT "):
            result = json.loads(line[7:])
    worker.wait()
    if not result or set(marks) != {"MEASURING", "DONE"}:
        raise RuntimeError(f"the load generator failed against {server.name} ({protocol}, {model})")
    (server0, busy0, wall0), (server1, busy1, wall1) = marks["MEASURING"], marks["DONE"]
    wall = wall1 - wall0
    cell.requests_per_s = result["requests"] / result["wall"]
    cell.p50_ms, cell.p99_ms = result["p50_ms"], result["p99_ms"]
    cell.errors, cell.first_error = result["errors"], result["first_error"]
    cell.client_cores = result["client_cpu"] / result["wall"]
    cell.server_cores = (server1 - server0) / wall
    cell.other_cores = max(0.0, (busy1 - busy0) / wall - cell.server_cores - cell.client_cores)
    log(describe(cell))
    return cell


def measure_soak(server: Server, seconds: float, log: Callable[[str], None]) -> Cell:
    """256 concurrent gRPC callers on the MLP for `seconds`, the server's memory sampled every 2 s."""
    import threading

    samples: list[float] = []
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.wait(2.0):
            samples.append(rss_mib(process_tree(server.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        cell = measure(server, "mlp", "grpc", 256, seconds, log, sample_memory=True)
    finally:
        stop_sampling.set()
        sampler.join()
    cell.rss_mib = [cell.rss_mib[0], *samples, cell.rss_mib[-1]] if cell.rss_mib else samples
    return cell


def run_limit(models: Path, model: str, seconds: float, log: Callable[[str], None]) -> dict[str, Any]:
    spec = json.dumps({"path": str(models / f"{model}.pt"), "model": model, "seconds": seconds})
    busy0, wall0 = machine_busy_seconds(), time.perf_counter()
    done = subprocess.run([str(PYTHON), *ENTRY, "--limit", spec], capture_output=True, text=True, env=clean_env())
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), "")
    if not line:
        raise RuntimeError(f"the in-process limit of {model} failed: {done.stderr.strip()[-300:]}")
    result: dict[str, Any] = json.loads(line[7:])
    result["busy_cores"] = (machine_busy_seconds() - busy0) / (time.perf_counter() - wall0)
    if not result["limit"]:
        log(f"in-process {model}, batch 1: {result['own_ms']:.3f} ms")
        return result
    rates = ", ".join(f"{k} {v:,.0f}/s ({result['per_cpu'][k]:,.0f} per CPU-s)" for k, v in result["limit"].items())
    log(f"in-process {model} (threads x torch threads): {rates}; batch 1: {result['own_ms']:.3f} ms")
    return result
