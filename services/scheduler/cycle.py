"""One scheduling cycle: read the queue and the free cards, decide, write the decisions.

The deciding is pure (`Snapshot` in, `Decision`s out) so that it can be swapped and replayed; the
cycle only reads the database before and writes it after, in one transaction, so a decision is
either wholly recorded (attempt, tasks, job RUNNING) or not at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from atelier.runtime.database import transaction
from atelier.scheduler.v1 import resources_pb2 as pb
from services.scheduler.cluster import capability, card_fits
from services.scheduler.jobs import QUEUED, job_name, spec_of, utcnow
from services.scheduler.settings import SchedulerSettings
from services.scheduler.spec import Shape, resolve_shape
from services.scheduler.tables import AttemptRow, JobRow, NodeRow, TaskRow

log = logging.getLogger(__name__)


@dataclass
class FreeNode:
    """A READY node and the cards no active task holds."""

    row: NodeRow
    free: list[dict[str, Any]]


@dataclass
class QueuedJob:
    row: JobRow
    spec: pb.Job
    shape: Shape
    priority: int


@dataclass
class Snapshot:
    nodes: list[FreeNode]
    queue: list[QueuedJob]


@dataclass
class Decision:
    """Start `job` on these (node, card indexes) pairs, rank 0 first."""

    job: QueuedJob
    nodes: list[tuple[FreeNode, list[int]]]
    explanation: str = ""


@dataclass
class Outcome:
    starts: list[Decision] = field(default_factory=list)
    waiting: dict[int, str] = field(default_factory=dict)
    """Job row id -> why it still waits."""


Policy = Callable[[Snapshot], Outcome]


def _card_rank(card: dict[str, Any]) -> tuple[int, tuple[int, int]]:
    """Least capable first: smaller memory, older architecture."""
    return int(card.get("memory_total_bytes", 0)), capability(card.get("compute_capability", ""))


def best_fit(snapshot: Snapshot) -> Outcome:
    """Priority order; each job takes the least capable cards that fit, on as few nodes as it
    asks for, preferring nodes it fills most exactly (so big free nodes stay whole)."""
    outcome = Outcome()
    for job in snapshot.queue:
        want = job.shape.gpus_per_node
        candidates = []
        for node in snapshot.nodes:
            fits = sorted((c for c in node.free if card_fits(c, job.spec.resources)), key=_card_rank)
            if len(fits) >= want:
                chosen = fits[:want]
                leftover = len(node.free) - want
                candidates.append(((max((_card_rank(c) for c in chosen), default=(0, (0, 0))), leftover), node, chosen))
        if len(candidates) < job.shape.nodes:
            outcome.waiting[job.row.id or 0] = "waiting: resources (not enough free cards that fit)"
            continue
        candidates.sort(key=lambda item: item[0])
        picked = candidates[: job.shape.nodes]
        decision = Decision(job, [(node, [int(c.get("index", 0)) for c in chosen]) for _, node, chosen in picked])
        models = sorted({c.get("model", "?") for _, _, chosen in picked for c in chosen})
        decision.explanation = (
            f"{job.shape.nodes} node(s) x {want} card(s) of {', '.join(models) or 'no GPU'}: the least capable free "
            "cards meeting memory and precision"
        )
        for _, node, chosen in picked:
            taken = {int(c.get("index", 0)) for c in chosen}
            node.free = [c for c in node.free if int(c.get("index", 0)) not in taken]
        outcome.starts.append(decision)
    return outcome


class Cycle:
    """Runs a `Policy` over the database state and records what it decided."""

    def __init__(self, engine: Engine, settings: SchedulerSettings, policy: Policy = best_fit) -> None:
        self.engine = engine
        self.settings = settings
        self.policy = policy

    def run(self) -> int:
        """One cycle; returns how many jobs started."""
        with transaction(self.engine) as session:
            snapshot = self.snapshot(session)
            if not snapshot.queue:
                return 0
            outcome = self.policy(snapshot)
            for decision in outcome.starts:
                self._start(session, decision)
            for job in snapshot.queue:
                reason = outcome.waiting.get(job.row.id or 0)
                if reason and job.row.reason != reason and not job.row.reason.startswith("waiting: retry"):
                    job.row.reason = reason
                    session.add(job.row)
            return len(outcome.starts)

    def snapshot(self, session: Session) -> Snapshot:
        held: dict[str, set[int]] = {}
        for task in session.exec(select(TaskRow).where(col(TaskRow.active))):
            held.setdefault(task.node, set()).update(task.cards)
        nodes = [
            FreeNode(row, [c for c in row.cards if int(c.get("index", 0)) not in held.get(row.name, set())])
            for row in session.exec(
                select(NodeRow).where(NodeRow.state == pb.NODE_STATE_READY).order_by(col(NodeRow.name))
            )
        ]
        classes = self.settings.priority_classes
        queue = []
        for row in session.exec(
            select(JobRow).where(col(JobRow.state).in_(QUEUED), JobRow.executor == pb.EXECUTOR_KIND_AGENTS)
        ):
            spec = spec_of(row)
            queue.append(QueuedJob(row, spec, resolve_shape(spec.resources), classes.get(row.priority_class, 0)))
        queue.sort(key=lambda j: (-j.priority, j.row.id or 0))
        return Snapshot(nodes, queue)

    def _start(self, session: Session, decision: Decision) -> None:
        row = decision.job.row
        now = utcnow()
        first = decision.nodes[0][0].row
        endpoint = f"{first.address}:{self._port_for(row)}"
        placement = pb.Placement(rendezvous_endpoint=endpoint, explanation=decision.explanation)
        for rank, (node, cards) in enumerate(decision.nodes):
            placement.nodes.add(node=f"nodes/{node.row.name}", cards=cards, rank=rank)
        row.attempt += 1
        session.add(
            AttemptRow(
                job_id=row.id or 0,
                number=row.attempt,
                placement=json_format.MessageToDict(placement, preserving_proto_field_name=True),
                start_time=now,
            )
        )
        for rank, (node, cards) in enumerate(decision.nodes):
            session.add(TaskRow(job_id=row.id or 0, attempt=row.attempt, rank=rank, node=node.row.name, cards=cards))
        row.state = pb.JOB_STATE_RUNNING
        row.start_time = now
        row.reason = f"running on {', '.join(n.node for n in placement.nodes)}"
        session.add(row)
        log.info("started %s attempt %d: %s", job_name(row), row.attempt, row.reason)

    def _port_for(self, row: JobRow) -> int:
        """A rendezvous port from the job and attempt: stable across scheduler restarts."""
        return (
            self.settings.rendezvous_port_base + ((row.id or 0) * 7 + row.attempt) % self.settings.rendezvous_port_count
        )
