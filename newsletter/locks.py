"""A lock on the database, so two scheduler processes on one database never both send.

PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) held on a dedicated
connection; it dies with the connection, so a crashed holder cannot wedge the lock. SQLite: an
exclusive ``flock`` on a lock file beside the database file; the kernel drops it when the holder
exits, however it exits. Both are non-blocking: a run that finds the lock taken skips, because
the holder is already doing the same work.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Connection, Engine, text

from newsletter.errors import SchedulerError

# Advisory locks are per database; the first key namespaces ours, the second is the schema,
# so test schemas (or two publications in one database) do not block each other.
_PG_CLASS_ID = int.from_bytes(hashlib.sha256(b"newsletter.scheduler").digest()[:4], "big") >> 1


def lock_file_path(engine: Engine, name: str = "scheduler") -> Path:
    """Where the SQLite lock file lives: ``<database>.<name>.lock`` beside the database."""
    database = engine.url.database
    if not database or database == ":memory:":
        raise SchedulerError(
            "the scheduler needs a database file (or PostgreSQL), not an in-memory SQLite database"
        )
    return Path(database).with_name(Path(database).name + f".{name}.lock")


@contextlib.contextmanager
def try_lock(engine: Engine, name: str = "scheduler") -> Iterator[bool]:
    """Hold the database lock for the ``with`` block; yields False (and holds nothing) if taken.

    Two ``try_lock`` calls contend even inside one process (separate file descriptions,
    separate PostgreSQL sessions), so threads are covered as well as processes.
    """
    if engine.dialect.name == "postgresql":
        with _pg_lock(engine, name) as acquired:
            yield acquired
    elif engine.dialect.name == "sqlite":
        with _file_lock(lock_file_path(engine, name)) as acquired:
            yield acquired
    else:  # pragma: no cover - make_engine only builds these two
        raise SchedulerError(f"no scheduler lock for {engine.dialect.name} databases")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[bool]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            # the holder's pid, for an operator wondering who holds it (not used for locking)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _pg_lock(engine: Engine, name: str) -> Iterator[bool]:
    with engine.connect() as conn:
        key = _pg_key(conn, name)
        acquired = bool(
            conn.execute(
                text("SELECT pg_try_advisory_lock(:cls, :key)"), {"cls": _PG_CLASS_ID, "key": key}
            ).scalar()
        )
        conn.commit()
        if not acquired:
            yield False
            return
        try:
            yield True
        finally:
            conn.execute(
                text("SELECT pg_advisory_unlock(:cls, :key)"), {"cls": _PG_CLASS_ID, "key": key}
            )
            conn.commit()


def _pg_key(conn: Connection, name: str) -> int:
    schema = conn.execute(text("SELECT current_schema()")).scalar() or "public"
    digest = hashlib.sha256(f"{schema}:{name}".encode()).digest()
    # a signed 32-bit int, the type of pg_try_advisory_lock(int, int)
    return int.from_bytes(digest[:4], "big", signed=True)
