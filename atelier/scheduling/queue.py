"""The pending jobs, kept so that a cycle can walk them in priority order without sorting them all.

Jobs are grouped by (priority class, project) and kept in submit order within a group. Within a group only the
age term of the priority differs, and it never favours a younger job, so a group's jobs come out in submit
order; a heap over the groups' heads merges them into the exact global order, lazily: a cycle that stops after
a hundred jobs pays for a hundred, not for the whole queue.

The queue also keeps, as jobs come and go, what a cycle needs without walking it: the GPUs pending per card
filter (the demand best fit weighs card kinds by, see `contention`), the nodes wanted by jobs of several GPUs per
node, and per gang shape (`JobRequest.gang`: nodes, GPUs per node, card filter) how many jobs have it and the
shortest maximum run time among them, so that a cycle can stop once no gang shape left could start.
"""

from __future__ import annotations

import heapq
from bisect import insort
from collections.abc import Iterable, Iterator, Mapping

from atelier.scheduling.policy import Ordering, PolicyConfig
from atelier.scheduling.request import CardFilter, JobRequest

GroupKey = tuple[str, str]
"""(priority class, project)."""


def _order(job: JobRequest) -> tuple[float, str]:
    return job.submit_time, job.job_id


def _rank(
    job: JobRequest, base: float, now: float, age_weight: float, horizon: float, fifo: bool
) -> tuple[float, float, str]:
    """Heap key: lower comes first."""
    if fifo:
        return 0.0, job.submit_time, job.job_id
    age = now - job.submit_time
    boost = age_weight if age >= horizon else age_weight * age / horizon if age > 0 else 0.0
    return -(base + boost), job.submit_time, job.job_id


class JobQueue:
    """Pending jobs by (priority class, project), each group in (submit time, id) order."""

    def __init__(self, jobs: Iterable[JobRequest] = ()) -> None:
        self.groups: dict[GroupKey, list[JobRequest]] = {}
        self._jobs: dict[str, JobRequest] = {}
        self._gone: set[str] = set()
        self.demand: dict[CardFilter, int] = {}
        """GPUs of pending jobs per card filter."""
        self.gangs: dict[int, int] = {}
        """Pending jobs per gang shape."""
        self.wide: dict[tuple[CardFilter, int], int] = {}
        """Nodes wanted by pending jobs of more than one GPU per node, per (card filter, GPUs per node)."""
        self._runtimes: dict[int, list[tuple[float, str]]] = {}
        for job in jobs:
            if job.job_id not in self._jobs:
                self._jobs[job.job_id] = job
                self.groups.setdefault((job.priority_class, job.project), []).append(job)
                self._count(job, push=False)
        for group in self.groups.values():
            group.sort(key=_order)
        for runtimes in self._runtimes.values():
            heapq.heapify(runtimes)

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def __iter__(self) -> Iterator[JobRequest]:
        for group in self.groups.values():
            for job in group:
                if job.job_id not in self._gone:
                    yield job

    def add(self, job: JobRequest) -> None:
        """Queue a job (again, after preemption, with its original submit time so it keeps its age)."""
        if job.job_id in self._jobs:
            return
        if job.job_id in self._gone:
            self._compact()  # its old entry must go before it comes back
        self._jobs[job.job_id] = job
        self._count(job)
        group = self.groups.setdefault((job.priority_class, job.project), [])
        if not group or _order(group[-1]) <= _order(job):
            group.append(job)
        else:
            insort(group, job, key=_order)

    def remove(self, job_id: str) -> None:
        """Take a job out (started or cancelled); unknown ids are ignored."""
        job = self._jobs.pop(job_id, None)
        if job is None:
            return
        demand = self.demand[job.cards] - job.gpus
        if demand:
            self.demand[job.cards] = demand
        else:
            del self.demand[job.cards]
        if job.gpus_per_node > 1:
            key = (job.cards, job.gpus_per_node)
            nodes = self.wide[key] - job.nodes
            if nodes:
                self.wide[key] = nodes
            else:
                del self.wide[key]
        count = self.gangs[job.gang] - 1
        if count:
            self.gangs[job.gang] = count
        else:
            del self.gangs[job.gang]
            del self._runtimes[job.gang]
        self._gone.add(job_id)
        if len(self._gone) > 64 and len(self._gone) * 4 > len(self._jobs):
            self._compact()

    def get(self, job_id: str) -> JobRequest | None:
        """The pending job with that id, if any."""
        return self._jobs.get(job_id)

    def shortest_runtime(self, gang: int) -> float:
        """The shortest maximum run time among the pending jobs of a gang shape (infinite for none)."""
        runtimes = self._runtimes.get(gang)
        jobs = self._jobs
        while runtimes and runtimes[0][1] not in jobs:
            heapq.heappop(runtimes)  # started or cancelled since
        return runtimes[0][0] if runtimes else float("inf")

    def projects(self) -> set[str]:
        """Projects with pending jobs."""
        return {project for (_, project), group in self.groups.items() if group}

    def ordered(self, now: float, config: PolicyConfig, fair_share: Mapping[str, float]) -> Iterator[JobRequest]:
        """Pending jobs, highest priority first (FIFO ordering: oldest first), ties by submit time and id.

        The heap holds one entry per group; the popped group then yields its jobs for as long as they rank
        before the best other group's head, so most jobs cost one priority computation and no heap operation.
        """
        gone = self._gone
        fifo = config.ordering is Ordering.FIFO
        age_weight, horizon = config.age_weight, config.age_horizon_s
        heap: list[tuple[tuple[float, float, str], GroupKey, int]] = []
        bases: dict[GroupKey, float] = {}
        for key, group in self.groups.items():
            if group:
                bases[key] = base = self._base(key, config, fair_share)
                heap.append((_rank(group[0], base, now, age_weight, horizon, fifo), key, 0))
        heapq.heapify(heap)
        while heap:
            _, key, position = heapq.heappop(heap)
            group, base = self.groups[key], bases[key]
            bound = heap[0][0] if heap else None
            while position < len(group):
                job = group[position]
                rank = _rank(job, base, now, age_weight, horizon, fifo)
                if bound is not None and rank > bound:
                    heapq.heappush(heap, (rank, key, position))
                    break
                position += 1
                if job.job_id not in gone:
                    yield job

    def priority(self, job: JobRequest, now: float, config: PolicyConfig, fair_share: Mapping[str, float]) -> float:
        """A job's priority now (see `policy`); FIFO ordering: minus its submit time."""
        if config.ordering is Ordering.FIFO:
            return -job.submit_time
        base = self._base((job.priority_class, job.project), config, fair_share)
        return base + config.age_weight * min(max(now - job.submit_time, 0.0) / config.age_horizon_s, 1.0)

    @staticmethod
    def _base(key: GroupKey, config: PolicyConfig, fair_share: Mapping[str, float]) -> float:
        if config.ordering is Ordering.FIFO:
            return 0.0
        cls = config.classes.get(key[0])
        return (cls.priority if cls else 0) + config.fair_share_weight * fair_share.get(key[1], 1.0)

    def _count(self, job: JobRequest, *, push: bool = True) -> None:
        cards, gang = job.cards, job.gang
        demand, gangs = self.demand, self.gangs
        demand[cards] = demand.get(cards, 0) + job.gpus
        gangs[gang] = gangs.get(gang, 0) + 1
        if job.gpus_per_node > 1:
            key = (cards, job.gpus_per_node)
            self.wide[key] = self.wide.get(key, 0) + job.nodes
        runtimes = self._runtimes.get(gang)
        if runtimes is None:
            runtimes = self._runtimes[gang] = []
        if push:
            heapq.heappush(runtimes, (job.max_runtime_s, job.job_id))
        else:
            runtimes.append((job.max_runtime_s, job.job_id))  # heapified once the queue is built

    def _compact(self) -> None:
        gone = self._gone
        for key, group in self.groups.items():
            self.groups[key] = [job for job in group if job.job_id not in gone]
        self._gone = set()
