"""`atelier sim`: replay a job trace against a cluster with the scheduler's own policy code."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Annotated

import typer

from atelier.cli.output import console, emit
from atelier.errors import InvalidArgument
from atelier.scheduling import Node, PolicyConfig, declared_node, fifo_first_fit, priority_backfill_first_fit
from atelier.scheduling.sim import metrics, read_alibaba_nodes, read_alibaba_pods, read_csv_trace, render_comparison
from atelier.scheduling.sim import run_simulation as replay
from atelier.scheduling.sim.trace import TraceJob, span


def _cluster(path: Path) -> list[Node]:
    """An Alibaba trace directory (its node list), or a JSON inventory of declared nodes."""
    if path.is_dir():
        return read_alibaba_nodes(path)
    try:
        document = json.loads(path.read_text())
        return [declared_node(n["name"], n["model"], int(n.get("count", 1))) for n in document["nodes"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InvalidArgument(
            f"cannot read cluster {str(path)!r} ({error}); give an Alibaba trace directory or JSON like "
            '{"nodes": [{"name": "a", "model": "A100-80", "count": 8}]}'
        ) from error


def _trace(path: Path, nodes: list[Node], load: float) -> list[TraceJob]:
    if not path.is_dir():
        return read_csv_trace(path)
    raw = read_alibaba_pods(path, max_duration_s=24 * 3600.0)
    if not load:
        return raw
    if not math.isfinite(load):
        raise InvalidArgument(f"--load {load}: give a finite offered load (e.g. 0.8), or 0 for the trace's pace")
    gpus = sum(len(n.cards) for n in nodes)
    if not gpus:
        raise InvalidArgument("the cluster has no GPUs: nothing to replay the trace on")
    arrivals = span(raw)
    work = sum(j.duration_s * j.request.gpus for j in raw)
    if not arrivals or not work:
        raise InvalidArgument("the trace's jobs all arrive at once: --load cannot compress them; use --load 0")
    scale = work / (load * gpus * arrivals)
    if not math.isfinite(scale):
        raise InvalidArgument(f"--load {load}: too small an offered load to reach")
    return read_alibaba_pods(path, max_duration_s=24 * 3600.0, time_scale=scale)


def sim(
    trace: Annotated[Path, typer.Argument(help="CSV trace, or the Alibaba GPU trace directory.")],
    cluster: Annotated[
        Path | None, typer.Option("--cluster", help="Cluster: Alibaba directory or JSON inventory (default: TRACE).")
    ] = None,
    load: Annotated[
        float,
        typer.Option("--load", min=0, help="Alibaba only: compress arrivals to this offered GPU load (0: as is)."),
    ] = 1.0,
    baselines: Annotated[bool, typer.Option(help="Also replay FIFO + first fit and priority + backfill.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Replay a trace in simulated time: JCT, queueing delay, makespan, utilisation, shares, never-run jobs."""
    nodes = _cluster(cluster or trace)
    jobs = _trace(trace, nodes, load)
    configs = [("atelier", PolicyConfig())]
    if baselines:
        configs += [
            ("fifo + first fit", fifo_first_fit()),
            ("priority + backfill, first fit", priority_backfill_first_fit()),
        ]
    with console.status(f"replaying {len(jobs):,} jobs on {len(nodes):,} nodes"):
        results = [metrics(replay(nodes, jobs, config, name=name)) for name, config in configs]
    emit(as_json, [dataclasses.asdict(r) for r in results], lambda: console.print(render_comparison(results)))
