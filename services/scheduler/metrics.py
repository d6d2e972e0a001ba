"""The scheduler's Prometheus series, beside the RPC and process metrics every service has.

State (jobs by state, the queue by priority class and project, GPUs by model, nodes, fair share) is
read from the database and the cycle at scrape time by a collector, so a scrape never sees a stale
value; events (a cycle's duration, the wait of each job that starts) are instruments the cycle feeds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from atelier import scheduling as core
from atelier.runtime.timestamps import epoch_seconds
from atelier.scheduler.v1 import resources_pb2 as pb
from services.scheduler.jobs import QUEUED
from services.scheduler.settings import SchedulerSettings
from services.scheduler.tables import JobRow, NodeRow, TaskRow

CYCLE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
WAIT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)


class CycleMetrics:
    """What each scheduling cycle reports."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.cycle_seconds = Histogram(
            "atelier_scheduler_cycle_seconds",
            "Duration of one scheduling cycle (read the queue, decide, record).",
            buckets=CYCLE_BUCKETS,
            registry=registry,
        )
        self.wait_seconds = Histogram(
            "atelier_scheduler_job_wait_seconds",
            "Time from submission (or requeue) to start of each job attempt that started.",
            ["priority_class", "project"],
            buckets=WAIT_BUCKETS,
            registry=registry,
        )

    def started(self, priority_class: str, project: str, waited_s: float) -> None:
        self.wait_seconds.labels(priority_class, project).observe(max(waited_s, 0.0))


class SchedulerCollector(Collector):
    """Queue, jobs, GPUs, nodes and fair share, read when Prometheus scrapes."""

    def __init__(self, engine: Engine, settings: SchedulerSettings, usage: Callable[[], core.FairShareUsage]) -> None:
        self.engine = engine
        self.settings = settings
        self.usage = usage

    def collect(self) -> Iterator[Metric]:
        with Session(self.engine) as session:
            yield from self._jobs(session)
            yield from self._queue(session)
            yield from self._gpus(session)
        yield from self._fair_share()

    def _jobs(self, session: Session) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("atelier_scheduler_jobs", "Jobs by state.", labels=["state"])
        column = col(JobRow.state)
        rows = session.execute(sa.select(column, func.count()).group_by(column)).all()
        counted = {int(state): int(count) for state, count in rows}
        for state in pb.JobState.values():
            if state != pb.JOB_STATE_UNSPECIFIED:
                jobs.add_metric([pb.JobState.Name(state).removeprefix("JOB_STATE_").lower()], counted.get(state, 0))
        yield jobs

    def _queue(self, session: Session) -> Iterator[Metric]:
        length = GaugeMetricFamily(
            "atelier_scheduler_queue_length", "Jobs waiting to start.", labels=["priority_class", "project"]
        )
        oldest = GaugeMetricFamily(
            "atelier_scheduler_queue_oldest_wait_seconds",
            "How long the longest-waiting job has waited (a queue that does not move grows this).",
            labels=["priority_class", "project"],
        )
        gpus = GaugeMetricFamily(
            "atelier_scheduler_queue_gpus", "GPUs asked for by waiting jobs.", labels=["priority_class", "project"]
        )
        columns = (col(JobRow.priority_class), col(JobRow.project))
        rows = session.execute(
            sa.select(*columns, func.count(), func.min(col(JobRow.create_time)), func.sum(col(JobRow.gpus)))
            .where(col(JobRow.state).in_(QUEUED))
            .group_by(*columns)
        ).all()
        now = time.time()
        for priority_class, project, count, first, asked in rows:
            labels = [priority_class or "normal", project]
            length.add_metric(labels, count)
            oldest.add_metric(labels, max(now - epoch_seconds(first), 0.0) if first else 0.0)
            gpus.add_metric(labels, asked or 0)
        yield from (length, oldest, gpus)

    def _gpus(self, session: Session) -> Iterator[Metric]:
        held = {(t.node, c) for t in session.exec(select(TaskRow).where(col(TaskRow.active))) for c in t.cards}
        counts: dict[tuple[str, str], int] = {}
        nodes: dict[str, int] = {}
        for node in session.exec(select(NodeRow)):
            state = pb.NodeState.Name(pb.NodeState.ValueType(node.state)).removeprefix("NODE_STATE_").lower()
            nodes[state] = nodes.get(state, 0) + 1
            for card in node.cards:
                if node.state != pb.NODE_STATE_READY or not card.get("health", {}).get("healthy", False):
                    use = "unavailable"
                else:
                    use = "used" if (node.name, int(card.get("index", 0))) in held else "free"
                key = (card.get("model", ""), use)
                counts[key] = counts.get(key, 0) + 1
        gpus = GaugeMetricFamily(
            "atelier_scheduler_gpus", "GPUs by card model and use (free, used, unavailable).", labels=["model", "use"]
        )
        for (model, use), count in sorted(counts.items()):
            gpus.add_metric([model, use], count)
        by_state = GaugeMetricFamily("atelier_scheduler_nodes", "Nodes by state.", labels=["state"])
        for state, count in sorted(nodes.items()):
            by_state.add_metric([state], count)
        yield from (gpus, by_state)

    def _fair_share(self) -> Iterator[Metric]:
        usage = self.usage()
        shares = self.settings.project_shares
        projects = set(shares) | set(usage.gpu_seconds)
        total_weight = sum(shares.get(p, 1.0) for p in projects) or 1.0
        total_usage = sum(usage.gpu_seconds.values())
        factors = core.fair_share_factors(usage, shares, projects)
        used = GaugeMetricFamily(
            "atelier_scheduler_fair_share_usage_gpu_seconds",
            "Decayed GPU-seconds each project used (half-life as configured).",
            labels=["project"],
        )
        received = GaugeMetricFamily(
            "atelier_scheduler_fair_share_received_ratio",
            "Each project's part of all decayed usage.",
            labels=["project"],
        )
        entitled = GaugeMetricFamily(
            "atelier_scheduler_fair_share_entitled_ratio",
            "Each project's part of the share weights.",
            labels=["project"],
        )
        factor = GaugeMetricFamily(
            "atelier_scheduler_fair_share_factor", "Slurm's fair-share factor 2^(-U/S), in 0..1.", labels=["project"]
        )
        for project in sorted(projects):
            seconds = usage.gpu_seconds.get(project, 0.0)
            used.add_metric([project], seconds)
            received.add_metric([project], seconds / total_usage if total_usage else 0.0)
            entitled.add_metric([project], shares.get(project, 1.0) / total_weight)
            factor.add_metric([project], factors.get(project, 1.0))
        yield from (used, received, entitled, factor)
