"""One scheduling cycle: read the cluster and the queue, let `atelier.scheduling.schedule` decide,
write the decisions.

The deciding is the pure policy core that `atelier sim` replays too; this module only translates
rows into its values and its decisions back into rows, in one transaction, so a decision is either
wholly recorded (attempt, tasks, job RUNNING; or a preemption) or not at all.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from google.protobuf import json_format
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from atelier import scheduling as core
from atelier.runtime.database import transaction
from atelier.runtime.timestamps import epoch_seconds
from atelier.scheduler.v1 import resources_pb2 as pb
from services.scheduler.jobs import QUEUED, job_name, spec_of, utcnow
from services.scheduler.metrics import CycleMetrics
from services.scheduler.outcomes import preempted
from services.scheduler.settings import SchedulerSettings
from services.scheduler.spec import resolve_shape
from services.scheduler.tables import AttemptRow, JobRow, NodeRow, TaskRow
from services.scheduler.usage import load_usage, save_usage

log = logging.getLogger(__name__)
DEFAULT_MAX_RUN_TIME = 24 * 3600.0
"""What backfill assumes of a job that gives no max run time."""
_LINKS = {
    pb.LINK_TYPE_NVLINK: core.Interconnect.NVLINK,
    pb.LINK_TYPE_SAME_BOARD: core.Interconnect.SAME_BOARD,
    pb.LINK_TYPE_PCIE_SWITCH: core.Interconnect.PCIE_SWITCH,
    pb.LINK_TYPE_PCIE_MULTI_SWITCH: core.Interconnect.PCIE_MULTI_SWITCH,
    pb.LINK_TYPE_HOST_BRIDGE: core.Interconnect.HOST_BRIDGE,
    pb.LINK_TYPE_NUMA: core.Interconnect.NUMA,
    pb.LINK_TYPE_SYSTEM: core.Interconnect.SYSTEM,
}


def policy_config(settings: SchedulerSettings) -> core.PolicyConfig:
    """The policy from the settings; known class names keep their default preemption rules."""
    classes = {}
    for name, priority in settings.priority_classes.items():
        default = core.policy.DEFAULT_CLASSES.get(name)
        classes[name] = core.PriorityClass(
            name,
            priority,
            preempt_after_s=default.preempt_after_s if default else None,
            preemptible=default.preemptible if default else True,
        )
    return core.PolicyConfig(
        classes=classes,
        shares=settings.project_shares,
        gpu_quotas=settings.project_gpu_quotas,
        half_life_s=settings.fair_share_half_life_hours * 3600.0,
    )


def node_of(row: NodeRow) -> core.Node:
    cards = tuple(
        core.Card(
            index=int(c.get("index", 0)),
            model=c.get("model", ""),
            memory_total_bytes=int(c.get("memory_total_bytes", 0)),
            capability=core.parse_capability(c.get("compute_capability", "0.0")),
            uuid=c.get("uuid", ""),
            mig_enabled=bool(c.get("mig_enabled", False)),
            healthy=bool(c.get("health", {}).get("healthy", False)),
        )
        for c in row.cards
    )
    position = {card.index: i for i, card in enumerate(cards)}
    matrix = [[core.Interconnect.SYSTEM] * len(cards) for _ in cards]
    for i in range(len(cards)):
        matrix[i][i] = core.Interconnect.NVLINK
    for link in row.links:
        a, b = position.get(int(link.get("a", 0))), position.get(int(link.get("b", 0)))
        kind = _LINKS.get(pb.LinkType.Value(link.get("type", "LINK_TYPE_SYSTEM")), core.Interconnect.SYSTEM)
        if a is not None and b is not None:
            matrix[a][b] = matrix[b][a] = kind
    return core.Node(
        row.name, cards, tuple(tuple(r) for r in matrix), cpus=float(row.cpus), memory_bytes=row.memory_bytes
    )


def request_of(row: JobRow) -> core.JobRequest:
    """The policy core's request for a stored job."""
    return request_from(
        str(row.id),
        spec_of(row),
        priority_class=row.priority_class or "normal",
        project=row.project,
        user=row.user,
        submit_time=epoch_seconds(row.create_time),
    )


def request_from(
    job_id: str,
    spec: pb.Job,
    *,
    priority_class: str = "normal",
    project: str = "default",
    user: str = "",
    submit_time: float = 0.0,
) -> core.JobRequest:
    """The policy core's request for a job spec: gang shape, card filter, CPUs and host memory per node."""
    resources = spec.resources
    shape = resolve_shape(resources)
    precision = resources.precision
    limit = spec.max_run_time.ToNanoseconds() / 1e9 if spec.HasField("max_run_time") else 0.0
    return core.JobRequest(
        job_id,
        shape.nodes,
        shape.gpus_per_node,
        core.CardFilter(
            min_memory_bytes=resources.min_gpu_memory_bytes,
            precision=core.parse_precision(pb.Precision.Name(precision).removeprefix("PRECISION_"))
            if precision
            else None,
            allowed_models=frozenset(resources.allowed_card_models),
            forbidden_models=frozenset(resources.forbidden_card_models),
        ),
        cpus_per_node=float(resources.cpus_per_node),
        memory_bytes_per_node=resources.memory_bytes_per_node,
        max_runtime_s=limit or DEFAULT_MAX_RUN_TIME,
        priority_class=priority_class,
        project=project,
        user=user,
        submit_time=submit_time,
    )


def explanation_of(start: core.Start, reason: str) -> str:
    """The start's explanation, saying so when the job's last wait was for jobs it preempted (the cycle that
    starts it does not know: the preempting was decided in earlier cycles, recorded in the job's reason)."""
    if reason.startswith("waiting: preempt"):
        return f"{start.explanation}; preempted lower-priority jobs to start"
    return start.explanation


def _waited(session: Session, row: JobRow, now: datetime) -> float:
    """Seconds the attempt now starting waited: since submission, or since the previous attempt ended."""
    previous = session.exec(
        select(AttemptRow).where(AttemptRow.job_id == row.id, AttemptRow.number == row.attempt - 1)
    ).first()
    since = previous.end_time if previous is not None and previous.end_time is not None else row.create_time
    return now.timestamp() - epoch_seconds(since)


class Cycle:
    """Runs the policy core over the database state and records what it decided."""

    def __init__(self, engine: Engine, settings: SchedulerSettings, metrics: CycleMetrics | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self.config = policy_config(settings)
        self.usage = load_usage(engine, self.config.half_life_s)
        self._saved_at = self.usage.as_of
        self.queue = core.JobQueue()
        """The pending jobs as the policy core sees them, kept across cycles (see `_queue_of`)."""

    def run(self) -> int:
        """One cycle; returns how many jobs started."""
        started = time.perf_counter()
        try:
            return self._cycle()
        finally:
            if self.metrics is not None:
                self.metrics.cycle_seconds.observe(time.perf_counter() - started)

    def _cycle(self) -> int:
        now = time.time()
        with transaction(self.engine) as session:
            queued = list(
                session.exec(
                    select(JobRow).where(col(JobRow.state).in_(QUEUED), JobRow.executor == pb.EXECUTOR_KIND_AGENTS)
                )
            )
            running = self._running(session)
            self.usage = self.usage.advance(now, [*running, *self._external(session)], self.config.half_life_s)
            if now - self._saved_at >= self.settings.usage_save_interval_seconds:
                save_usage(session, self.usage)
                self._saved_at = now
            if not queued:
                return 0
            nodes = [node_of(row) for row in session.exec(select(NodeRow).where(NodeRow.state == pb.NODE_STATE_READY))]
            decisions = core.schedule(nodes, self._queue_of(queued), running, now, self.config, self.usage)
            by_id = {str(r.id): r for r in queued}
            rows = {row.name: row for row in session.exec(select(NodeRow))}
            for start in decisions.starts:
                self._start(session, by_id[start.job_id], start, rows)
            for preemption in decisions.preemptions:
                victim = session.get(JobRow, int(preemption.job_id))
                by = by_id.get(preemption.for_job)
                if victim is not None and victim.state == pb.JOB_STATE_RUNNING:
                    preempted(session, victim, job_name(by) if by else preemption.for_job, utcnow())
            for job_id, reason in decisions.waiting.items():
                row = by_id.get(job_id)
                if row is not None and row.reason != reason and not row.reason.startswith("waiting: retry"):
                    row.reason = reason
                    session.add(row)
            return len(decisions.starts)

    def _queue_of(self, queued: list[JobRow]) -> core.JobQueue:
        """The queue brought up to date: only jobs that joined or left it since the last cycle are converted or
        dropped, so a cycle neither parses every waiting job's spec nor re-sorts the queue (a job's request does
        not change while it waits; `schedule` never changes the queue)."""
        ids = {str(row.id) for row in queued}
        for job_id in [job.job_id for job in self.queue if job.job_id not in ids]:
            self.queue.remove(job_id)
        for row in queued:
            if str(row.id) not in self.queue:
                self.queue.add(request_of(row))
        return self.queue

    def _running(self, session: Session) -> list[core.RunningJob]:
        """Jobs holding cards: running attempts, and ended ones whose processes are still stopping."""
        held: dict[tuple[int, int], list[TaskRow]] = {}
        for task in session.exec(select(TaskRow).where(col(TaskRow.active))):
            held.setdefault((task.job_id, task.attempt), []).append(task)
        running = []
        for (job_id, attempt), tasks in held.items():
            row = session.get(JobRow, job_id)
            if row is None:
                continue
            placement = core.Placement(
                tuple(core.NodeAssignment(t.node, tuple(t.cards)) for t in sorted(tasks, key=lambda t: t.rank))
            )
            stopping = not (row.state == pb.JOB_STATE_RUNNING and row.attempt == attempt)
            running.append(core.RunningJob(request_of(row), placement, epoch_seconds(row.start_time), stopping))
        return running

    def _external(self, session: Session) -> list[core.RunningJob]:
        """Jobs another engine (Slurm) runs: they hold no card Atelier places, but their GPUs count toward
        their project's fair-share usage like the agents' jobs, from the start the handoff recorded."""
        rows = session.exec(
            select(JobRow).where(
                JobRow.state == pb.JOB_STATE_RUNNING, JobRow.executor != pb.EXECUTOR_KIND_AGENTS, JobRow.gpus > 0
            )
        )  # (a job without GPUs uses no GPU time, and the policy core's requests have GPUs)
        return [
            core.RunningJob(request_of(row), core.Placement(()), epoch_seconds(row.start_time))
            for row in rows
            if row.start_time is not None
        ]

    def _start(self, session: Session, row: JobRow, start: core.Start, nodes: dict[str, NodeRow]) -> None:
        now = utcnow()
        first = nodes[start.placement.assignments[0].node]
        endpoint = f"{first.address}:{self._port_for(row)}"
        explanation = explanation_of(start, row.reason)
        placement = pb.Placement(rendezvous_endpoint=endpoint, explanation=explanation)
        for rank, assignment in enumerate(start.placement.assignments):
            placement.nodes.add(node=f"nodes/{assignment.node}", cards=list(assignment.cards), rank=rank)
        row.attempt += 1
        session.add(
            AttemptRow(
                job_id=row.id or 0,
                number=row.attempt,
                placement=json_format.MessageToDict(placement, preserving_proto_field_name=True),
                start_time=now,
            )
        )
        for rank, assignment in enumerate(start.placement.assignments):
            session.add(
                TaskRow(
                    job_id=row.id or 0,
                    attempt=row.attempt,
                    rank=rank,
                    node=assignment.node,
                    cards=list(assignment.cards),
                )
            )
        if self.metrics is not None:
            self.metrics.started(row.priority_class or "normal", row.project, _waited(session, row, now))
        row.state = pb.JOB_STATE_RUNNING
        row.start_time = now
        row.reason = f"running on {', '.join(n.node for n in placement.nodes)}"
        session.add(row)
        log.info("started %s attempt %d: %s", job_name(row), row.attempt, explanation)

    def _port_for(self, row: JobRow) -> int:
        """A rendezvous port from the job and attempt: stable across scheduler restarts."""
        offset = ((row.id or 0) * 7 + row.attempt) % self.settings.rendezvous_port_count
        return self.settings.rendezvous_port_base + offset
