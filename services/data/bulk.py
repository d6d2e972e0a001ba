"""Statements over many chunk digests at once.

A push of 100,000 small files means 100,000 chunk digests to index, check and charge to a
project. Rather than row-by-row ORM work, digests are staged into a temporary table (COPY on
PostgreSQL, executemany on SQLite) and the checks become single set-based statements.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

STAGE = "data_staged_chunks"
_CREATE = {
    "sqlite": f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (digest BLOB PRIMARY KEY, length INTEGER NOT NULL, "
    "offset INTEGER NOT NULL)",
    "postgresql": f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (digest BYTEA PRIMARY KEY, length BIGINT NOT NULL, "
    '"offset" BIGINT NOT NULL)',
}


def dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def stage(session: Session, rows: Sequence[tuple[bytes, int, int]]) -> None:
    """Fill the (connection-local) staging table with `(digest, length, offset)`, replacing what it held.

    Duplicate digests keep their first row.
    """
    kind = dialect(session)
    connection = session.connection()
    connection.exec_driver_sql(_CREATE[kind])
    connection.exec_driver_sql(f"DELETE FROM {STAGE}")
    if not rows:
        return
    if kind == "postgresql":
        _copy(connection, rows)
    else:
        connection.exec_driver_sql(
            f"INSERT OR IGNORE INTO {STAGE} (digest, length, offset) VALUES (?, ?, ?)", list(rows)
        )


def _copy(connection: sa.Connection, rows: Sequence[tuple[bytes, int, int]]) -> None:
    """COPY into the staging table (via a second temp table, as COPY cannot skip duplicates)."""
    raw: Any = connection.connection.dbapi_connection
    with raw.cursor() as cursor:
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {STAGE}_raw (LIKE {STAGE})")
        cursor.execute(f"DELETE FROM {STAGE}_raw")
        with cursor.copy(f'COPY {STAGE}_raw (digest, length, "offset") FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(f"INSERT INTO {STAGE} SELECT * FROM {STAGE}_raw ON CONFLICT DO NOTHING")


def scalar(session: Session, sql: str, **params: Any) -> Any:
    return session.execute(sa.text(sql), params).scalar()


def rows(session: Session, sql: str, **params: Any) -> Sequence[Any]:
    return session.execute(sa.text(sql), params).all()


def execute(session: Session, sql: str, **params: Any) -> int:
    result = session.execute(sa.text(sql), params)
    return int(result.rowcount)  # type: ignore[attr-defined]


def insert_chunks(session: Session, pack: str, chunks: Sequence[tuple[bytes, int, int]], now: float) -> None:
    """Index `(digest, offset, length)` chunks of a pack, keeping existing rows for known digests."""
    if not chunks:
        return
    if dialect(session) == "postgresql":
        stage(session, [(d, n, o) for d, o, n in chunks])
        execute(
            session,
            f'INSERT INTO data_chunks (digest, pack, "offset", length, touched_at) '
            f'SELECT digest, :pack, "offset", length, :now FROM {STAGE} ON CONFLICT DO NOTHING',
            pack=pack,
            now=now,
        )
        return
    session.connection().exec_driver_sql(
        'INSERT OR IGNORE INTO data_chunks (digest, pack, "offset", length, touched_at) VALUES (?, ?, ?, ?, ?)',
        [(d, pack, o, n, now) for d, o, n in chunks],
    )
