"""Database engines and migrations for every service.

SQLite under `$ATELIER_HOME` by default, PostgreSQL (or any SQLAlchemy URL) by configuration. Each
service owns its tables and its alembic history (its own version table), so several services may
share one PostgreSQL database. Migrations run at start-up.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session

from atelier.errors import AlreadyExists, Unavailable


def default_url(home: Path, service: str) -> str:
    """The embedded default: one SQLite file per service under the stack's home."""
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / (service + '.db')}"


def normalise_url(url: str) -> str:
    """Use the psycopg 3 driver for plain `postgresql://` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; FULL sync keeps committed versions through a crash.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Chunk indexes take random keys: a larger page cache keeps their B-trees in memory.
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


def create_engine(url: str) -> Engine:
    """An engine for `url` with the settings Atelier relies on (SQLite pragmas, pool pre-ping)."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def migrate(engine: Engine, script_location: Path, version_table: str) -> None:
    """Bring the schema to the newest revision of the service's alembic history."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Two replicas starting together must not both run the same migration.
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:t))"), {"t": version_table})
        config.attributes["connection"] = connection
        config.attributes["version_table"] = version_table
        command.upgrade(config, "head")


def run_migrations(context: Any, target_metadata: sa.MetaData, table_prefix: str) -> None:
    """Body of a service's alembic `env.py`: run on the connection `migrate()` passed in.

    Services share SQLModel's metadata (and maybe a database), so autogeneration only looks at the
    tables named with the service's prefix.
    """
    connection = context.config.attributes["connection"]

    def own(obj: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
        return kind != "table" or bool(name and name.startswith(table_prefix))

    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=own,
        version_table=context.config.attributes["version_table"],
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session in one transaction: committed when the block ends, rolled back on error. Driver
    errors become Atelier errors here, so no SQLAlchemy exception reaches a client."""
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session
    except IntegrityError as error:
        raise AlreadyExists(f"conflicting write: {error.orig}") from error
    except OperationalError as error:
        raise Unavailable(f"database unavailable: {error.orig}") from error
