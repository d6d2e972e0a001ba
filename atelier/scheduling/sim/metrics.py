"""The figures of a replay: completion times, queueing delays, makespan, utilisation, shares, jobs never run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from atelier.scheduling.sim.simulator import SimulationResult


@dataclass(frozen=True)
class Metrics:
    """Summary of one replay (seconds unless named otherwise)."""

    name: str
    jobs: int
    completed: int
    never_ran: int
    rejected: int
    preemptions: int
    avg_jct_s: float
    p99_jct_s: float
    p50_queue_s: float
    p99_queue_s: float
    makespan_s: float
    gpu_utilisation: float
    share_received: dict[str, float]
    share_entitled: dict[str, float]
    cycles: int
    wall_s: float


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def metrics(result: SimulationResult) -> Metrics:
    """The figures of a replay.

    JCT (job completion time) = end - submit of completed jobs; queueing delay = first start - submit of jobs
    that started; makespan = last end - first submit; GPU utilisation = GPU-seconds held / (usable GPUs x
    makespan); shares received = each project's GPU-seconds over all, entitled = its weight over all weights;
    never ran = rejected at submission plus still waiting when the trace ran out.
    """
    outcomes = result.outcomes
    done = [o for o in outcomes if o.end_time is not None]
    started = [o for o in outcomes if o.first_start is not None]
    jct = [o.end_time - o.submit_time for o in done if o.end_time is not None]
    queue = [o.first_start - o.submit_time for o in started if o.first_start is not None]
    first_submit = min((o.submit_time for o in outcomes), default=0.0)
    last_end = max((o.end_time for o in done if o.end_time is not None), default=first_submit)
    makespan = last_end - first_submit
    held = sum(result.gpu_seconds_by_project.values())
    total = held or 1.0
    return Metrics(
        name=result.name,
        jobs=len(outcomes),
        completed=len(done),
        never_ran=sum(1 for o in outcomes if o.first_start is None),
        rejected=sum(1 for o in outcomes if o.rejected),
        preemptions=sum(o.preemptions for o in outcomes),
        avg_jct_s=sum(jct) / len(jct) if jct else 0.0,
        p99_jct_s=percentile(jct, 99),
        p50_queue_s=percentile(queue, 50),
        p99_queue_s=percentile(queue, 99),
        makespan_s=makespan,
        gpu_utilisation=held / (result.total_gpus * makespan) if makespan > 0 and result.total_gpus else 0.0,
        share_received={p: s / total for p, s in sorted(result.gpu_seconds_by_project.items())},
        share_entitled=dict(sorted(result.entitled.items())),
        cycles=result.cycles,
        wall_s=result.wall_s,
    )
