"""The command line: `python -m benchmarks.inference_vs_peers`, a helper process's mode or the whole run."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict
from typing import Any

from benchmarks.inference_report import SECTION, Report, render, write_docs

from . import __doc__ as overview
from .cells import measure, measure_soak, run_limit
from .config import MAX_BATCH, RUN, SHAPES
from .load import worker_main
from .models import build_models, limit_main
from .peer_servers import litserve_main, pytriton_main
from .servers import idle_paused, start_servers


def plan(c: int) -> list[tuple[str, int, dict[str, str]]]:
    """The cells: (model, clients, the protocol each server is called with)."""
    return [
        ("resnet", c, {"Atelier": "grpc", "PyTriton": "grpc", "LitServe": "litserve"}),
        ("mlp", c, {"Atelier": "grpc", "PyTriton": "grpc"}),
        ("mlp", c, {"Atelier": "http", "PyTriton": "http", "LitServe": "litserve"}),
        ("mlp", 1, {"Atelier": "grpc", "PyTriton": "grpc"}),
        ("resnet", 1, {"Atelier": "grpc", "PyTriton": "grpc"}),
    ]


def run_all(args: argparse.Namespace, log: Callable[[str], None]) -> Report:
    """Cell by cell, the servers one after another (their order rotating each round), all in one run."""
    report = Report(load_before=os.getloadavg(), models=tuple(SHAPES), max_batch=MAX_BATCH)
    shutil.rmtree(RUN, ignore_errors=True)
    models = RUN / "models"
    report.flops = build_models(models)
    log(f"models: resnet {report.flops['resnet']:.0f} MFLOP/sample, mlp {report.flops['mlp'] * 1000:.1f} kFLOP/sample")
    for model in SHAPES:
        report.limits[model] = run_limit(models, model, args.seconds, log)
    with ExitStack() as stack:
        servers = start_servers(stack, args.peers, models, report, log, args.atelier_grpc_server)
        for round_number in range(args.rounds):
            log(f"round {round_number + 1} of {args.rounds}")
            for model, clients, protocols in plan(args.concurrency):
                names = [name for name in protocols if (name, model) in servers]
                if not names:
                    continue
                shift = round_number % len(names)
                limit: dict[str, Any] = {"limit": {"": 0.0}, "per_cpu": {"": 0.0}, "own_ms": 0.0}
                everyone = list(servers.values())
                if model == "resnet" and clients > 1:  # the compute-bound cells' own limit, measured just before
                    with idle_paused(everyone):
                        limit = run_limit(models, model, args.seconds, log)
                elif clients == 1:  # the model's own time at batch 1, just before
                    with idle_paused(everyone):
                        own_ms = run_limit(models, model, 0, log)["own_ms"]
                    limit = {"limit": {"": 0.0}, "per_cpu": {"": 0.0}, "own_ms": own_ms}
                for name in names[shift:] + names[:shift]:
                    with idle_paused(everyone, servers[(name, model)]):
                        cell = measure(servers[(name, model)], model, protocols[name], clients, args.seconds, log)
                    cell.limit = max(limit["limit"].values())
                    cell.limit_per_cpu = max(limit["per_cpu"].values())
                    cell.own_ms = float(limit["own_ms"])
                    report.cells.append(cell)
        if args.soak_seconds > 0 and ("Atelier", "mlp") in servers:
            with idle_paused(list(servers.values())):
                report.soak = measure_soak(servers[("Atelier", "mlp")], args.soak_seconds, log)
    for name, why in report.unavailable.items():
        log(f"{name} not measured: {why}")
    return report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.inference_vs_peers", description=(overview or "").splitlines()[0]
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per cell (default 10)")
    parser.add_argument("--rounds", type=int, default=1, help="cells repeated, servers rotating (default 1)")
    parser.add_argument("--concurrency", type=int, default=64, help="clients of the throughput cells (default 64)")
    parser.add_argument("--soak-seconds", type=float, default=60.0, help="256-client soak on Atelier; 0 skips it")
    parser.add_argument("--peers", default="atelier,pytriton,litserve", help="which servers (comma-separated)")
    parser.add_argument("--atelier-grpc-server", choices=("envoy", "grpc.aio"), default="envoy",
                        help="the inference service's ATELIER_INFERENCE_GRPC_SERVER (default envoy, the service's "
                        "default: its gRPC port is Envoy's)")  # fmt: skip
    parser.add_argument("--write-docs", action="store_true", help=f"replace '{SECTION}' in docs/performance.md")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = parser.parse_args(argv)
    args.peers = {p.strip().lower() for p in args.peers.split(",") if p.strip()}
    unknown = args.peers - {"atelier", "pytriton", "litserve"}
    if unknown or not args.peers:
        parser.error(f"--peers {','.join(sorted(unknown)) or '(empty)'}: choose from atelier, pytriton, litserve")
    if args.seconds <= 0 or args.concurrency < 1 or args.soak_seconds < 0 or args.rounds < 1:
        parser.error("need --seconds > 0, --concurrency >= 1, --rounds >= 1 and --soak-seconds >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    raw = list(sys.argv[1:] if argv is None else argv)
    modes = {"--worker": worker_main, "--limit": limit_main, "--serve-pytriton": pytriton_main,
             "--serve-litserve": litserve_main}  # fmt: skip
    if len(raw) == 2 and raw[0] in modes:
        modes[raw[0]](raw[1])
        return
    args = parse_args(raw)

    def log(text: str) -> None:
        print(f"  {text}", file=sys.stderr, flush=True)

    report = run_all(args, log)
    body = render(report, args)
    print(body)
    if args.json:
        print(json.dumps({"cells": [asdict(c) for c in report.cells], "limits": report.limits}, indent=2))
    if args.write_docs:
        write_docs(body)


if __name__ == "__main__":
    main()
