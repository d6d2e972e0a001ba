"""The simulator on the Alibaba openb trace: Atelier vs FIFO + first fit vs priority + backfill with first fit,
and the replay time of 80,000 jobs (target: under 2 minutes).

The trace's arrivals are compressed (`--load`, offered GPU load over the arrival span) and its long-lived pods
cut at `--max-duration-h`, so that jobs queue (see `atelier.scheduling.sim.alibaba`). The 80k replay uses the
trace replicated with each copy shifted by the compressed span, under each of the three policies, `--repeat`
times; it reports the median wall and CPU (`time.process_time`) seconds and the machine's load average.

    .venv/bin/python benchmarks/scheduler_sim.py [--load 1.0] [--max-duration-h 24] [--jobs 80000] [--repeat 3]
        [--policy all|atelier|fifo|backfill] [--no-comparison]

`--policy` replays one policy only (to run the three long replays as separate processes); `--no-comparison`
skips the one-copy comparison table. Each long replay also prints its figures (JCT, queueing, makespan, ...).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from pathlib import Path

from rich.console import Console

from atelier.scheduling import PolicyConfig, fifo_first_fit, priority_backfill_first_fit
from atelier.scheduling.sim import (
    comparison_markdown,
    metrics,
    read_alibaba_nodes,
    read_alibaba_pods,
    render_comparison,
    replicate,
    run_simulation,
    shares_markdown,
)
from atelier.scheduling.sim.trace import span

ALIBABA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alibaba-gpu-v2023"
POLICIES = {
    "atelier": ("atelier", PolicyConfig()),
    "fifo": ("fifo + first fit", fifo_first_fit()),
    "backfill": ("priority + backfill, first fit", priority_backfill_first_fit()),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ALIBABA)
    parser.add_argument("--load", type=float, default=1.0, help="offered GPU load over the arrival span")
    parser.add_argument("--max-duration-h", type=float, default=24.0)
    parser.add_argument("--jobs", type=int, default=80_000, help="jobs in the long replay (0: skip it)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each long replay (the median is shown)")
    parser.add_argument("--policy", choices=("all", *POLICIES), default="all", help="the policies to replay")
    parser.add_argument("--no-comparison", action="store_true", help="skip the one-copy comparison")
    args = parser.parse_args()
    nodes = read_alibaba_nodes(args.data)
    gpus = sum(len(n.cards) for n in nodes)
    cut = args.max_duration_h * 3600
    raw = read_alibaba_pods(args.data, max_duration_s=cut)
    work = sum(j.duration_s * j.request.gpus for j in raw)
    scale = work / (args.load * gpus * span(raw))
    trace = read_alibaba_pods(args.data, max_duration_s=cut, time_scale=scale)
    print(f"{len(nodes)} nodes, {gpus} GPUs; {len(trace)} GPU jobs, arrivals compressed x{1 / scale:.0f}\n")
    configs = [POLICIES[p] for p in POLICIES if args.policy in ("all", p)]
    if not args.no_comparison:
        results = [metrics(run_simulation(nodes, trace, config, name=name)) for name, config in configs]
        Console().print(render_comparison(results, title="Alibaba openb trace"))
        print(comparison_markdown(results))
        print("\nShares:\n" + shares_markdown(results[0]))
    if args.jobs:
        copies = math.ceil(args.jobs / len(trace))
        big = replicate(trace, copies, span(trace))[: args.jobs]
        rows, figures = [], []
        for name, config in configs:
            walls, cpus = [], []
            for _ in range(args.repeat):
                started = time.process_time()
                result = run_simulation(nodes, big, config, name=name)
                cpus.append(time.process_time() - started)
                walls.append(result.wall_s)
            cpu = statistics.median(cpus)
            figures.append(metrics(result))
            rows.append(
                f"| Alibaba x{copies} | {name} | {len(big):,} | {result.cycles:,} | {statistics.median(walls):.1f} | "
                f"{cpu:.1f} | 120 | {'yes' if cpu < 120 else 'no'} | {os.getloadavg()[0]:.1f} |"
            )
        print(f"\n{len(big):,} jobs:\n" + comparison_markdown(figures))
        for figure in figures:
            print(f"\nShares, {figure.name}:\n" + shares_markdown(figure))
        print("\n| replay | policy | jobs | cycles | wall s | CPU s | target s | met (CPU) | load |")
        print("|---|---|---:|---:|---:|---:|---:|---|---:|")
        print("\n".join(rows))


if __name__ == "__main__":
    main()
