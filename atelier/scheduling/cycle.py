"""One scheduling cycle: `schedule()`, the pure entry point the scheduler service calls and the simulator replays.

Jobs are taken in priority order. Each either starts (a placement), waits for its project's quota, preempts
lower classes (when its class allows and it has waited its bound), gets the backfill reservation (the first
job that cannot start), or waits. Nothing is executed here: the caller applies the decisions.

What keeps a cycle over 1,000 nodes and 10,000 pending jobs within tens of milliseconds:
- the free-capacity index (`capacity`): a placement looks at buckets of nodes, not at nodes;
- a per-cycle memo of request shapes that did not fit: capacity only shrinks within a cycle, so a job shaped
  like one that did not fit does not fit either;
- a quick rejection on the free cards of acceptable kinds in the whole cluster;
- the lazy priority merge (`queue`) and stopping as soon as no card is free.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from atelier.scheduling.backfill import Reservation, reserve
from atelier.scheduling.capacity import FreeCapacity
from atelier.scheduling.contention import Contention
from atelier.scheduling.explain import Reasons, gather
from atelier.scheduling.fairshare import FairShareUsage, fair_share_factors
from atelier.scheduling.inventory import Node
from atelier.scheduling.jobs import Placement, RunningJob
from atelier.scheduling.placement import Choice, to_placement
from atelier.scheduling.policy import PolicyConfig, strategy_for
from atelier.scheduling.preemption import Holding, choose_victims, running_by_node
from atelier.scheduling.queue import JobQueue
from atelier.scheduling.request import JobRequest


@dataclass(frozen=True)
class Start:
    """Start a job on these cards. `backfilled_before`: the reserved head job it starts ahead of (it cannot
    delay it), empty if none. `reasons`: the facts behind the choice (gathered unless the cycle explains
    nothing)."""

    job_id: str
    placement: Placement
    strategy: str
    models: tuple[str, ...]
    backfilled_before: str = ""
    reasons: Reasons | None = field(default=None, compare=False, repr=False)

    @property
    def explanation(self) -> str:
        """Where and why, in one line (see `explain`); without reasons: `"best-fit: A100-80 on node-7[0,1]"`."""
        if self.reasons is not None:
            return self.reasons.describe()
        text = f"{self.strategy}: {'/'.join(self.models)} on {self.placement.describe()}"
        return text + (f" (backfilled; cannot delay {self.backfilled_before})" if self.backfilled_before else "")


@dataclass(frozen=True)
class Preemption:
    """Stop a running job (SIGTERM, grace, requeue) so that `for_job` can start."""

    job_id: str
    for_job: str
    reason: str


@dataclass
class Decisions:
    """What a cycle decided; `waiting` says, per pending job that does not start, why."""

    starts: list[Start] = field(default_factory=list)
    preemptions: list[Preemption] = field(default_factory=list)
    reservations: list[Reservation] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)


def schedule(
    nodes: Sequence[Node],
    pending: JobQueue | Iterable[JobRequest],
    running: Sequence[RunningJob],
    now: float,
    config: PolicyConfig,
    usage: FairShareUsage | None = None,
    *,
    capacity: FreeCapacity | None = None,
    explain: bool = True,
) -> Decisions:
    """Decide one cycle.

    `usage`: decayed GPU usage per project for fair share (none: every project idle). `capacity`: the free
    capacity `running` leaves on `nodes`, for a caller that keeps one across cycles (the simulator); it is built
    when omitted, and the started jobs' cards are taken from it. `explain=False` skips the reasons of jobs the
    cycle did not look at (the simulator needs none).
    """
    queue = pending if isinstance(pending, JobQueue) else JobQueue(pending)
    if capacity is None:
        capacity = FreeCapacity.build(nodes, running)
    return _Cycle(queue, running, now, config, usage or FairShareUsage(now), capacity, explain).run()


class _Cycle:
    def __init__(
        self,
        queue: JobQueue,
        running: Sequence[RunningJob],
        now: float,
        config: PolicyConfig,
        usage: FairShareUsage,
        capacity: FreeCapacity,
        explain: bool,
    ) -> None:
        self.queue, self.running, self.now, self.config = queue, running, now, config
        self.capacity, self.explain = capacity, explain
        self.strategy = strategy_for(config.placement)
        self.contention = Contention(capacity, queue.demand, queue.wide)
        self.fair_share = fair_share_factors(usage, config.shares, queue.projects(), config.default_share)
        self.decisions = Decisions()
        self.seen: set[str] = set()
        self.failed: dict[int, list[tuple[float, int]]] = {}
        self.failed_off_reserved: dict[int, list[tuple[float, int]]] = {}
        self.gangs_off_reserved: set[int] = set()
        self.probed: dict[tuple[int, bool], int] = {}
        self.dead: set[int] = set()
        self.alive = len(queue.gangs)
        self.reservation: Reservation | None = None
        self.reserved: frozenset[int] = frozenset()
        self.blocked_by = ""
        self.held = self._held()
        self.running_on: dict[int, list[Holding]] | None = None
        self.victims: set[str] = set()
        self.failed_preemption: set[object] = set()
        self.preemptors = 0
        self.preempt_after: dict[str, float] = {
            name: cls.preempt_after_s
            for name, cls in config.classes.items()
            if config.preemption and cls.preempt_after_s is not None
        }
        """Per class that may preempt: how long its jobs wait before they do (the quick test before trying)."""
        self.would_delay = ""

    def run(self) -> Decisions:
        for job in self.queue.ordered(self.now, self.config, self.fair_share):
            if self.capacity.total_free == 0 or self.blocked_by or (self.alive <= 0 and self.reservation is not None):
                break
            self.seen.add(job.job_id)
            self._consider(job)
        if self.config.can_preempt and not self.blocked_by:
            self._preempt_overdue()
        if self.explain:
            self._explain_rest()
        return self.decisions

    def _consider(self, job: JobRequest) -> None:
        waiting = self.decisions.waiting
        if job.project in self.held:
            over = self._over_quota(job)
            if over:
                waiting[job.job_id] = over
                return
        reservation = self.reservation
        short = reservation is not None and self.now + job.max_runtime_s <= reservation.start_time
        exclude = self.reserved if reservation is not None and not short else frozenset()
        # Most jobs of a deep queue have a gang shape already counted out: no placement to try.
        gang = job.gang
        if gang not in self.dead and not (exclude and gang in self.gangs_off_reserved):
            choice = self._place(job, exclude)
            if choice is not None:
                self._start(job, choice)
                return
        bound = self.preempt_after.get(job.priority_class)
        if bound is not None and self.now - job.submit_time >= bound and self._try_preemption(job):
            return
        if reservation is None and self.config.backfill:
            self._reserve(job)
        elif not self.config.backfill:
            self.blocked_by = job.job_id
            waiting[job.job_id] = "waiting: resources (first in line)"
        elif exclude and reservation is not None:
            waiting[job.job_id] = self.would_delay
        else:
            waiting[job.job_id] = "waiting: resources"

    def _place(self, job: JobRequest, exclude: frozenset[int]) -> Choice | None:
        """The strategy's placement, unless a job of the same gang shape asking no more CPUs and host memory did
        not fit (capacity only shrinks within a cycle), or the whole gang shape does not fit (the caller checks
        `dead` and `gangs_off_reserved` first)."""
        gang = job.gang
        failed = (self.failed_off_reserved if exclude else self.failed).setdefault(gang, [])
        cpus, memory = job.cpus_per_node, job.memory_bytes_per_node
        for failed_cpus, failed_memory in failed:
            if failed_cpus <= cpus and failed_memory <= memory:
                return None
        choice = self.strategy.place(job, self.capacity, exclude, self.contention)
        if choice is None:
            failed[:] = [(c, m) for c, m in failed if c < cpus or m < memory]
            failed.append((cpus, memory))
            self._count_out(job, exclude)
        return choice

    def _count_out(self, job: JobRequest, exclude: frozenset[int]) -> None:
        """After a job did not fit: whether its gang shape fits at all (tried without the job's CPUs and memory),
        and if not, count the gang shape out. The cycle ends when every gang shape in the queue is out: none
        fits, or none fits off the reserved nodes and none of its jobs could end before the reservation."""
        gang = job.gang
        if job.cpus_per_node or job.memory_bytes_per_node:
            key, version = (gang, bool(exclude)), len(self.decisions.starts)
            if self.probed.get(key) == version:
                return  # the gang shape fitted, and nothing has started since
            if self.strategy.place(_without_host_resources(job), self.capacity, exclude, self.contention):
                self.probed[key] = version
                return
        reservation = self.reservation
        if exclude and reservation is not None:
            self.gangs_off_reserved.add(gang)
            if self.now + self.queue.shortest_runtime(gang) <= reservation.start_time:
                return
        self.dead.add(gang)
        self.alive -= 1

    def _start(self, job: JobRequest, choice: Choice) -> None:
        capacity = self.capacity
        kinds = capacity.card_kinds
        models = {kinds[ordinal][c].model for ordinal, cards in choice for c in cards}
        placement = to_placement(choice, capacity)
        tried = (
            self.contention.order(job.cards, job.gpus)
            if self.explain and self.strategy.name == "best-fit"
            else capacity.kinds_for(job.cards)
        )
        # Held from now on: later jobs of this cycle see its cards taken, and its end, for their reservation.
        capacity.take_job(RunningJob(job, placement, self.now))
        if job.project in self.held:
            self.held[job.project] += job.gpus
        before = self.reservation.job_id if self.reservation is not None else ""
        reasons = gather(job, choice, capacity, tried, self.strategy.name, before) if self.explain else None
        start = Start(job.job_id, placement, self.strategy.name, tuple(sorted(models)), before, reasons)
        self.decisions.starts.append(start)

    def _reserve(self, job: JobRequest) -> None:
        found = reserve(job, self.capacity, self.now)
        if found is None:
            self.decisions.waiting[job.job_id] = "waiting: resources (needed cards are unhealthy or drained)"
            return
        start, ordinals = found
        names = tuple(self.capacity.nodes[o].name for o in ordinals)
        self.reservation = Reservation(job.job_id, start, names)
        self.reserved = frozenset(ordinals)
        self.would_delay = f"waiting: resources (would delay the start reserved for {job.job_id})"
        self.decisions.reservations.append(self.reservation)
        self.decisions.waiting[job.job_id] = f"reserved: starts by t={start:.0f} on {', '.join(names)}"

    def _try_preemption(self, job: JobRequest) -> bool:
        config = self.config
        if not config.preemption:
            return False
        cls = config.classes.get(job.priority_class)
        if cls is None or cls.preempt_after_s is None or self.now - job.submit_time < cls.preempt_after_s:
            return False
        if self.running_on is None:
            self.running_on = running_by_node(self.capacity, self.running)

        def rank(victim: RunningJob) -> int | None:
            victim_class = config.classes.get(victim.request.priority_class)
            if victim.job_id in self.victims or victim_class is None or not victim_class.preemptible:
                return None
            return victim_class.priority if victim_class.priority < cls.priority else None

        key = (job.shape, cls.priority)
        if key in self.failed_preemption or self.preemptors >= config.preemptors_per_cycle:
            return False
        self.preemptors += 1
        victims = choose_victims(job, self.capacity, self.running_on, rank)
        if victims is None:
            self.failed_preemption.add(key)
            return False
        fresh = [v for v in victims if not v.stopping]
        for victim in fresh:
            self.victims.add(victim.job_id)
            reason = f"preempted for {job.job_id} ({job.priority_class}, waited {self.now - job.submit_time:.0f}s)"
            self.decisions.preemptions.append(Preemption(victim.job_id, job.job_id, reason))
        if fresh:
            self.decisions.waiting[job.job_id] = f"waiting: preempting {', '.join(v.job_id for v in fresh)}"
        else:
            self.decisions.waiting[job.job_id] = "waiting: preempted jobs to stop"
        return True

    def _preempt_overdue(self) -> None:
        """Jobs the main pass did not reach (no free card left) may still preempt."""
        for (class_name, _), group in self.queue.groups.items():
            cls = self.config.classes.get(class_name)
            if cls is None or cls.preempt_after_s is None:
                continue
            for job in group:
                if job.submit_time + cls.preempt_after_s > self.now:
                    break
                if job.job_id in self.seen or job.job_id not in self.queue:
                    continue
                self.seen.add(job.job_id)
                over = self._over_quota(job)
                if over:
                    self.decisions.waiting[job.job_id] = over
                elif not self._try_preemption(job):
                    self.decisions.waiting[job.job_id] = "waiting: resources (no lower-priority jobs to preempt)"

    def _explain_rest(self) -> None:
        waiting = self.decisions.waiting
        for job in self.queue:
            if job.job_id in self.seen:
                continue
            over = self._over_quota(job)
            if over:
                waiting[job.job_id] = over
            elif self.blocked_by:
                waiting[job.job_id] = f"waiting: behind {self.blocked_by}"
            elif self.capacity.total_free == 0:
                waiting[job.job_id] = "waiting: resources (no free cards)"
            else:
                waiting[job.job_id] = "waiting: resources (no free cards fit)"

    def _held(self) -> dict[str, int]:
        """GPUs held per project that has a quota."""
        quotas = self.config.gpu_quotas
        held = dict.fromkeys(quotas, 0)
        if quotas:
            for job in self.running:
                if job.request.project in held:
                    held[job.request.project] += job.request.gpus
        return held

    def _over_quota(self, job: JobRequest) -> str:
        quota = self.config.gpu_quotas.get(job.project)
        if quota is None:
            return ""
        held = self.held[job.project]
        if held + job.gpus <= quota:
            return ""
        return f"waiting: quota (project {job.project} holds {held} of its {quota} GPUs, the job needs {job.gpus})"


_PROBES: dict[int, JobRequest] = {}


def _without_host_resources(job: JobRequest) -> JobRequest:
    """A request of the job's gang shape asking no CPUs and no host memory (one per gang shape)."""
    probe = _PROBES.get(job.gang)
    if probe is None:
        probe = _PROBES[job.gang] = replace(job, job_id="gang-probe", cpus_per_node=0.0, memory_bytes_per_node=0)
    return probe
