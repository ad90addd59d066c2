"""Engines and schema migrations: one place that knows SQLite from PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect, make_url
from sqlalchemy.exc import SQLAlchemyError

from newsletter.errors import StoreError

if TYPE_CHECKING:
    from newsletter.config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout.

    Delivery workers and the web app write to the same SQLite file at once, so readers must
    not block the writer (WAL) and a writer waits for the lock instead of failing at once.
    """
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # take transaction control from the stdlib driver so every transaction starts with
            # BEGIN IMMEDIATE: a deferred one that later writes fails at once with "database is
            # locked" instead of waiting, which breaks concurrent workers on the embedded default
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def alembic_config() -> Config:
    cfg = Config(str(MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("version_locations", str(MIGRATIONS / "versions"))
    return cfg


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the newest revision; running it again changes nothing."""
    cfg = alembic_config()
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot migrate the database: {exc}") from exc


def schema_is_current(engine: Engine) -> bool:
    """True when the ``alembic_version`` table names the newest revision."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return False
        return MigrationContext.configure(conn).get_current_revision() == head


def display_url(url: str) -> str:
    """``url`` fit for output: any password replaced by ``***``."""
    return make_url(url).render_as_string(hide_password=True)


def open_current(url: str) -> Engine:
    """An engine on a database whose schema is current; otherwise a StoreError saying what to do."""
    engine = make_engine(url)
    try:
        current = schema_is_current(engine)
    except Exception as exc:  # the driver's own errors: unreachable server, bad URL
        engine.dispose()
        raise StoreError(f"cannot open the database at {display_url(url)}: {exc}") from None
    if not current:
        engine.dispose()
        raise StoreError(
            f"the database at {display_url(url)} is not set up or is out of date; "
            "run `newsletter init`"
        )
    return engine


def initialise(engine: Engine, settings: Settings) -> dict[str, int]:
    """What ``newsletter init`` does: migrate, then create the configured lists (idempotent)."""
    from newsletter.store.subscribers import ensure_lists

    migrate(engine)
    with engine.begin() as conn:
        return ensure_lists(conn, settings)
