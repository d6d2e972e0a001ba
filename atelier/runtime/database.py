"""Database engines and migrations for every service.

SQLite under `$ATELIER_HOME` by default, PostgreSQL (or any SQLAlchemy URL) by configuration. Each
service owns its tables and its alembic history (its own version table), so several services may
share one PostgreSQL database. Migrations run at start-up.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.sql import Select
from sqlmodel import Session

from atelier.errors import AlreadyExists, InvalidArgument, Unavailable


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


def _sqlite_pragmas(synchronous: str) -> Any:
    def apply(dbapi_connection: Any, _record: Any) -> None:
        _set_pragmas(dbapi_connection, synchronous)

    return apply


def _set_pragmas(dbapi_connection: Any, synchronous: str) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer. With synchronous=NORMAL a commit is in the WAL file
    # before it returns, so a crashed or killed process loses nothing committed; only a power cut
    # can lose the last commits. FULL also survives that, at one fsync per commit.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Chunk indexes take random keys: a larger page cache keeps their B-trees in memory.
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


_URL_FORMS = "use sqlite:///PATH or postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"


def check_url(url: str) -> None:
    """INVALID_ARGUMENT unless `url` is a database URL whose driver is installed (a password in it is
    not repeated in the error)."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise InvalidArgument(
            f"the database URL cannot be parsed; {_URL_FORMS}", metadata={"field": "database_url"}
        ) from None
    try:
        parsed.get_dialect().import_dbapi()
    except (sa.exc.NoSuchModuleError, ImportError) as error:
        raise InvalidArgument(
            f"database URL {parsed.render_as_string(hide_password=True)} cannot be used ({error}); {_URL_FORMS}",
            metadata={"field": "database_url"},
        ) from None


def create_engine(url: str, sqlite_synchronous: str = "NORMAL") -> Engine:
    """An engine for `url` with the settings Atelier relies on (SQLite pragmas, pool pre-ping)."""
    url = normalise_url(url)
    check_url(url)
    if url.startswith("sqlite"):
        if sqlite_synchronous not in ("NORMAL", "FULL"):
            raise InvalidArgument(f"sqlite_synchronous is {sqlite_synchronous!r}; use NORMAL or FULL")
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas(sqlite_synchronous))
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def migrate(engine: Engine, script_location: Path, version_table: str) -> None:
    """Bring the schema to the newest revision of the service's alembic history."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    with _translated(), engine.begin() as connection:
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


_SQLITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _serialised(engine: Engine) -> AbstractContextManager[Any]:
    """SQLite lets one writer in at a time and makes the others sleep and retry; taking turns on a
    lock in the process instead keeps concurrent calls from stalling each other."""
    if engine.dialect.name != "sqlite":
        return nullcontext()
    with _LOCKS_GUARD:
        lock = _SQLITE_LOCKS.setdefault(engine, threading.RLock())
    return lock


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session in one transaction: committed when the block ends, rolled back on error. Driver
    errors become Atelier errors here, so no SQLAlchemy exception reaches a client."""
    with _translated(), _serialised(engine), Session(engine, expire_on_commit=False) as session, session.begin():
        yield session


@contextmanager
def core_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in one transaction, as `transaction` but without an ORM session: for writers
    that only run Core statements on a hot path (a session costs about 0.08 ms to open and close)."""
    with _translated(), _serialised(engine), engine.begin() as connection:
        yield connection


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """A connection for reads on a hot path: no ORM session and no turn on SQLite's in-process writer
    lock (WAL readers run beside the writer; PostgreSQL's readers never wait). Its statements see one
    snapshot until the block ends, when the transaction is rolled back."""
    with _translated(), engine.connect() as connection:
        yield connection


class DriverRead:
    """One SELECT compiled once for an engine's dialect and run on the driver's own cursor, for a hot read
    (the data service's `Get*`). The same SQL, parameters and column types as SQLAlchemy's
    `connection.execute(...).first()` (each column's result processor, so SQLite's text timestamps come back
    as aware datetimes), without the execution context and result machinery around each statement (about
    20 us of CPU a read against 100 us on SQLite)."""

    def __init__(self, engine: Engine, statement: Select[Any]) -> None:
        dialect = engine.dialect
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.positions: tuple[str, ...] | None = tuple(compiled.positiontup or ()) if compiled.positional else None
        self.processors: list[Callable[[Any], Any] | None] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in statement.selected_columns
        ]

    def first(self, connection: Any, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row (each value as its column type reads it), or None."""
        cursor = connection.cursor()
        try:
            cursor.execute(self.sql, params if self.positions is None else tuple(params[k] for k in self.positions))
            row = cursor.fetchone()
        finally:
            cursor.close()
        if row is None:
            return None
        pairs = zip(self.processors, row, strict=True)
        return tuple(value if process is None else process(value) for process, value in pairs)


@contextmanager
def driver_connection(engine: Engine) -> Iterator[Any]:
    """A pooled connection of the driver itself (pre-pinged as the engine's are; rolled back when it
    goes back to the pool, so its reads see one snapshot as `read_connection`'s do); the driver's errors
    of an unreachable or locked database become `Unavailable`, as SQLAlchemy's do elsewhere."""
    dbapi = engine.dialect.loaded_dbapi
    try:
        connection = engine.raw_connection()
        try:
            yield connection
        finally:
            connection.close()
    except (OperationalError, dbapi.OperationalError) as error:
        raise Unavailable(f"database unavailable: {getattr(error, 'orig', None) or error}") from error


@contextmanager
def _translated() -> Iterator[None]:
    """Driver errors as Atelier errors."""
    try:
        yield
    except IntegrityError as error:
        raise AlreadyExists(f"conflicting write: {error.orig}") from error
    except DataError as error:  # PostgreSQL refusing a value, e.g. a NUL character in text
        raise InvalidArgument(f"a value the database cannot store: {error.orig}") from error
    except OperationalError as error:
        raise Unavailable(f"database unavailable: {error.orig}") from error
