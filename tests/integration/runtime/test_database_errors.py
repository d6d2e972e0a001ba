"""Driver errors reach callers as Atelier errors (what a service answers), never as SQLAlchemy's."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from atelier.errors import InvalidArgument
from atelier.runtime.database import create_engine, transaction
from tests.conftest import PG_ADMIN


def _store(engine: sa.Engine, body: str) -> None:
    with transaction(engine) as session:
        session.execute(sa.text("CREATE TEMP TABLE notes (body text)"))
        session.execute(sa.text("INSERT INTO notes VALUES (:body)"), {"body": body})


@pytest.mark.usefixtures("postgres_available")
def test_a_value_postgresql_cannot_store_is_invalid_argument() -> None:
    engine = create_engine(PG_ADMIN)
    try:
        with pytest.raises(InvalidArgument, match="a value the database cannot store: .*NUL"):
            _store(engine, "a\x00b")
    finally:
        engine.dispose()
