"""Dialect-aware upserts (SQLite and PostgreSQL both speak ON CONFLICT)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session


def insert_ignore(session: Session, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows, skipping those whose primary key exists."""
    if rows:
        session.execute(_insert(session, table).values(list(rows)).on_conflict_do_nothing())


def upsert_latest(session: Session, table: Any, rows: Sequence[dict[str, Any]], keys: list[str]) -> None:
    """Insert rows or replace existing ones when the new (step, time) is not older."""
    if not rows:
        return
    statement = _insert(session, table).values(list(rows))
    excluded = statement.excluded
    current = table.__table__.c
    newer = (excluded.step > current.step) | ((excluded.step == current.step) & (excluded.time >= current.time))
    statement = statement.on_conflict_do_update(
        index_elements=keys,
        set_={"value": excluded.value, "step": excluded.step, "time": excluded.time},
        where=newer,
    )
    session.execute(statement)


def _insert(session: Session, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table)
