"""Atelier's GPU scheduling core: pure placement and policy code, shared by the scheduler service and `atelier sim`.

No gRPC, database or processes here: values in, decisions out.

The service, each cycle::

    from atelier.scheduling import JobQueue, PolicyConfig, RunningJob, schedule

    decisions = schedule(nodes, pending, running, now, config, usage)
    decisions.starts        # [Start(job_id, placement, explanation, backfilled)]: launch these
    decisions.preemptions   # [Preemption(job_id, for_job, reason)]: stop (SIGTERM, grace) and requeue these
    decisions.reservations  # [Reservation(job_id, start_time, nodes)]: the backfill reservation, for display
    decisions.waiting       # {job_id: "waiting: quota ..." | "waiting: resources ..." | "reserved: ..."}

and at submission `check_feasible(request, nodes)` (FAILED_PRECONDITION with the reason when no node could ever
hold it) after `config.check(request)` (INVALID_ARGUMENT for an unknown priority class). Fair-share usage is a
value the service keeps: `usage = usage.advance(now, running, config.half_life_s)` each cycle.

- `Node`, `Card`, `declared_node(...)`, `Interconnect`: the inventory; `CARD_MODELS`, `card_model(name)`: the
  catalogue; `Precision`, `precisions_for(capability)`.
- `JobRequest(...)` / `JobRequest.of(job_id, gpus=..., min_gpu_memory_gib=..., precision="bf16", ...)`.
- `PolicyConfig` (classes, shares, quotas, half-life, weights, backfill, preemption, placement) and the
  baselines `fifo_first_fit()`, `priority_backfill_first_fit()`.
- `BestFit`, `FirstFit`: placement strategies over a `FreeCapacity`.

The simulator is `atelier.scheduling.sim` (`run_simulation`, `render_comparison`, trace readers).
"""

from atelier.scheduling.backfill import Reservation
from atelier.scheduling.capacity import FreeCapacity
from atelier.scheduling.catalogue import CARD_MODELS, GIB, CardModel, card_model
from atelier.scheduling.cycle import Decisions, Preemption, Start, schedule
from atelier.scheduling.fairshare import FairShareUsage, fair_share_factors
from atelier.scheduling.feasibility import check_feasible, infeasibility
from atelier.scheduling.inventory import Card, CardKind, Interconnect, Node, declared_node, island_topology
from atelier.scheduling.jobs import NodeAssignment, Placement, RunningJob
from atelier.scheduling.placement import BestFit, FirstFit, PlacementStrategy
from atelier.scheduling.policy import (
    Ordering,
    PolicyConfig,
    PriorityClass,
    fifo_first_fit,
    priority_backfill_first_fit,
)
from atelier.scheduling.precision import Precision, parse_capability, parse_precision, precisions_for
from atelier.scheduling.queue import JobQueue
from atelier.scheduling.request import CardFilter, JobRequest, resolve_shape

__all__ = [
    "CARD_MODELS",
    "GIB",
    "BestFit",
    "Card",
    "CardFilter",
    "CardKind",
    "CardModel",
    "Decisions",
    "FairShareUsage",
    "FirstFit",
    "FreeCapacity",
    "Interconnect",
    "JobQueue",
    "JobRequest",
    "Node",
    "NodeAssignment",
    "Ordering",
    "Placement",
    "PlacementStrategy",
    "PolicyConfig",
    "Precision",
    "Preemption",
    "PriorityClass",
    "Reservation",
    "RunningJob",
    "Start",
    "card_model",
    "check_feasible",
    "declared_node",
    "fair_share_factors",
    "fifo_first_fit",
    "infeasibility",
    "island_topology",
    "parse_capability",
    "parse_precision",
    "precisions_for",
    "priority_backfill_first_fit",
    "resolve_shape",
    "schedule",
]
