"""Choosing the fewest, least important running jobs to stop so that a waiting job of a higher class can start."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from atelier.scheduling.capacity import FreeCapacity
from atelier.scheduling.inventory import CardKind
from atelier.scheduling.jobs import RunningJob
from atelier.scheduling.request import JobRequest

VictimRank = Callable[[RunningJob], int | None]
"""A running job's class priority if it may be preempted for the job at hand, None if not."""


def choose_victims(
    request: JobRequest,
    capacity: FreeCapacity,
    running_on: Mapping[int, Sequence[RunningJob]],
    rank: VictimRank,
) -> list[RunningJob] | None:
    """The running jobs to stop so that `request` fits, or None when no choice of victims makes it fit.

    Per node, victims are taken lowest class first and, within a class, youngest first (least work lost), until
    the node has enough fitting cards, CPUs and memory; then any victim not needed after all is dropped. The gang
    takes the nodes needing the fewest victims and GPUs. Jobs already `stopping` count as free at no cost.
    """
    costs: list[tuple[tuple[int, int, str], list[RunningJob]]] = []
    accepted = set(capacity.kinds_for(request.cards))
    for ordinal, node in enumerate(capacity.nodes):
        jobs = running_on.get(ordinal, ())
        if not jobs and len(capacity.free[ordinal]) < request.gpus_per_node:
            continue
        victims = _node_victims(request, capacity, ordinal, jobs, rank, accepted)
        if victims is not None:
            fresh = [v for v in victims if not v.stopping]
            costs.append(((len(fresh), sum(v.request.gpus for v in fresh), node.name), victims))
    if len(costs) < request.nodes:
        return None
    costs.sort(key=lambda item: item[0])
    chosen: dict[str, RunningJob] = {}
    for _, victims in costs[: request.nodes]:
        for victim in victims:
            chosen[victim.job_id] = victim
    return list(chosen.values())


def _node_victims(
    request: JobRequest,
    capacity: FreeCapacity,
    ordinal: int,
    jobs: Sequence[RunningJob],
    rank: VictimRank,
    accepted: set[CardKind],
) -> list[RunningJob] | None:
    name = capacity.nodes[ordinal].name
    kinds, usable = capacity.card_kinds[ordinal], capacity.usable[ordinal]
    gained: dict[str, tuple[int, float, int]] = {}
    candidates: list[tuple[int, int, float, RunningJob]] = []
    for job in jobs:
        level = -1 if job.stopping else rank(job)
        if level is None:
            continue
        cards = next(a.cards for a in job.placement.assignments if a.node == name)
        count = sum(1 for i in cards if i in usable and kinds[i] in accepted)
        gained[job.job_id] = (count, job.request.cpus_per_node, job.request.memory_bytes_per_node)
        candidates.append((0 if job.stopping else 1, level, -job.start_time, job))
    candidates.sort(key=lambda c: c[:3])
    have = [
        float(len(capacity.fitting(ordinal, request.cards))),
        capacity.cpus[ordinal],
        float(capacity.memory[ordinal]),
    ]
    need = (float(request.gpus_per_node), request.cpus_per_node, float(request.memory_bytes_per_node))

    def enough(totals: Sequence[float]) -> bool:
        return all(t >= n for t, n in zip(totals, need, strict=True))

    victims: list[RunningJob] = []
    for *_, job in candidates:
        if enough(have):
            break
        victims.append(job)
        have = [h + g for h, g in zip(have, gained[job.job_id], strict=True)]
    if not enough(have):
        return None
    for job in reversed(list(victims)):
        without = [h - g for h, g in zip(have, gained[job.job_id], strict=True)]
        if not job.stopping and enough(without):
            victims.remove(job)
            have = without
    return victims
