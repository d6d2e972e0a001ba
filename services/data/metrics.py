"""The data service's Prometheus series, beside the RPC and process metrics every service has.

Bytes stored per project (logical: the sum of every version's size; deduplicated: distinct chunks
the project's versions reference) are read from the database at scrape time; bytes moved by pushes
and pulls are counters the servicer feeds, so `rate()` gives throughput.
"""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlmodel import col

from services.data.store import DataStore
from services.data.tables import DatasetRow, ProjectRow, VersionRow


class TransferMetrics:
    """Bytes pushed and pulled, per project."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "atelier_data_received_bytes", "Chunk bytes received by pushes.", ["project"], registry=registry
        )
        self.stored = Counter(
            "atelier_data_stored_new_bytes", "Bytes of chunks new to the store, written by pushes.", ["project"],
            registry=registry,
        )  # fmt: skip
        self.sent = Counter(
            "atelier_data_sent_bytes", "Bytes sent to readers (pulls, file reads).", ["project"], registry=registry
        )


class StorageCollector(Collector):
    """Logical vs deduplicated bytes, versions and datasets of each project, read when scraped."""

    def __init__(self, store: DataStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        stored = GaugeMetricFamily(
            "atelier_data_project_bytes",
            "Bytes of a project's dataset versions: logical (sum of version sizes) or deduplicated (distinct chunks).",
            labels=["project", "kind"],
        )
        versions = GaugeMetricFamily("atelier_data_versions", "Dataset versions per project.", labels=["project"])
        quota = GaugeMetricFamily(
            "atelier_data_quota_bytes", "A project's storage quota (absent when unlimited).", labels=["project"]
        )
        query = (
            sa.select(
                col(ProjectRow.name),
                col(ProjectRow.stored_bytes),
                col(ProjectRow.quota_bytes),
                func.coalesce(func.sum(col(VersionRow.total_size)), 0),
                func.count(col(VersionRow.id)),
            )
            .select_from(ProjectRow)
            .outerjoin(DatasetRow, col(DatasetRow.project_id) == col(ProjectRow.id))
            .outerjoin(VersionRow, col(VersionRow.dataset_id) == col(DatasetRow.id))
            .group_by(col(ProjectRow.id))
        )
        with self.store.session() as session:
            rows = session.execute(query).all()
        for project, deduplicated, limit, logical, count in rows:
            stored.add_metric([project, "logical"], int(logical))
            stored.add_metric([project, "deduplicated"], int(deduplicated))
            versions.add_metric([project], int(count))
            if limit:
                quota.add_metric([project], int(limit))
        yield from (stored, versions, quota)
