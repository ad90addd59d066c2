"""The Alembic migrations create exactly the tables in ``store/schema.py``, idempotently."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from newsletter.store.database import migrate, schema_is_current
from newsletter.store.schema import metadata


def test_migrations_match_the_schema(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_migrate_is_idempotent(engine: Engine) -> None:
    migrate(engine)
    migrate(engine)
    assert schema_is_current(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"subscribers", "lists", "subscriptions", "suppressions", "deliveries"} <= tables
