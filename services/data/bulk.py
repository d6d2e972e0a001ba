"""Statements over many chunk digests at once.

A push of 100,000 small files means 100,000 chunk digests to index, check and charge to a
project. Rather than row-by-row work, the digests become one table expression that set-based
statements read: on SQLite, the digests travel as one blob and their lengths and offsets as one
JSON array, unpacked inside the statement (no per-row binding, no temporary table); on PostgreSQL
they are staged into a temporary table with COPY.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

STAGE = "data_staged_chunks"
_CREATE_PG = (
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (digest BYTEA PRIMARY KEY, length BIGINT NOT NULL, "
    '"offset" BIGINT NOT NULL)'
)
# Row i: the i-th 32 bytes of :digests, with the i-th element of the JSON array :sizes (a length, or
# a [length, offset] pair).
_SQLITE_LENGTHS = (
    '(SELECT substr(:digests, key * 32 + 1, 32) AS digest, value AS length, 0 AS "offset" FROM json_each(:sizes))'
)
_SQLITE_PAIRS = (
    '(SELECT substr(:digests, key * 32 + 1, 32) AS digest, value ->> 0 AS length, value ->> 1 AS "offset" '
    "FROM json_each(:sizes))"
)


@dataclass(frozen=True)
class ChunkTable:
    """Rows `(digest, length, offset)` usable as `FROM {table.sql} s`, with the statement parameters
    they need; each digest appears once."""

    sql: str
    params: dict[str, Any]


def dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def chunk_table(
    session: Session,
    digests: Sequence[bytes],
    lengths: Sequence[int] | None = None,
    offsets: Sequence[int] | None = None,
) -> ChunkTable:
    """Chunks given in columns (lengths and offsets 0 when not given) as a table expression; a
    digest given twice keeps its first row."""
    count = len(digests)
    lengths = lengths if lengths is not None else [0] * count
    if len(set(digests)) != count:
        first: dict[bytes, int] = {}
        for i, digest in enumerate(digests):
            first.setdefault(digest, i)
        keep = sorted(first.values())
        digests, lengths = [digests[i] for i in keep], [lengths[i] for i in keep]
        offsets = [offsets[i] for i in keep] if offsets is not None else None
    if dialect(session) == "postgresql":
        _stage(session, digests, lengths, offsets if offsets is not None else [0] * len(digests))
        return ChunkTable(STAGE, {})
    blob = b"".join(digests)
    if offsets is None:
        return ChunkTable(_SQLITE_LENGTHS, {"digests": blob, "sizes": json.dumps(list(lengths))})
    pairs = json.dumps(list(zip(lengths, offsets, strict=True)), separators=(",", ":"))
    return ChunkTable(_SQLITE_PAIRS, {"digests": blob, "sizes": pairs})


def _stage(session: Session, digests: Sequence[bytes], lengths: Sequence[int], offsets: Sequence[int]) -> None:
    """COPY distinct rows into the (connection-local) staging table, replacing what it held."""
    connection = session.connection()
    connection.exec_driver_sql(_CREATE_PG)
    connection.exec_driver_sql(f"DELETE FROM {STAGE}")
    if not digests:
        return
    raw: Any = connection.connection.dbapi_connection
    with raw.cursor() as cursor, cursor.copy(f'COPY {STAGE} (digest, length, "offset") FROM STDIN') as copy:
        for row in zip(digests, lengths, offsets, strict=True):
            copy.write_row(row)


def scalar(session: Session, sql: str, **params: Any) -> Any:
    return session.execute(sa.text(sql), params).scalar()


def rows(session: Session, sql: str, **params: Any) -> Sequence[Any]:
    return session.execute(sa.text(sql), params).all()


def execute(session: Session, sql: str, **params: Any) -> int:
    result = session.execute(sa.text(sql), params)
    return int(result.rowcount)  # type: ignore[attr-defined]


def insert_chunks(
    session: Session, pack: str, digests: Sequence[bytes], offsets: Sequence[int], lengths: Sequence[int], now: float
) -> None:
    """Index the chunks of a pack, keeping existing rows for known digests. Rows go in in digest
    order, so that the index's B-tree pages are each visited once rather than at random."""
    if not digests:
        return
    table = chunk_table(session, digests, lengths, offsets)
    conflict = "ON CONFLICT DO NOTHING" if dialect(session) == "postgresql" else "ON CONFLICT (digest) DO NOTHING"
    execute(
        session,
        f'INSERT INTO data_chunks (digest, pack, "offset", length, touched_at) '
        f'SELECT s.digest, :pack, s."offset", s.length, :now FROM {table.sql} s '
        f"WHERE true ORDER BY s.digest {conflict}",
        pack=pack,
        now=now,
        **table.params,
    )
