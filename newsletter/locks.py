"""Who holds what: the scheduler's database lock, and lease owners that can be told dead.

A lease owner (:func:`new_owner`) names host, pid, the process's start time and a nonce, so a
sender that died is recognised even when its pid is a zombie or now belongs to another process
(PID reuse, or PID 1 again in the next container): :func:`owner_gone`.

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
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
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


# --- lease owners ---------------------------------------------------------------------------

# what a host name may take of the 100 characters a lease owner has in the ledger
_HOST_CHARS = 56


@dataclass(frozen=True)
class Owner:
    """A lease owner id taken apart: ``host:pid:start:nonce`` (``host:pid:nonce`` before)."""

    host: str
    pid: int
    # the process's start time ("ticks.bootid"), "" in ids written before it was recorded
    start: str
    nonce: str

    @classmethod
    def parse(cls, owner: str) -> Owner | None:
        parts = owner.rsplit(":", 3)
        if len(parts) == 4 and parts[1].isdigit() and _is_start(parts[2]):
            return cls(parts[0], int(parts[1]), parts[2], parts[3])
        legacy = owner.rsplit(":", 2)
        if len(legacy) == 3 and legacy[1].isdigit():
            return cls(legacy[0], int(legacy[1]), "", legacy[2])
        return None


def _is_start(value: str) -> bool:
    ticks, dot, _boot = value.partition(".")
    return value == "-" or (ticks.isdigit() and dot == ".")


def _hostname() -> str:
    return socket.gethostname()[:_HOST_CHARS]


def _boot_id() -> str:
    # a start time counts from boot: after a reboot the same pid may start at the same tick
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:8]
    except OSError:
        return ""


def process_start(pid: int) -> tuple[str, str] | None:
    """``(state, start)`` of process ``pid`` from /proc; None if there is no such process.

    ``start`` is the start time in clock ticks since boot (field 22 of /proc/<pid>/stat) with
    the boot id, which together with the pid name one process for the machine's uptime. On a
    system without /proc the state is "?" and the start "-".
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "?", "-"
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces or parentheses itself
    fields = stat.rpartition(")")[2].split()
    if len(fields) < 20:
        return None
    return fields[0], f"{fields[19]}.{_boot_id()}"


def new_owner() -> str:
    """A lease owner id for this process: host, pid, start time and a nonce."""
    pid = os.getpid()
    found = process_start(pid)
    start = found[1] if found is not None else "-"
    return f"{_hostname()}:{pid}:{start}:{secrets.token_hex(4)}"


def owner_gone(owner: str) -> bool:
    """True when ``owner`` names a process on this host that has stopped (or never existed).

    A zombie (state Z, killed but not yet reaped) or dead (X) process is gone; so is one whose
    pid now belongs to a process that started at another time. An owner on another host, or
    one this cannot read, is not gone: its lease runs out instead.
    """
    parsed = Owner.parse(owner)
    if parsed is None or parsed.host != _hostname():
        return False
    if parsed.pid == os.getpid():
        # the same pid as this process: another engine in it is alive; an owner from a process
        # that had this pid before (PID 1 of the last container) is not
        if not parsed.start:
            return False
        found = process_start(parsed.pid)
        return found is not None and found[1] != parsed.start
    found = process_start(parsed.pid)
    if found is None:
        return True
    state, start = found
    if state in ("Z", "X"):
        return True
    if parsed.start and parsed.start != "-" and start != "-":
        return start != parsed.start
    return False
