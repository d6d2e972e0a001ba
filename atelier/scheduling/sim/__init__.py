"""The scheduling simulator: replays a job trace on a cluster inventory through the real `schedule()`.

    from rich.console import Console
    from atelier.scheduling import PolicyConfig, fifo_first_fit, priority_backfill_first_fit
    from atelier.scheduling.sim import (
        metrics, read_alibaba_nodes, read_alibaba_pods, read_csv_trace, render_comparison, run_simulation,
    )

    nodes = read_alibaba_nodes(DIR)                       # or [declared_node(...), ...]
    trace = read_alibaba_pods(DIR, time_scale=0.05)       # or read_csv_trace("jobs.csv")
    results = [
        metrics(run_simulation(nodes, trace, PolicyConfig(), name="atelier")),
        metrics(run_simulation(nodes, trace, fifo_first_fit(), name="fifo + first fit")),
        metrics(run_simulation(nodes, trace, priority_backfill_first_fit(), name="priority + backfill, first fit")),
    ]
    Console().print(render_comparison(results))           # or comparison_markdown(results)

`run_simulation(nodes, trace, config, *, name, usage_interval_s) -> SimulationResult` (every job's outcome);
`metrics(result) -> Metrics` (avg/p99 JCT, p50/p99 queueing delay, makespan, GPU utilisation, shares received
vs entitled, jobs never run, preemptions, replay wall time). `replicate(trace, copies, offset_s)` makes a big
trace out of a small one. The CSV format is documented in `trace`, the Alibaba mapping in `alibaba`.
"""

from atelier.scheduling.sim.alibaba import read_alibaba_nodes, read_alibaba_pods
from atelier.scheduling.sim.metrics import Metrics, metrics, percentile
from atelier.scheduling.sim.report import comparison_markdown, render_comparison, shares_markdown
from atelier.scheduling.sim.simulator import JobOutcome, SimulationResult, run_simulation
from atelier.scheduling.sim.trace import TraceJob, read_csv_trace, replicate

__all__ = [
    "JobOutcome",
    "Metrics",
    "SimulationResult",
    "TraceJob",
    "comparison_markdown",
    "metrics",
    "percentile",
    "read_alibaba_nodes",
    "read_alibaba_pods",
    "read_csv_trace",
    "render_comparison",
    "replicate",
    "run_simulation",
    "shares_markdown",
]
