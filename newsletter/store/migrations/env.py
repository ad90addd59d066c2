"""Alembic environment: runs on the connection handed in by ``newsletter.store.migrate``."""

from __future__ import annotations

from alembic import context

from newsletter.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only from the alembic CLI
    raise RuntimeError("run migrations through `newsletter init`")
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
