"""Upserts that SQLite and PostgreSQL both run (the same `ON CONFLICT` clauses).

SQLAlchemy cannot cache the compiled form of its dialect `insert().on_conflict_*()` constructs,
so building one per call compiled it per call (about a millisecond each time). The statements
here are SQL text made once per table and column set, and run with the rows as `executemany`
parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session


def insert_ignore(session: Session, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows, skipping those that conflict with an existing key."""
    if rows:
        session.execute(_ignore(_dialect(session), table.__table__, tuple(rows[0])), list(rows))


def upsert_latest(session: Session, table: Any, rows: Sequence[dict[str, Any]], keys: list[str]) -> None:
    """Insert rows or replace existing ones when the new (step, time) is not older."""
    if rows:
        statement = _latest(_dialect(session), table.__table__, tuple(rows[0]), tuple(keys))
        session.execute(statement, list(rows))


def _dialect(session: Session) -> sa.Dialect:
    return session.get_bind().dialect


@cache
def _ignore(dialect: sa.Dialect, table: sa.Table, columns: tuple[str, ...]) -> sa.TextClause:
    return sa.text(f"{_insert(dialect, table, columns)} ON CONFLICT DO NOTHING")


@cache
def _latest(dialect: sa.Dialect, table: sa.Table, columns: tuple[str, ...], keys: tuple[str, ...]) -> sa.TextClause:
    quote = dialect.identifier_preparer.quote

    def old(column: str) -> str:
        return f"{quote(table.name)}.{quote(column)}"

    def new(column: str) -> str:
        return f"excluded.{quote(column)}"

    updated = ", ".join(f"{quote(c)} = {new(c)}" for c in ("value", "step", "time"))
    newer = f"{new('step')} > {old('step')} OR ({new('step')} = {old('step')} AND {new('time')} >= {old('time')})"
    conflict = ", ".join(quote(k) for k in keys)
    return sa.text(f"{_insert(dialect, table, columns)} ON CONFLICT ({conflict}) DO UPDATE SET {updated} WHERE {newer}")


def _insert(dialect: sa.Dialect, table: sa.Table, columns: tuple[str, ...]) -> str:
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    values = ", ".join(f":{c}" for c in columns)
    return f"INSERT INTO {quote(table.name)} ({names}) VALUES ({values})"
