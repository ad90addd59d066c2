"""The delivery ledger: one row per (issue, subscriber), claimed in leased batches.

States: pending -> sending (claimed under a lease) -> sent / failed / bounced, or back to
pending with a ``next_attempt_at`` after a temporary failure. The ledger, not memory, says who
still needs an issue: a crashed sender's rows are reclaimed when its lease expires (at once
when the owner was a process on this host that is gone, see :func:`newsletter.locks.owner_gone`).
Between group commits each accepted message is noted in the sender's :class:`Journal`, which
whoever reclaims its rows replays first, so a crash repeats only the messages that were in DATA
at that moment. Due retries are claimed before fresh rows. PostgreSQL claims with
``FOR UPDATE SKIP LOCKED`` so workers on many machines share a send; SQLite claims with one
``UPDATE ... RETURNING`` inside the engine's ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from newsletter.errors import StoreError
from newsletter.locks import new_owner, owner_gone
from newsletter.states import DeliveryStatus, SendStatus, SubscriptionStatus, SuppressionReason
from newsletter.store.issues import IssueRef
from newsletter.store.schema import (
    deliveries,
    issues,
    subscribers,
    subscriptions,
)
from newsletter.store.subscribers import suppress, suppressed_clause


@dataclass(frozen=True)
class Claimed:
    """A delivery claimed for sending, with what the message needs about the subscriber."""

    subscriber_id: int
    uid: str
    email: str
    name: str | None
    attempts: int
    created_at: datetime
    # still confirmed on the list and not suppressed (they may have left since the send began)
    active: bool


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed delivery."""

    subscriber_id: int
    status: DeliveryStatus
    code: int | None = None
    reply: str | None = None
    next_attempt_at: datetime | None = None
    # the address, for the suppression list when ``status`` is BOUNCED
    email: str | None = None


@dataclass(frozen=True)
class Failure:
    email: str
    status: DeliveryStatus
    code: int | None
    reply: str | None
    attempts: int


__all__ = ["Claimed", "Failure", "Holder", "Journal", "Outcome", "SqlLedger", "new_owner"]


@dataclass(frozen=True)
class Holder:
    """Rows of a send held under one lease owner's lease right now."""

    owner: str
    rows: int
    # when the owner last renewed its lease (its heartbeat), and when the lease runs out
    renewed_at: datetime
    expires_at: datetime


class Journal:
    """Append-only files, one per lease owner: each message the relay accepted, at once.

    A line is ``issue_id subscriber_id unix_time``, written with one unbuffered ``write`` the
    moment the relay accepted the message and before that connection starts its next one; it
    is in the kernel's page cache then, so it outlives a ``kill -9`` of the sender (not a power
    cut, when the lease decides). The group commits make it redundant: it is emptied once
    every noted message is recorded, and removed when a run ends. Whoever reclaims a dead
    sender's rows on this host replays its journal first (:meth:`SqlLedger.reap`).
    """

    # empty the file once it is this big and everything in it is recorded
    TRUNCATE_AT = 64 * 1024

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._files: dict[str, tuple[int, int]] = {}

    def path(self, owner: str) -> Path:
        return self.directory / (re.sub(r"[^A-Za-z0-9._-]", "_", owner) + ".journal")

    def note(self, owner: str, issue_id: int, subscriber_id: int, when: datetime) -> None:
        fd, size = self._files.get(owner) or self._open(owner)
        line = f"{issue_id} {subscriber_id} {when.timestamp():.3f}\n".encode()
        os.write(fd, line)
        self._files[owner] = (fd, size + len(line))

    def _open(self, owner: str) -> tuple[int, int]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path(owner), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
        header = f"# {owner}\n".encode()
        os.write(fd, header)
        self._files[owner] = (fd, len(header))
        return self._files[owner]

    def recorded(self, owner: str) -> None:
        """Everything noted for ``owner`` is in the ledger now: empty a big file."""
        found = self._files.get(owner)
        if found is None or found[1] < self.TRUNCATE_AT:
            return
        fd = found[0]
        os.ftruncate(fd, 0)
        header = f"# {owner}\n".encode()
        os.write(fd, header)
        self._files[owner] = (fd, len(header))

    def close(self, owner: str) -> None:
        """The run is over and recorded: the file goes."""
        found = self._files.pop(owner, None)
        if found is None:
            return
        os.close(found[0])
        self.path(owner).unlink(missing_ok=True)

    def orphans(self) -> list[tuple[str, Path]]:
        """Journals of owners that are gone: ``(owner, path)``."""
        try:
            paths = sorted(self.directory.glob("*.journal"))
        except OSError:
            return []
        found = []
        for path in paths:
            try:
                with path.open("rb") as f:
                    header = f.readline().decode("utf-8", "replace")
            except OSError:
                continue
            owner = header[2:].strip() if header.startswith("# ") else ""
            if owner and owner not in self._files and owner_gone(owner):
                found.append((owner, path))
        return found

    @staticmethod
    def entries(path: Path) -> list[tuple[int, int, datetime]]:
        found = []
        for line in path.read_bytes().splitlines()[1:]:
            parts = line.split()
            # a line cut short by the crash is not an acceptance
            if len(parts) != 3:
                continue
            try:
                found.append(
                    (int(parts[0]), int(parts[1]), datetime.fromtimestamp(float(parts[2]), UTC))
                )
            except ValueError:
                continue
        return found


def journal_directory(engine: Engine) -> Path:
    """Where journals live: beside a SQLite database file, else in the temporary directory.

    Keyed by the database, so journals of two databases on one host never mix.
    """
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        database = Path(url.database)
        return database.with_name(database.name + ".delivery-journal")
    key = hashlib.sha256(url.render_as_string(hide_password=True).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"newsletter-journal-{key}"


class SqlLedger:
    """The ledger on SQLite or PostgreSQL; implements the delivery engine's ``LedgerStore``."""

    def __init__(self, engine: Engine, *, journal_dir: Path | None = None) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self.journal = Journal(journal_dir or journal_directory(engine))

    # --- claiming ---------------------------------------------------------------------------

    def claim(
        self, issue: IssueRef, *, owner: str, now: datetime, lease_seconds: float, limit: int
    ) -> list[Claimed]:
        """Lease up to ``limit`` due deliveries to ``owner``; each claim counts as an attempt."""
        expires = now + timedelta(seconds=lease_seconds)
        d = deliveries.c
        try:
            with self.engine.begin() as conn:
                ids: list[int] = []
                pending_due = and_(
                    d.status == DeliveryStatus.PENDING.value, d.next_attempt_at <= now
                )
                for due in (
                    # leases of senders that died, then retries that are due, then fresh rows:
                    # by next_attempt_at alone a retry would wait behind every fresh row
                    and_(d.status == DeliveryStatus.SENDING.value, d.lease_expires_at < now),
                    and_(pending_due, d.attempts > 0),
                    and_(pending_due, d.attempts == 0),
                ):
                    if len(ids) >= limit:
                        break
                    pick = select(d.subscriber_id).where(d.issue_id == issue.id, due)
                    pick = pick.limit(limit - len(ids))
                    claim = update(deliveries).values(
                        status=DeliveryStatus.SENDING.value,
                        lease_owner=owner,
                        lease_expires_at=expires,
                        attempts=d.attempts + 1,
                        updated_at=now,
                    )
                    if self.postgres:
                        # a CTE runs once; as an IN (subquery) PostgreSQL may rescan it per row
                        # and, skipping rows it just updated, claim far more than the limit
                        picked = pick.with_for_update(skip_locked=True).cte("picked")
                        claim = claim.where(
                            d.issue_id == issue.id, d.subscriber_id == picked.c.subscriber_id
                        )
                    else:
                        claim = claim.where(
                            d.issue_id == issue.id, d.subscriber_id.in_(pick.scalar_subquery())
                        )
                    stmt = claim.returning(d.subscriber_id)
                    ids.extend(conn.execute(stmt).scalars())
                if not ids:
                    return []
                return self._load_claimed(conn, issue, ids)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot claim deliveries: {exc}") from exc

    def _load_claimed(self, conn: Connection, issue: IssueRef, ids: Sequence[int]) -> list[Claimed]:
        s = subscribers.c
        active = and_(
            subscriptions.c.status == SubscriptionStatus.CONFIRMED.value, ~suppressed_clause(conn)
        )
        rows = conn.execute(
            select(
                deliveries.c.subscriber_id,
                deliveries.c.attempts,
                deliveries.c.created_at,
                s.uid,
                s.email,
                s.name,
                active.label("active"),
            )
            .select_from(
                deliveries.join(subscribers, s.id == deliveries.c.subscriber_id).outerjoin(
                    subscriptions,
                    and_(
                        subscriptions.c.subscriber_id == s.id,
                        subscriptions.c.list_id == issue.list_id,
                    ),
                )
            )
            .where(deliveries.c.issue_id == issue.id, deliveries.c.subscriber_id.in_(ids))
        )
        return [
            Claimed(
                subscriber_id=r.subscriber_id,
                uid=r.uid,
                email=r.email,
                name=r.name,
                attempts=r.attempts,
                created_at=r.created_at,
                active=bool(r.active),
            )
            for r in rows
        ]

    def release(self, issue: IssueRef, *, owner: str, subscriber_ids: Iterable[int]) -> None:
        """Give unsent claimed rows back (the relay went away): not an attempt, due at once."""
        params = [{"sid": sid} for sid in subscriber_ids]
        if not params:
            return
        d = deliveries.c
        stmt = (
            update(deliveries)
            .where(
                d.issue_id == issue.id,
                d.subscriber_id == bindparam("sid"),
                d.status == DeliveryStatus.SENDING.value,
                d.lease_owner == owner,
            )
            .values(
                status=DeliveryStatus.PENDING.value,
                attempts=d.attempts - 1,
                lease_owner=None,
                lease_expires_at=None,
            )
        )
        try:
            with self.engine.begin() as conn:
                conn.execute(stmt, params)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot give claimed deliveries back: {exc}") from exc

    def renew(self, issue: IssueRef, *, owner: str, now: datetime, lease_seconds: float) -> None:
        """Extend the lease of every row ``owner`` holds for the issue (the heartbeat)."""
        d = deliveries.c
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    update(deliveries)
                    .where(
                        d.issue_id == issue.id,
                        d.status == DeliveryStatus.SENDING.value,
                        d.lease_owner == owner,
                    )
                    .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
                )
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot renew delivery leases: {exc}") from exc

    def reap(self, issue: IssueRef, *, now: datetime) -> int:
        """Expire at once the leases of owners on this host whose process is gone.

        The journals of gone owners are replayed first: what they noted as accepted is sent.
        Returns how many rows came back to be claimed.
        """
        d = deliveries.c
        try:
            with self.engine.begin() as conn:
                for owner, path in self.journal.orphans():
                    self._replay(conn, owner, path)
                owners = conn.execute(
                    select(d.lease_owner)
                    .where(d.issue_id == issue.id, d.status == DeliveryStatus.SENDING.value)
                    .distinct()
                ).scalars()
                dead = [o for o in owners if o and owner_gone(o)]
                if not dead:
                    return 0
                return self._expire(conn, issue, dead, now)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot reclaim the deliveries of stopped senders: {exc}") from exc

    def _replay(self, conn: Connection, owner: str, path: Path) -> None:
        entries = Journal.entries(path)
        by_time: dict[datetime, list[dict[str, object]]] = {}
        for issue_id, sid, when in entries:
            by_time.setdefault(when, []).append({"iid": issue_id, "sid": sid})
        d = deliveries.c
        for when, params in by_time.items():
            conn.execute(
                update(deliveries)
                .where(
                    d.issue_id == bindparam("iid"),
                    d.subscriber_id == bindparam("sid"),
                    _may_become_sent(),
                )
                .values(
                    status=DeliveryStatus.SENT.value,
                    last_code=250,
                    last_reply=_clip(f"accepted (from the journal of {owner})"),
                    sent_at=when,
                    updated_at=when,
                    lease_owner=None,
                    lease_expires_at=None,
                ),
                params,
            )
        path.unlink(missing_ok=True)

    def _expire(self, conn: Connection, issue: IssueRef, dead: list[str], now: datetime) -> int:
        d = deliveries.c
        result = conn.execute(
            update(deliveries)
            .where(
                d.issue_id == issue.id,
                d.status == DeliveryStatus.SENDING.value,
                d.lease_owner.in_(dead),
            )
            .values(lease_expires_at=now - timedelta(seconds=1))
        )
        return int(result.rowcount or 0)

    def holders(self, issue: IssueRef, *, lease_seconds: float) -> list[Holder]:
        """Who holds the send's rows in ``sending`` right now, by owner."""
        d = deliveries.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(d.lease_owner, func.count(), func.max(d.lease_expires_at))
                .where(d.issue_id == issue.id, d.status == DeliveryStatus.SENDING.value)
                .group_by(d.lease_owner)
            ).all()
        lease = timedelta(seconds=lease_seconds)
        return [
            Holder(owner or "", int(n), expires - lease, expires)
            for owner, n, expires in rows
            if expires is not None
        ]

    # --- the journal ------------------------------------------------------------------------

    def note_sent(self, issue: IssueRef, subscriber_id: int, *, owner: str, now: datetime) -> None:
        """Note an acceptance at once, before the connection's next message (the journal)."""
        try:
            self.journal.note(owner, issue.id, subscriber_id, now)
        except OSError as exc:
            raise StoreError(f"cannot write the delivery journal: {exc}") from exc

    def notes_recorded(self, owner: str, *, done: bool = False) -> None:
        """Everything noted for ``owner`` is recorded; ``done``: its run is over."""
        try:
            if done:
                self.journal.close(owner)
            else:
                self.journal.recorded(owner)
        except OSError as exc:
            raise StoreError(f"cannot write the delivery journal: {exc}") from exc

    # --- outcomes ---------------------------------------------------------------------------

    def record(
        self, issue: IssueRef, outcomes: Sequence[Outcome], *, owner: str, now: datetime
    ) -> None:
        """Write outcomes in one transaction; bounces also go on the suppression list."""
        if not outcomes:
            return
        d = deliveries.c
        sent = [
            {"sid": o.subscriber_id, "code": o.code, "reply": _clip(o.reply)}
            for o in outcomes
            if o.status is DeliveryStatus.SENT
        ]
        other = [
            {
                "sid": o.subscriber_id,
                "st": o.status.value,
                "code": o.code,
                "reply": _clip(o.reply),
                "next": o.next_attempt_at,
            }
            for o in outcomes
            if o.status is not DeliveryStatus.SENT
        ]
        try:
            with self.engine.begin() as conn:
                if sent:
                    # accepted is accepted, even when our lease ran out meanwhile; a report
                    # that came back before this write (a fast relay's DSN) keeps its outcome
                    conn.execute(
                        update(deliveries)
                        .where(
                            d.issue_id == issue.id,
                            d.subscriber_id == bindparam("sid"),
                            _may_become_sent(),
                        )
                        .values(
                            status=DeliveryStatus.SENT.value,
                            last_code=bindparam("code"),
                            last_reply=bindparam("reply"),
                            sent_at=now,
                            updated_at=now,
                            lease_owner=None,
                            lease_expires_at=None,
                        ),
                        sent,
                    )
                if other:
                    # only while we still hold the lease: another worker may have sent it since
                    conn.execute(
                        update(deliveries)
                        .where(
                            d.issue_id == issue.id,
                            d.subscriber_id == bindparam("sid"),
                            d.status == DeliveryStatus.SENDING.value,
                            d.lease_owner == owner,
                        )
                        .values(
                            status=bindparam("st"),
                            last_code=bindparam("code"),
                            last_reply=bindparam("reply"),
                            next_attempt_at=bindparam("next", type_=d.next_attempt_at.type),
                            updated_at=now,
                            lease_owner=None,
                            lease_expires_at=None,
                        ),
                        other,
                    )
                for o in outcomes:
                    if o.status is DeliveryStatus.BOUNCED and o.email:
                        detail = f"{o.code} {o.reply}" if o.code else o.reply
                        suppress(conn, o.email, SuppressionReason.BOUNCED, _clip(detail), now=now)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot record delivery outcomes: {exc}") from exc

    # --- reading ----------------------------------------------------------------------------

    def counts(self, issue: IssueRef) -> dict[DeliveryStatus, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(deliveries.c.status, func.count())
                .where(deliveries.c.issue_id == issue.id)
                .group_by(deliveries.c.status)
            )
            found = {DeliveryStatus(status): int(n) for status, n in rows}
        return {status: found.get(status, 0) for status in DeliveryStatus}

    def next_attempt_at(self, issue: IssueRef) -> datetime | None:
        """When the earliest deferred delivery (or expiring lease) becomes due; None if none."""
        d = deliveries.c
        with self.engine.connect() as conn:
            pending = conn.execute(
                select(func.min(d.next_attempt_at)).where(
                    d.issue_id == issue.id, d.status == DeliveryStatus.PENDING.value
                )
            ).scalar()
            leased = conn.execute(
                select(func.min(d.lease_expires_at)).where(
                    d.issue_id == issue.id, d.status == DeliveryStatus.SENDING.value
                )
            ).scalar()
        times = [t for t in (pending, leased) if t is not None]
        return min(times) if times else None

    def failures(self, issue: IssueRef, *, limit: int = 20) -> list[Failure]:
        """The last replies of deliveries that did not (yet) go through, newest first."""
        d = deliveries.c
        rows = []
        with self.engine.connect() as conn:
            rows = list(
                conn.execute(
                    select(subscribers.c.email, d.status, d.last_code, d.last_reply, d.attempts)
                    .join(subscribers, subscribers.c.id == d.subscriber_id)
                    .where(d.issue_id == issue.id, d.last_reply.is_not(None))
                    .where(d.status != DeliveryStatus.SENT.value)
                    .order_by(d.updated_at.desc())
                    .limit(limit)
                )
            )
        return [
            Failure(r.email, DeliveryStatus(r.status), r.last_code, r.last_reply, r.attempts)
            for r in rows
        ]

    def finish_if_done(self, issue: IssueRef, *, now: datetime) -> bool:
        """Mark the issue finished when no delivery is pending or in flight; True if finished."""
        d = deliveries.c
        open_states = (DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value)
        with self.engine.begin() as conn:
            still_open = conn.execute(
                select(d.subscriber_id)
                .where(d.issue_id == issue.id, d.status.in_(open_states))
                .limit(1)
            ).first()
            status = SendStatus.SENDING if still_open else SendStatus.FINISHED
            conn.execute(
                update(issues)
                .where(issues.c.id == issue.id, issues.c.status != status.value)
                .values(status=status.value, finished_at=None if still_open else now)
            )
        return still_open is None

    def sent_since(self, since: datetime) -> list[datetime]:
        """When each message of the last while was accepted (seeds the hourly cap)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(deliveries.c.sent_at).where(deliveries.c.sent_at >= since)
            ).scalars()
            return list(rows)


def _may_become_sent() -> ColumnElement[bool]:
    """Rows an acceptance may still mark sent: a report that came back first (a late bounce, or
    a late soft failure, which set sent_at) keeps its outcome, whoever writes the acceptance."""
    d = deliveries.c
    return and_(
        d.status != DeliveryStatus.SENT.value,
        d.status != DeliveryStatus.BOUNCED.value,
        or_(d.status != DeliveryStatus.FAILED.value, d.sent_at.is_(None)),
    )


def _clip(value: str | None, limit: int = 1000) -> str | None:
    """A reply as stored: bounded, and with control characters escaped.

    The text comes from whichever server the recipient's domain points at; it is printed by
    ``newsletter status`` and mailed in reports, where an escape sequence would drive the
    reader's terminal.
    """
    if value is None:
        return None
    if not value.isprintable():
        value = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in value)
    return value if len(value) <= limit else value[:limit] + "..."
