"""The simulator on the Alibaba openb trace: Atelier vs FIFO + first fit vs priority + backfill with first fit,
and the replay time of 80,000 jobs (target: under 2 minutes).

The trace's arrivals are compressed (`--load`, offered GPU load over the arrival span) and its long-lived pods
cut at `--max-duration-h`, so that jobs queue (see `atelier.scheduling.sim.alibaba`). The 80k replay uses the
trace replicated with each copy shifted by the compressed span.

    .venv/bin/python benchmarks/scheduler_sim.py [--load 1.0] [--max-duration-h 24] [--jobs 80000]
"""

from __future__ import annotations

import argparse
import math
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ALIBABA)
    parser.add_argument("--load", type=float, default=1.0, help="offered GPU load over the arrival span")
    parser.add_argument("--max-duration-h", type=float, default=24.0)
    parser.add_argument("--jobs", type=int, default=80_000, help="jobs in the long replay (0: skip it)")
    args = parser.parse_args()
    nodes = read_alibaba_nodes(args.data)
    gpus = sum(len(n.cards) for n in nodes)
    cut = args.max_duration_h * 3600
    raw = read_alibaba_pods(args.data, max_duration_s=cut)
    work = sum(j.duration_s * j.request.gpus for j in raw)
    scale = work / (args.load * gpus * span(raw))
    trace = read_alibaba_pods(args.data, max_duration_s=cut, time_scale=scale)
    print(f"{len(nodes)} nodes, {gpus} GPUs; {len(trace)} GPU jobs, arrivals compressed x{1 / scale:.0f}\n")
    configs = [
        ("atelier", PolicyConfig()),
        ("fifo + first fit", fifo_first_fit()),
        ("priority + backfill, first fit", priority_backfill_first_fit()),
    ]
    results = [metrics(run_simulation(nodes, trace, config, name=name)) for name, config in configs]
    Console().print(render_comparison(results, title="Alibaba openb trace"))
    print(comparison_markdown(results))
    print("\nShares under Atelier:\n" + shares_markdown(results[0]))
    if args.jobs:
        copies = math.ceil(args.jobs / len(trace))
        big = replicate(trace, copies, span(trace))[: args.jobs]
        result = metrics(run_simulation(nodes, big, PolicyConfig(), name="atelier"))
        met = "yes" if result.wall_s < 120 else "no"
        print("\n| replay | jobs | cycles | wall s | target s | met |\n|---|---:|---:|---:|---:|---|")
        print(f"| Alibaba x{copies} | {result.jobs:,} | {result.cycles:,} | {result.wall_s:.1f} | 120 | {met} |")


if __name__ == "__main__":
    main()
