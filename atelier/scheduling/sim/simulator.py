"""Event-driven replay of a trace through `schedule()` itself, in simulated time.

Events are arrivals, completions and preemption deadlines (a job of a class with a bound may preempt once it
has waited that long). At each event time the simulator applies completions and arrivals, then runs cycles
until a cycle decides nothing new; it skips the cycle when no card is free and nobody may preempt (the cycle
could not start anything). Preempted jobs stop at once (no grace period in simulated time), lose their work
and are requeued with their original submit time. Fair-share usage is brought up to date every
`usage_interval_s` of simulated time (Slurm's PriorityCalcPeriod). Jobs no node could ever hold are rejected
at submission, as the service does.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from atelier.scheduling.capacity import FreeCapacity
from atelier.scheduling.cycle import schedule
from atelier.scheduling.fairshare import FairShareUsage
from atelier.scheduling.feasibility import infeasibility
from atelier.scheduling.inventory import Node
from atelier.scheduling.jobs import RunningJob
from atelier.scheduling.policy import PolicyConfig
from atelier.scheduling.queue import JobQueue
from atelier.scheduling.sim.trace import TraceJob


@dataclass
class JobOutcome:
    """What happened to one job of the trace (times in simulated seconds)."""

    job_id: str
    project: str
    gpus: int
    submit_time: float
    first_start: float | None = None
    end_time: float | None = None
    preemptions: int = 0
    rejected: str = ""


@dataclass
class SimulationResult:
    """A replay's outcomes and bookkeeping; `metrics` (module `metrics`) turns it into the figures."""

    name: str
    outcomes: list[JobOutcome]
    total_gpus: int
    gpu_seconds_by_project: dict[str, float]
    entitled: dict[str, float]
    cycles: int = 0
    wall_s: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


def run_simulation(
    nodes: Sequence[Node],
    trace: Sequence[TraceJob],
    config: PolicyConfig,
    *,
    name: str = "atelier",
    usage_interval_s: float = 300.0,
) -> SimulationResult:
    """Replay `trace` on `nodes` under `config` and return the outcomes of every job."""
    return _Simulation(nodes, trace, config, name, usage_interval_s).run()


class _Simulation:
    def __init__(
        self, nodes: Sequence[Node], trace: Sequence[TraceJob], config: PolicyConfig, name: str, interval: float
    ) -> None:
        self.nodes, self.config, self.name, self.interval = list(nodes), config, name, interval
        self.trace = sorted(trace, key=lambda j: (j.request.submit_time, j.request.job_id))
        self.duration = {job.request.job_id: job.duration_s for job in self.trace}
        self.outcomes = {
            j.request.job_id: JobOutcome(j.request.job_id, j.request.project, j.request.gpus, j.request.submit_time)
            for j in self.trace
        }
        self.capacity = FreeCapacity(self.nodes, kept=True)
        self.queue = JobQueue()
        self.running: dict[str, RunningJob] = {}
        self.ends: list[tuple[float, str, int]] = []  # (end time, job id, attempt)
        self.attempt: dict[str, int] = {}
        self.wakeups: list[float] = []
        self.usage = FairShareUsage(0.0)
        self.gpu_seconds: dict[str, float] = {}
        self.infeasible: dict[int, str] = {}
        self.cycles = 0

    def run(self) -> SimulationResult:
        started = time.perf_counter()
        arrivals, next_arrival = self.trace, 0
        while next_arrival < len(arrivals) or self.ends or (self.wakeups and self.queue):
            now = min(
                arrivals[next_arrival].request.submit_time if next_arrival < len(arrivals) else float("inf"),
                self.ends[0][0] if self.ends else float("inf"),
                self.wakeups[0] if self.wakeups else float("inf"),
            )
            if now == float("inf"):
                break
            self._complete(now)
            while next_arrival < len(arrivals) and arrivals[next_arrival].request.submit_time <= now:
                self._arrive(arrivals[next_arrival])
                next_arrival += 1
            while self.wakeups and self.wakeups[0] <= now:
                heapq.heappop(self.wakeups)
            if self.queue:
                self._cycles(now)
        result = SimulationResult(
            self.name,
            list(self.outcomes.values()),
            sum(len(n.usable) for n in self.capacity.nodes),
            self.gpu_seconds,
            self._entitled(),
            cycles=self.cycles,
        )
        result.wall_s = time.perf_counter() - started
        return result

    def _complete(self, now: float) -> None:
        while self.ends and self.ends[0][0] <= now:
            end, job_id, attempt = heapq.heappop(self.ends)
            if self.attempt.get(job_id) != attempt or job_id not in self.running:
                continue  # preempted since
            self._stop(job_id, end)
            self.outcomes[job_id].end_time = end

    def _stop(self, job_id: str, now: float) -> None:
        job = self.running.pop(job_id)
        self.capacity.release_job(job)
        held = (now - job.start_time) * job.request.gpus
        self.gpu_seconds[job.request.project] = self.gpu_seconds.get(job.request.project, 0.0) + held

    def _arrive(self, job: TraceJob) -> None:
        request = job.request
        reason = self.infeasible.get(request.shape)
        if reason is None:
            reason = self.infeasible[request.shape] = infeasibility(request, self.nodes)
        if reason:
            self.outcomes[request.job_id].rejected = reason
            return
        self.queue.add(request)
        cls = self.config.classes.get(request.priority_class)
        if self.config.can_preempt and cls is not None and cls.preempt_after_s is not None:
            heapq.heappush(self.wakeups, request.submit_time + cls.preempt_after_s)

    def _cycles(self, now: float) -> None:
        if now - self.usage.as_of >= self.interval:
            self.usage = self.usage.advance(now, self.running.values(), self.config.half_life_s)
        for _ in range(4):
            if self.capacity.total_free == 0 and not self.config.can_preempt:
                return
            self.cycles += 1
            decisions = schedule(
                self.nodes,
                self.queue,
                list(self.running.values()),
                now,
                self.config,
                self.usage,
                capacity=self.capacity,
                explain=False,
            )
            for start in decisions.starts:
                request = self.queue.get(start.job_id)
                if request is None:
                    continue
                self.queue.remove(start.job_id)
                self.running[start.job_id] = RunningJob(request, start.placement, now)
                attempt = self.attempt[start.job_id] = self.attempt.get(start.job_id, 0) + 1
                heapq.heappush(self.ends, (now + self.duration[start.job_id], start.job_id, attempt))
                outcome = self.outcomes[start.job_id]
                if outcome.first_start is None:
                    outcome.first_start = now
            for preemption in decisions.preemptions:
                victim = self.running.get(preemption.job_id)
                if victim is None:
                    continue
                self._stop(preemption.job_id, now)
                self.outcomes[preemption.job_id].preemptions += 1
                self.queue.add(victim.request)
            if not decisions.preemptions:
                return

    def _entitled(self) -> dict[str, float]:
        projects = {o.project for o in self.outcomes.values()}
        weights = {p: self.config.shares.get(p, self.config.default_share) for p in projects}
        total = sum(weights.values()) or 1.0
        return {p: w / total for p, w in weights.items()}
