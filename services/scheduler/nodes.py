"""Nodes and their agents: registration, heartbeats (the desired-state exchange), lost nodes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from google.protobuf import json_format
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from atelier.errors import InvalidArgument, NotFound
from atelier.names import parse_name, validate_id
from atelier.runtime.database import transaction
from atelier.runtime.pagination import decode_token, encode_token, page_size
from atelier.scheduler.v1 import agent_service_pb2 as agent
from atelier.scheduler.v1 import resources_pb2 as pb
from atelier.scheduling.inventory import MAX_CARDS_PER_NODE
from services.scheduler.jobs import find_job, job_name, spec_of, utcnow
from services.scheduler.launch import build_tasks
from services.scheduler.outcomes import apply_status, attempt_failed, attempt_of, is_live, task_finished
from services.scheduler.spec import resolve_shape
from services.scheduler.tables import JobRow, NodeRow, TaskRow

NODE = "nodes/{node}"


def card_dict(card: pb.Card) -> dict[str, object]:
    return json_format.MessageToDict(card, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def check_cards(cards: list[pb.Card]) -> None:
    if len(cards) > MAX_CARDS_PER_NODE:
        raise InvalidArgument(
            f"{len(cards)} cards on one node; at most {MAX_CARDS_PER_NODE}", metadata={"field": "cards"}
        )
    seen: set[int] = set()
    for card in cards:
        if not 0 <= card.index < MAX_CARDS_PER_NODE:
            raise InvalidArgument(f"card index {card.index}; indexes are 0 to {MAX_CARDS_PER_NODE - 1}")
        if card.index in seen:
            raise InvalidArgument(f"card index {card.index} is reported twice")
        seen.add(card.index)
        if card.memory_total_bytes <= 0:
            raise InvalidArgument(f"card {card.index} ({card.model}) reports no memory")
        major, _, minor = card.compute_capability.partition(".")
        if not (major.isdigit() and minor.isdigit()):
            raise InvalidArgument(
                f"card {card.index} has compute capability {card.compute_capability!r}; expected MAJOR.MINOR like 8.0"
            )


def check_node(node: pb.Node) -> None:
    """What a node registers besides its cards: links between its cards, of known types, and no
    negative amounts."""
    if node.cpus < 0 or node.memory_bytes < 0:
        raise InvalidArgument(
            f"node reports {node.cpus} CPUs and {node.memory_bytes} bytes of memory; neither may be negative",
            metadata={"field": "node.cpus"},
        )
    indexes = {card.index for card in node.cards}
    for link in node.links:
        if link.a not in indexes or link.b not in indexes or link.a == link.b:
            raise InvalidArgument(
                f"link {link.a}-{link.b} does not join two of the node's cards ({sorted(indexes)})",
                metadata={"field": "node.links"},
            )
        if link.type not in pb.LinkType.values() or link.type == pb.LINK_TYPE_UNSPECIFIED:
            names = ", ".join(n for n in pb.LinkType.keys() if n != "LINK_TYPE_UNSPECIFIED")  # noqa: SIM118
            raise InvalidArgument(f"link {link.a}-{link.b} has type {link.type}; types are {names}")


@dataclass(frozen=True)
class NodeUse:
    """What running jobs hold on a node: cards (index -> job name), and the CPUs and host memory their
    resources ask per node."""

    holders: dict[int, str] = field(default_factory=dict)
    cpus: int = 0
    memory_bytes: int = 0


@dataclass
class Heartbeat:
    """What a heartbeat answers: the tasks to run, or that the node must register again."""

    tasks: list[agent.Task]
    registered: bool


class Nodes:
    """The cluster as agents report it."""

    def __init__(
        self, engine: Engine, grace_seconds: float, job_token: Callable[[agent.Task], str] | None = None
    ) -> None:
        self.engine = engine
        self.grace_seconds = grace_seconds
        # With access control on: the project-scoped token each task's processes get as ATELIER_TOKEN.
        self.job_token = job_token

    def register(self, node: pb.Node, node_id: str) -> NodeRow:
        validate_id("node", node_id)
        check_cards(list(node.cards))
        check_node(node)
        now = utcnow()
        with transaction(self.engine) as session:
            row = session.exec(select(NodeRow).where(NodeRow.name == node_id)).first()
            if row is None:
                row = NodeRow(name=node_id, state=pb.NODE_STATE_READY, register_time=now, heartbeat_time=now)
            row.address = node.address or node_id
            row.state = pb.NODE_STATE_READY if row.state != pb.NODE_STATE_DRAINED else row.state
            row.discovery = node.discovery
            row.driver_version = node.driver_version
            row.cpus = node.cpus
            row.memory_bytes = node.memory_bytes
            row.labels = dict(node.labels)
            row.cards = [card_dict(c) for c in node.cards]
            row.links = [json_format.MessageToDict(link, preserving_proto_field_name=True) for link in node.links]
            row.register_time = now
            row.heartbeat_time = now
            session.add(row)
        return row

    def heartbeat(self, name: str, cards: list[pb.Card], statuses: list[agent.TaskStatus]) -> Heartbeat:
        node_id = parse_name(name, NODE)["node"]
        now = utcnow()
        with transaction(self.engine) as session:
            row = session.exec(select(NodeRow).where(NodeRow.name == node_id)).first()
            if row is None or row.state == pb.NODE_STATE_LOST:
                return Heartbeat([], registered=False)
            row.heartbeat_time = now
            if cards:
                check_cards(cards)
                row.cards = [card_dict(c) for c in cards]
            session.add(row)
            self._reconcile(session, node_id, statuses, now)
            tasks = self._desired(session, node_id)
        if self.job_token is not None:  # outside the transaction: it may ask the IAM service
            for task in tasks:
                token = self.job_token(task)
                if token:
                    task.env["ATELIER_TOKEN"] = token
        return Heartbeat(tasks, registered=True)

    def _reconcile(self, session: Session, node_id: str, statuses: list[agent.TaskStatus], now: datetime) -> None:
        """Applies the reported statuses; a task the agent ran before but no longer reports is gone."""
        active = {(t.job_id, t.attempt, t.rank): t for t in self._active(session, node_id)}
        jobs: dict[str, JobRow | None] = {}
        reported: set[tuple[int, int, int]] = set()
        for status in statuses:
            if status.job not in jobs:
                jobs[status.job] = _job_by_name(session, status.job)
            job = jobs[status.job]
            task = active.get((job.id or 0, status.attempt, status.rank)) if job else None
            if task is None:
                continue
            reported.add((task.job_id, task.attempt, task.rank))
            if status.state != task.state:
                apply_status(session, task, status, now)
        for key, task in active.items():
            if key not in reported and task.state in (agent.TASK_STATE_STARTING, agent.TASK_STATE_RUNNING):
                task_finished(session, task, -9, "the agent no longer runs the process (agent restarted?)", now)

    def _desired(self, session: Session, node_id: str) -> list[agent.Task]:
        tasks: list[agent.Task] = []
        for task in self._active(session, node_id):
            job = session.get(JobRow, task.job_id)
            if job is None or not is_live(job, task):
                continue
            attempt = attempt_of(session, job)
            if attempt is None:
                continue
            spec = spec_of(job)
            placement = json_format.ParseDict(attempt.placement, pb.Placement())
            built = build_tasks(
                job_name(job),
                spec,
                resolve_shape(spec.resources),
                placement,
                job.attempt,
                self.grace_seconds,
                job.trace_parent,
            )
            tasks.extend(t for t in built if t.rank == task.rank)
        return tasks

    def _active(self, session: Session, node_id: str) -> list[TaskRow]:
        return list(session.exec(select(TaskRow).where(TaskRow.node == node_id, col(TaskRow.active))))

    def mark_lost(self, timeout_seconds: float) -> list[str]:
        """Nodes silent for longer than the timeout become LOST; the attempts running there fail
        (and are retried by their job's policy). Returns the names of the nodes lost."""
        limit = utcnow() - timedelta(seconds=timeout_seconds)
        lost = []
        with transaction(self.engine) as session:
            silent = session.exec(
                select(NodeRow).where(NodeRow.state != pb.NODE_STATE_LOST, col(NodeRow.heartbeat_time) < limit)
            ).all()
            now = utcnow()
            for row in silent:
                row.state = pb.NODE_STATE_LOST
                session.add(row)
                lost.append(row.name)
                for task in self._active(session, row.name):
                    task.active = False
                    task.message = f"node {row.name} lost"
                    session.add(task)
                    job = session.get(JobRow, task.job_id)
                    if job is not None and is_live(job, task):
                        attempt_failed(session, job, f"node nodes/{row.name} stopped heartbeating", now)
        return lost

    def get_node(self, name: str) -> tuple[NodeRow, NodeUse]:
        node_id = parse_name(name, NODE)["node"]
        with Session(self.engine) as session:
            row = session.exec(select(NodeRow).where(NodeRow.name == node_id)).first()
            if row is None:
                raise NotFound(f"node {name} not found", metadata={"node": name})
            return row, self._use(session, node_id)

    def list_nodes(self, size: int, token: str) -> tuple[list[tuple[NodeRow, NodeUse]], str]:
        limit = page_size(size)
        after = decode_token(token, "")
        with Session(self.engine) as session:
            rows = list(
                session.exec(select(NodeRow).where(NodeRow.name > after).order_by(col(NodeRow.name)).limit(limit + 1))
            )
            result = [(r, self._use(session, r.name)) for r in rows[:limit]]
        return result, encode_token(rows[limit - 1].name) if len(rows) > limit else ""

    def _use(self, session: Session, node_id: str) -> NodeUse:
        holders: dict[int, str] = {}
        cpus = memory = 0
        for task in self._active(session, node_id):
            job = session.get(JobRow, task.job_id)
            if job is not None:
                holders.update(dict.fromkeys(task.cards, job_name(job)))
                resources = spec_of(job).resources
                cpus += resources.cpus_per_node
                memory += resources.memory_bytes_per_node
        return NodeUse(holders, cpus, memory)


def _job_by_name(session: Session, name: str) -> JobRow | None:
    parts = name.split("/")
    return find_job(session, {"project": parts[1], "job": parts[3]}) if len(parts) == 4 else None
