"""Drift samples in the monitor's database, so that a restarted monitor has its windows back.

Each block is one row, written in one INSERT with the other blocks of its call before the call is
answered; its numbers are float64 bytes (row-major features, then predictions), which cost no parsing
to write or to read back. The periodic round deletes the blocks no window would still hold: those
older than the windows' age, and per deployment and model version those behind the newest `max_rows`
rows, in two statements.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from atelier.runtime.database import core_transaction
from atelier.runtime.timestamps import utc
from services.monitor.tables import DriftBlockRow

FLOAT64 = np.dtype("<f8")
TABLE: sa.Table = DriftBlockRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class SampleBlock:
    """Checked rows of one deployment and model version: `features` is (rows, len(feature_names))."""

    deployment: str
    model_version: str
    feature_names: list[str]
    features: npt.NDArray[np.float64]
    predictions: npt.NDArray[np.float64]
    receive_time: datetime


class SampleStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def append(self, blocks: Sequence[SampleBlock]) -> None:
        """Store the blocks in one transaction (one INSERT, executemany for several)."""
        if not blocks:
            return
        values = [
            {
                "deployment": b.deployment,
                "model_version": b.model_version,
                "feature_names": json.dumps(b.feature_names),
                "receive_time": b.receive_time,
                "rows": len(b.predictions),
                "features": b.features.astype(FLOAT64, copy=False).tobytes(),
                "predictions": b.predictions.astype(FLOAT64, copy=False).tobytes(),
            }
            for b in blocks
        ]
        with core_transaction(self.engine) as connection:
            connection.execute(TABLE.insert(), values)

    def blocks_since(self, since: datetime | None) -> Iterator[SampleBlock]:
        """Blocks received at or after `since` (all when None), in the order they were stored."""
        query = sa.select(TABLE).order_by(TABLE.c.id)
        if since is not None:
            query = query.where(TABLE.c.receive_time >= since)
        with self.engine.connect() as connection:
            for row in connection.execution_options(yield_per=256).execute(query):
                names = json.loads(row.feature_names)
                features = np.frombuffer(row.features, dtype=FLOAT64).reshape(row.rows, len(names))
                predictions = np.frombuffer(row.predictions, dtype=FLOAT64)
                yield SampleBlock(
                    row.deployment, row.model_version, names, features, predictions, utc(row.receive_time)
                )

    def prune(self, now: datetime, max_age_seconds: float | None, max_rows: int) -> int:
        """Delete the blocks older than `max_age_seconds` and, per deployment and model version, those
        whose newer blocks hold `max_rows` rows already; returns the blocks deleted."""
        newer_rows = (
            sa.func.sum(TABLE.c.rows)
            .over(partition_by=(TABLE.c.deployment, TABLE.c.model_version), order_by=TABLE.c.id.desc(), rows=(None, -1))
            .label("newer_rows")
        )
        ranked = sa.select(TABLE.c.id, newer_rows).subquery()
        behind = sa.select(ranked.c.id).where(ranked.c.newer_rows >= max_rows)
        deleted = 0
        with core_transaction(self.engine) as connection:
            if max_age_seconds is not None:
                oldest = now - timedelta(seconds=max_age_seconds)
                deleted += connection.execute(sa.delete(TABLE).where(TABLE.c.receive_time < oldest)).rowcount
            deleted += connection.execute(sa.delete(TABLE).where(TABLE.c.id.in_(behind))).rowcount
        return deleted
