"""The delivery ledger: one row per (issue, subscriber), claimed in leased batches.

States: pending -> sending (claimed under a lease) -> sent / failed / bounced, or back to
pending with a ``next_attempt_at`` after a temporary failure. The ledger, not memory, says who
still needs an issue: a crashed sender's rows are reclaimed when its lease expires (at once
when the owner was a process on this host that is gone). PostgreSQL claims with
``FOR UPDATE SKIP LOCKED`` so workers on many machines share a send; SQLite claims with one
``UPDATE ... RETURNING`` inside the engine's ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
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


def new_owner() -> str:
    """A lease owner id: host and pid (so a dead local owner is noticed at once) plus a nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class SqlLedger:
    """The ledger on SQLite or PostgreSQL; implements the delivery engine's ``LedgerStore``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"

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
                for due in (
                    # leases of senders that died, then rows whose (next) attempt is due
                    and_(d.status == DeliveryStatus.SENDING.value, d.lease_expires_at < now),
                    and_(d.status == DeliveryStatus.PENDING.value, d.next_attempt_at <= now),
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
        """Expire at once the leases of owners on this host whose process is gone."""
        here = socket.gethostname()
        d = deliveries.c
        with self.engine.begin() as conn:
            owners = conn.execute(
                select(d.lease_owner)
                .where(d.issue_id == issue.id, d.status == DeliveryStatus.SENDING.value)
                .distinct()
            ).scalars()
            dead = [o for o in owners if o and _dead_local_owner(o, here)]
            if not dead:
                return 0
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
                            d.status != DeliveryStatus.SENT.value,
                            d.status != DeliveryStatus.BOUNCED.value,
                            # a late soft failure (it set sent_at) outlives this write too
                            or_(d.status != DeliveryStatus.FAILED.value, d.sent_at.is_(None)),
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


def _dead_local_owner(owner: str, here: str) -> bool:
    """True when ``owner`` names a process on this host that no longer exists."""
    parts = owner.split(":")
    if len(parts) < 3 or ":".join(parts[:-2]) != here:
        return False
    try:
        pid = int(parts[-2])
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
