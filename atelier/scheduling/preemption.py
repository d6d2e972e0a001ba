"""Choosing the fewest, least important running jobs to stop so that a waiting job of a higher class can start."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from atelier.scheduling.capacity import FreeCapacity
from atelier.scheduling.jobs import RunningJob
from atelier.scheduling.request import JobRequest

VictimRank = Callable[[RunningJob], int | None]
"""A running job's class priority if it may be preempted for the job at hand, None if not."""

Holding = tuple[RunningJob, tuple[int, ...]]
"""A running job and the cards it holds on one node."""

Cost = tuple[int, int, int]
"""(new victims, highest victim class priority, GPUs stopped): lower is better."""


def running_by_node(capacity: FreeCapacity, running: Sequence[RunningJob]) -> dict[int, list[Holding]]:
    """Node ordinal -> the running jobs on it with their cards there."""
    found: dict[int, list[Holding]] = {}
    for job in running:
        for assignment in job.placement.assignments:
            ordinal = capacity.ordinal.get(assignment.node)
            if ordinal is not None:
                found.setdefault(ordinal, []).append((job, assignment.cards))
    return found


def choose_victims(
    request: JobRequest,
    capacity: FreeCapacity,
    running_on: Mapping[int, Sequence[Holding]],
    rank: VictimRank,
) -> list[RunningJob] | None:
    """The running jobs to stop so that `request` fits, or None when no choice of victims makes it fit.

    Per node, victims are taken lowest class first and, within a class, youngest first (least work lost), until
    the node has enough fitting cards, CPUs and memory; victims not needed after all are dropped again. The gang
    takes the nodes with the lowest cost (fewest new victims, lowest classes, fewest GPUs stopped); the search
    ends early once it has enough nodes needing a single victim that frees exactly what is missing. Jobs
    already `stopping` count as free at no cost.
    """
    ranks: dict[str, int | None] = {}

    def ranked(job: RunningJob) -> int | None:
        if job.job_id not in ranks:
            ranks[job.job_id] = -1 if job.stopping else rank(job)
        return ranks[job.job_id]

    found: list[tuple[Cost, str, list[RunningJob]]] = []
    perfect = 0
    kinds = capacity.kinds_for(request.cards)
    candidates = [o for kind in kinds for o in capacity.nodes_of_kind.get(kind, ())]
    candidates.extend(capacity.mixed)
    for ordinal in candidates:
        holdings = running_on.get(ordinal, ())
        if not holdings:
            continue
        result = _node_victims(request, capacity, ordinal, holdings, ranked)
        if result is None:
            continue
        cost, victims = result
        found.append((cost, capacity.nodes[ordinal].name, victims))
        if cost[0] <= 1 and cost[2] == _missing(request, capacity, ordinal):
            perfect += 1
            if perfect >= request.nodes:
                break
    if len(found) < request.nodes:
        return None
    found.sort(key=lambda item: (item[0], item[1]))
    chosen: dict[str, RunningJob] = {}
    for _, _, victims in found[: request.nodes]:
        for victim in victims:
            chosen[victim.job_id] = victim
    return list(chosen.values())


def _missing(request: JobRequest, capacity: FreeCapacity, ordinal: int) -> int:
    return max(request.gpus_per_node - len(capacity.fitting(ordinal, request.cards)), 0)


def _node_victims(
    request: JobRequest,
    capacity: FreeCapacity,
    ordinal: int,
    holdings: Sequence[Holding],
    ranked: VictimRank,
) -> tuple[Cost, list[RunningJob]] | None:
    kind = capacity.kind_of[ordinal]
    usable = capacity.usable[ordinal]
    card_kinds = None if kind is not None else capacity.card_kinds[ordinal]
    accepts = request.cards.accepts
    options: list[tuple[int, float, RunningJob, int]] = []
    for job, cards in holdings:
        level = ranked(job)
        if level is None:
            continue
        if card_kinds is None:
            count = sum(1 for i in cards if i in usable)
        else:
            count = sum(1 for i in cards if i in usable and accepts(card_kinds[i]))
        options.append((level, -job.start_time, job, count))
    if not options:
        return None
    options.sort(key=lambda o: (o[0], o[1]))
    gpus = len(capacity.fitting(ordinal, request.cards))
    cpus, memory = capacity.cpus[ordinal], capacity.memory[ordinal]
    need_gpus, need_cpus, need_memory = request.gpus_per_node, request.cpus_per_node, request.memory_bytes_per_node
    taken: list[tuple[int, float, RunningJob, int]] = []
    for option in options:
        if gpus >= need_gpus and cpus >= need_cpus and memory >= need_memory:
            break
        taken.append(option)
        gpus += option[3]
        cpus += option[2].request.cpus_per_node
        memory += option[2].request.memory_bytes_per_node
    if gpus < need_gpus or cpus < need_cpus or memory < need_memory:
        return None
    for option in reversed(list(taken)):
        job = option[2]
        if job.stopping:
            continue
        if (
            gpus - option[3] >= need_gpus
            and cpus - job.request.cpus_per_node >= need_cpus
            and memory - job.request.memory_bytes_per_node >= need_memory
        ):
            taken.remove(option)
            gpus -= option[3]
            cpus -= job.request.cpus_per_node
            memory -= job.request.memory_bytes_per_node
    fresh = [o for o in taken if not o[2].stopping]
    cost = (len(fresh), max((o[0] for o in fresh), default=-1), sum(o[3] for o in fresh))
    return cost, [o[2] for o in taken]
