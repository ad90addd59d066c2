"""Subscribers, lists, subscriptions and the suppression list (SQLAlchemy Core).

Every function takes a :class:`~sqlalchemy.Connection` whose transaction the caller owns, so a
web request or a CLI command commits or rolls back as one unit. The suppression list is keyed
by a hash of the normalised address and is honoured forever: nothing here re-subscribes a
suppressed address, and a list the subscriber left is only re-joined through double opt-in.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, Select, delete, exists, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite

from newsletter.addresses import (
    clean_name,
    email_hash,
    mailbox_hash,
    normalize_email,
    suppression_key,
)
from newsletter.config import Settings
from newsletter.consent import Authority, Verdict, decide, left_everything, link_confirms
from newsletter.errors import StoreError, SuppressedError
from newsletter.states import SubscriptionStatus, SuppressionReason
from newsletter.store.schema import confirmations, lists, subscribers, subscriptions, suppressions
from newsletter.tokens import new_subscriber_uid

__all__ = [
    "JoinOutcome",
    "SubscribeRequest",
    "Subscriber",
    "Subscription",
    "add_subscriber",
    "confirm_subscriber",
    "count_deliverable",
    "count_subscribers",
    "count_suppressions",
    "counts_by_status",
    "deliverable",
    "dialect_insert",
    "ensure_lists",
    "erase",
    "find_by_email",
    "find_by_uid",
    "is_suppressed",
    "iter_subscribers",
    "join_list",
    "list_ids",
    "request_subscription",
    "resolve_lists",
    "suppress",
    "suppressed_clause",
    "suppression_reason",
    "unsubscribe",
]


@dataclass(frozen=True)
class Subscription:
    """One subscriber's membership of one list."""

    list_id: int
    list_slug: str
    list_name: str
    status: SubscriptionStatus
    created_at: datetime
    confirmed_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    # the confirmation request that asked for it while it waits (consent.link_confirms)
    requested_in: int | None = None

    @property
    def active(self) -> bool:
        """Still on the list (confirmed, or waiting for confirmation)."""
        return self.status is not SubscriptionStatus.UNSUBSCRIBED


@dataclass(frozen=True)
class Subscriber:
    """A person on the store; ``uid`` is the random value signed tokens carry."""

    id: int
    uid: str
    email: str
    email_normalized: str
    name: str | None
    attributes: Mapping[str, Any]
    source: str | None
    created_at: datetime
    confirmed_at: datetime | None
    subscriptions: tuple[Subscription, ...] = field(default=())

    def subscription(self, list_id: int) -> Subscription | None:
        for sub in self.subscriptions:
            if sub.list_id == list_id:
                return sub
        return None

    @property
    def active_subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(s for s in self.subscriptions if s.active)


# --- lists ------------------------------------------------------------------------------------


def ensure_lists(
    conn: Connection, settings: Settings, *, now: datetime | None = None
) -> dict[str, int]:
    """Create (or rename) a ``lists`` row for every ``[lists.*]`` in settings; slug -> id.

    Lists removed from the settings keep their rows: subscriptions and history still point
    at them.
    """
    now = now or _now()
    existing = {row.slug: (row.id, row.name) for row in conn.execute(select(lists))}
    for slug, mailing_list in settings.lists.items():
        if slug not in existing:
            stmt = (
                dialect_insert(conn, lists)
                .values(slug=slug, name=mailing_list.name, created_at=now)
                .on_conflict_do_nothing(index_elements=["slug"])
            )
            conn.execute(stmt)
        elif existing[slug][1] != mailing_list.name:
            conn.execute(update(lists).where(lists.c.slug == slug).values(name=mailing_list.name))
    return list_ids(conn)


def list_ids(conn: Connection) -> dict[str, int]:
    """slug -> id of every list in the store."""
    return {row.slug: row.id for row in conn.execute(select(lists.c.slug, lists.c.id))}


def resolve_lists(
    conn: Connection, settings: Settings, slugs: Iterable[str] | None
) -> dict[str, int]:
    """The ids of ``slugs`` (the default list when empty); unknown slugs are a ConfigError."""
    wanted = list(slugs or []) or [settings.publication.default_list]
    for slug in wanted:
        settings.mailing_list(slug)  # raises ConfigError naming the known lists
    ids = ensure_lists(conn, settings)
    return {slug: ids[slug] for slug in wanted}


# --- suppression ------------------------------------------------------------------------------


def suppress(
    conn: Connection,
    email: str,
    reason: SuppressionReason,
    detail: str | None = None,
    *,
    now: datetime | None = None,
) -> None:
    """Put ``email`` on the suppression list and end all its subscriptions. Idempotent.

    The first reason recorded is kept: a later bounce does not rewrite "unsubscribed".
    """
    now = now or _now()
    normalized, digest = suppression_key(email)
    stmt = (
        dialect_insert(conn, suppressions)
        .values(
            email_hash=digest,
            email=normalized,
            reason=reason.value,
            detail=detail,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["email_hash"])
    )
    conn.execute(stmt)
    subscriber_id = conn.execute(
        select(subscribers.c.id).where(subscribers.c.email_normalized == normalized)
    ).scalar_one_or_none()
    if subscriber_id is not None:
        _end_subscriptions(conn, subscriber_id, None, now)


def suppression_reason(conn: Connection, email: str) -> SuppressionReason | None:
    _, digest = suppression_key(email)
    value = conn.execute(
        select(suppressions.c.reason).where(suppressions.c.email_hash == digest)
    ).scalar_one_or_none()
    return None if value is None else SuppressionReason(value)


def is_suppressed(conn: Connection, email: str) -> bool:
    return suppression_reason(conn, email) is not None


_SQLITE_SHA256 = "newsletter_sha256"


def _sha256_hex(value: str | None) -> str | None:
    return None if value is None else email_hash(value)


def _email_hash_sql(conn: Connection, column: Any) -> Any:
    """SQL for the suppression key of an ``email_normalized`` column, on either database."""
    if conn.dialect.name == "postgresql":
        return func.encode(func.sha256(func.convert_to(column, literal("UTF8"))), literal("hex"))
    # SQLite has no SHA-256; the same Python function the store uses is registered per connection
    raw = conn.connection.driver_connection
    assert raw is not None
    raw.create_function(_SQLITE_SHA256, 1, _sha256_hex, deterministic=True)
    return getattr(func, _SQLITE_SHA256)(column)


def suppressed_clause(conn: Connection) -> Any:
    """SQL: the ``subscribers`` row of the query is on the suppression list."""
    return exists().where(
        suppressions.c.email_hash == _email_hash_sql(conn, subscribers.c.email_normalized)
    )


def deliverable(conn: Connection, list_id: int, *columns: Any) -> Select[Any]:
    """SELECT ``columns`` over the list's confirmed, non-suppressed subscriptions.

    Who a send to the list reaches: what its ledger rows are created from, and what
    ``send --dry-run`` counts.
    """
    return (
        select(*columns)
        .select_from(
            subscriptions.join(subscribers, subscribers.c.id == subscriptions.c.subscriber_id)
        )
        .where(
            subscriptions.c.list_id == list_id,
            subscriptions.c.status == SubscriptionStatus.CONFIRMED.value,
            ~suppressed_clause(conn),
        )
    )


def count_deliverable(conn: Connection, list_id: int) -> int:
    """How many people a send to the list would reach now (for ``--dry-run``)."""
    return int(conn.execute(deliverable(conn, list_id, func.count())).scalar_one())


# --- reading ----------------------------------------------------------------------------------


def find_by_uid(conn: Connection, uid: str) -> Subscriber | None:
    row = conn.execute(select(subscribers).where(subscribers.c.uid == uid)).one_or_none()
    return None if row is None else _load(conn, row)


def find_by_email(conn: Connection, email: str) -> Subscriber | None:
    normalized = normalize_email(email)
    row = conn.execute(
        select(subscribers).where(subscribers.c.email_normalized == normalized)
    ).one_or_none()
    return None if row is None else _load(conn, row)


def iter_subscribers(
    conn: Connection,
    *,
    list_id: int | None = None,
    status: SubscriptionStatus | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> Iterator[Subscriber]:
    """Subscribers in id order, optionally only those on ``list_id`` (with ``status``).

    Each carries only the subscription being filtered on (all of them when unfiltered). Rows
    come in pages by id, so exporting a large list keeps memory flat and holds no cursor open.
    """
    cond: list[Any] = []
    if list_id is not None or status is not None:
        sub_cond = [subscriptions.c.subscriber_id == subscribers.c.id]
        if list_id is not None:
            sub_cond.append(subscriptions.c.list_id == list_id)
        if status is not None:
            sub_cond.append(subscriptions.c.status == status.value)
        cond.append(select(subscriptions.c.subscriber_id).where(*sub_cond).exists())
    names = {row.id: (row.slug, row.name) for row in conn.execute(select(lists))}
    last_id = 0
    skip = offset
    remaining = limit
    page = 1000
    while remaining is None or remaining > 0:
        size = page if remaining is None else min(page, remaining + skip)
        rows = list(
            conn.execute(
                select(subscribers)
                .where(subscribers.c.id > last_id, *cond)
                .order_by(subscribers.c.id)
                .limit(size)
            )
        )
        if not rows:
            return
        last_id = rows[-1].id
        if skip:
            dropped = min(skip, len(rows))
            skip -= dropped
            rows = rows[dropped:]
        if remaining is not None:
            rows = rows[:remaining]
            remaining -= len(rows)
        yield from _load_many(conn, rows, names, list_id)


def count_subscribers(
    conn: Connection,
    *,
    list_id: int | None = None,
    status: SubscriptionStatus | None = None,
) -> int:
    if list_id is None and status is None:
        return int(conn.execute(select(func.count()).select_from(subscribers)).scalar_one())
    stmt = select(func.count(func.distinct(subscriptions.c.subscriber_id)))
    if list_id is not None:
        stmt = stmt.where(subscriptions.c.list_id == list_id)
    if status is not None:
        stmt = stmt.where(subscriptions.c.status == status.value)
    return int(conn.execute(stmt).scalar_one())


def counts_by_status(conn: Connection, list_id: int) -> dict[SubscriptionStatus, int]:
    rows = conn.execute(
        select(subscriptions.c.status, func.count())
        .where(subscriptions.c.list_id == list_id)
        .group_by(subscriptions.c.status)
    )
    counts = dict.fromkeys(SubscriptionStatus, 0)
    for status, n in rows:
        counts[SubscriptionStatus(status)] = int(n)
    return counts


def count_suppressions(conn: Connection) -> dict[SuppressionReason, int]:
    rows = conn.execute(select(suppressions.c.reason, func.count()).group_by(suppressions.c.reason))
    counts = dict.fromkeys(SuppressionReason, 0)
    for reason, n in rows:
        counts[SuppressionReason(reason)] = int(n)
    return counts


# --- writing ----------------------------------------------------------------------------------


def add_subscriber(
    conn: Connection,
    email: str,
    *,
    list_ids: Iterable[int],
    name: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    source: str | None = None,
    status: SubscriptionStatus = SubscriptionStatus.CONFIRMED,
    now: datetime | None = None,
) -> Subscriber:
    """Add ``email`` to ``list_ids`` on the operator's authority (CLI, API).

    A suppressed address raises :class:`SuppressedError`; a list the person left raises
    :class:`StoreError`: only they can re-join it, through the subscribe form. A subscription
    waiting for confirmation is confirmed (the operator vouches for it); others are left as
    they are, so repeating the call changes nothing. The rules are :func:`consent.decide`'s.
    """
    now = now or _now()
    normalized = normalize_email(email)
    reason = suppression_reason(conn, normalized)
    wanted = list(dict.fromkeys(list_ids))
    if decide(authority=Authority.OPERATOR, current=None, suppressed=reason is not None).refused:
        # before anything is written, whatever lists were asked for
        assert reason is not None
        raise SuppressedError(normalized, reason.value)
    subscriber_id = _get_or_create(
        conn, email.strip(), normalized, name=name, attributes=attributes, source=source, now=now
    )
    current = _statuses(conn, subscriber_id)
    verdicts = {
        lid: decide(
            authority=Authority.OPERATOR, current=current.get(lid), suppressed=False, wanted=status
        )
        for lid in wanted
    }
    left = [lid for lid, verdict in verdicts.items() if verdict is Verdict.LEFT]
    if left:
        names = _list_slugs(conn)
        raise StoreError(
            f"{normalized} unsubscribed from {', '.join(names[lid] for lid in left)}; "
            "only they can re-join, through the subscribe form"
        )
    confirmed_at = now if status is SubscriptionStatus.CONFIRMED else None
    for lid, verdict in verdicts.items():
        if verdict is Verdict.ADD:
            conn.execute(
                dialect_insert(conn, subscriptions)
                .values(
                    subscriber_id=subscriber_id,
                    list_id=lid,
                    status=status.value,
                    created_at=now,
                    confirmed_at=confirmed_at,
                )
                .on_conflict_do_nothing(index_elements=["subscriber_id", "list_id"])
            )
        elif verdict is Verdict.CONFIRM:
            _set_status(conn, subscriber_id, lid, SubscriptionStatus.CONFIRMED, now)
    if status is SubscriptionStatus.CONFIRMED:
        conn.execute(
            update(subscribers)
            .where(subscribers.c.id == subscriber_id, subscribers.c.confirmed_at.is_(None))
            .values(confirmed_at=now)
        )
    found = _by_id(conn, subscriber_id)
    assert found is not None
    return found


# The window the cap on confirmation emails counts over (rolling, not a calendar day).
CONFIRMATION_WINDOW = timedelta(days=1)
# Old request rows deleted per request: bounded work, whoever is deleting too.
_PRUNE_BATCH = 100


@dataclass(frozen=True)
class SubscribeRequest:
    """What a subscribe-form submission did; never shown to the person who submitted it."""

    subscriber: Subscriber | None
    # lists of this request now waiting for confirmation
    pending: tuple[int, ...]
    suppressed: bool = False
    # the number the confirmation link carries; None when no email is due (nothing waits, or
    # the mailbox had its confirmation emails for the day)
    confirmation: int | None = None
    # every list that link confirms: this request's and any still waiting from earlier ones
    confirms: tuple[int, ...] = ()


def request_subscription(
    conn: Connection,
    email: str,
    *,
    list_ids: Iterable[int],
    name: str | None = None,
    source: str | None = "web",
    confirmations_per_day: int = 0,
    now: datetime | None = None,
) -> SubscribeRequest:
    """Record a subscribe-form request; the lists join only when the link is confirmed.

    A suppressed address changes nothing. A list the person had left goes back to
    ``unconfirmed`` (which receives nothing) and rejoins only on confirmation; its
    ``unsubscribed_at`` stays as the record of the earlier unsubscribe. A request that leaves
    lists waiting is numbered (the link carries the number, see :func:`confirm_subscriber`);
    at most ``confirmations_per_day`` of them per mailbox in a rolling day get an email
    (0: no cap), counted in the database so the cap holds across processes and restarts.
    """
    now = now or _now()
    normalized = normalize_email(email)
    if decide(
        authority=Authority.SUBSCRIBER, current=None, suppressed=is_suppressed(conn, normalized)
    ).refused:
        return SubscribeRequest(None, (), suppressed=True)
    subscriber_id = _get_or_create(
        conn, email.strip(), normalized, name=name, attributes=None, source=source, now=now
    )
    current = _statuses(conn, subscriber_id)
    verdicts = {
        lid: decide(authority=Authority.SUBSCRIBER, current=current.get(lid), suppressed=False)
        for lid in dict.fromkeys(list_ids)
    }
    pending = [
        lid
        for lid, verdict in verdicts.items()
        if verdict in (Verdict.ADD, Verdict.REQUEST, Verdict.PENDING)
    ]
    if not pending:
        return SubscribeRequest(_by_id(conn, subscriber_id), ())
    number, mailed = _number_request(
        conn, subscriber_id, normalized, cap=confirmations_per_day, now=now
    )
    for lid, verdict in verdicts.items():
        where = (subscriptions.c.subscriber_id == subscriber_id, subscriptions.c.list_id == lid)
        if verdict is Verdict.ADD:
            conn.execute(
                dialect_insert(conn, subscriptions)
                .values(
                    subscriber_id=subscriber_id,
                    list_id=lid,
                    status=SubscriptionStatus.UNCONFIRMED.value,
                    created_at=now,
                    requested_in=number,
                )
                .on_conflict_do_nothing(index_elements=["subscriber_id", "list_id"])
            )
        elif verdict is Verdict.REQUEST:
            # asked for afresh: only this request's link (and later ones) may confirm it
            conn.execute(
                update(subscriptions)
                .where(*where)
                .values(status=SubscriptionStatus.UNCONFIRMED.value, requested_in=number)
            )
        elif verdict is Verdict.PENDING:
            # still waiting: earlier links keep confirming it; one asked for before requests
            # were numbered (or added unconfirmed by the operator) gets this number
            conn.execute(
                update(subscriptions)
                .where(*where, subscriptions.c.requested_in.is_(None))
                .values(requested_in=number)
            )
    found = _by_id(conn, subscriber_id)
    assert found is not None
    confirms = tuple(
        s.list_id for s in found.subscriptions if _confirms(s, link=number, issued_before=None)
    )
    return SubscribeRequest(
        found,
        tuple(pending),
        confirmation=number if mailed else None,
        confirms=confirms,
    )


def _number_request(
    conn: Connection, subscriber_id: int, normalized: str, *, cap: int, now: datetime
) -> tuple[int, bool]:
    """A new confirmation request row: (its number, whether it gets an email under the cap)."""
    mailbox = mailbox_hash(normalized)
    if conn.dialect.name == "postgresql":
        # one mailbox's requests in turn, so two processes cannot both take the last email of
        # the day (SQLite's BEGIN IMMEDIATE already serialises writers)
        key = int(mailbox[:16], 16)
        conn.execute(select(func.pg_advisory_xact_lock(key - (1 << 64) if key >> 63 else key)))
    since = now - CONFIRMATION_WINDOW
    _prune_requests(conn, since)
    mailed_today = int(
        conn.execute(
            select(func.count())
            .select_from(confirmations)
            .where(
                confirmations.c.mailbox_hash == mailbox,
                confirmations.c.created_at > since,
                confirmations.c.mailed.is_(True),
            )
        ).scalar_one()
    )
    mailed = cap <= 0 or mailed_today < cap
    number = conn.execute(
        confirmations.insert()
        .values(subscriber_id=subscriber_id, mailbox_hash=mailbox, mailed=mailed, created_at=now)
        .returning(confirmations.c.id)
    ).scalar_one()
    return int(number), mailed


def _prune_requests(conn: Connection, before: datetime) -> None:
    """Delete a bounded batch of request rows that no longer count towards any cap."""
    old = (
        select(confirmations.c.id)
        .where(confirmations.c.created_at <= before)
        .order_by(confirmations.c.created_at)
        .limit(_PRUNE_BATCH)
    )
    if conn.dialect.name == "postgresql":
        # rows another request is deleting are its business: no waiting, no deadlock
        old = old.with_for_update(skip_locked=True)
    conn.execute(delete(confirmations).where(confirmations.c.id.in_(old.scalar_subquery())))


def _confirms(sub: Subscription, *, link: int, issued_before: datetime | None) -> bool:
    return link_confirms(
        status=sub.status,
        requested_in=sub.requested_in,
        link=link,
        created_at=sub.created_at,
        unsubscribed_at=sub.unsubscribed_at,
        issued_before=issued_before,
    )


def confirm_subscriber(
    conn: Connection,
    uid: str,
    *,
    link: int | None = None,
    issued_before: datetime | None = None,
    now: datetime | None = None,
) -> Subscriber | None:
    """Activate the subscriptions of ``uid`` that confirmation link ``link`` confirms.

    ``link`` is the request number the link carries: only what was waiting when it was
    mailed is confirmed (:func:`consent.link_confirms`; ``issued_before`` is when a link
    numbered 0, mailed before requests were numbered, was issued). None confirms everything
    waiting, on the operator's word. Returns None when there is no such subscriber or the
    address is suppressed (a confirmation link never overrides the suppression list).
    Confirming twice is harmless.
    """
    now = now or _now()
    found = find_by_uid(conn, uid)
    if found is None or is_suppressed(conn, found.email_normalized):
        return None
    chosen = [
        s.list_id
        for s in found.subscriptions
        if (
            s.status is SubscriptionStatus.UNCONFIRMED
            if link is None
            else _confirms(s, link=link, issued_before=issued_before)
        )
    ]
    if chosen:
        conn.execute(
            update(subscriptions)
            .where(
                subscriptions.c.subscriber_id == found.id,
                subscriptions.c.list_id.in_(chosen),
                # unchanged since it was read: a concurrent unsubscribe wins
                subscriptions.c.status == SubscriptionStatus.UNCONFIRMED.value,
            )
            .values(status=SubscriptionStatus.CONFIRMED.value, confirmed_at=now)
        )
        conn.execute(
            update(subscribers)
            .where(subscribers.c.id == found.id, subscribers.c.confirmed_at.is_(None))
            .values(confirmed_at=now)
        )
    return _by_id(conn, found.id)


def unsubscribe(
    conn: Connection,
    subscriber_id: int,
    list_id: int | None = None,
    *,
    now: datetime | None = None,
) -> bool:
    """End the subscription to ``list_id`` (every list when None); True if anything changed.

    Leaving one list is not a suppression, but leaving the last one is leaving everything
    (:func:`consent.left_everything`): the address goes on the suppression list, as the
    "unsubscribe from everything" button puts it, so no later import or form brings it back.
    Every way of leaving (one-click, the preferences page, a mailto request, the dashboard,
    ``subscribers remove --list``) comes through here.
    """
    now = now or _now()
    # the person's row locked first (PostgreSQL; SQLite serialises writers anyway): leaving
    # two lists at once, each request would otherwise see the other list still joined
    email = conn.execute(
        select(subscribers.c.email_normalized)
        .where(subscribers.c.id == subscriber_id)
        .with_for_update()
    ).scalar_one_or_none()
    if email is None or _end_subscriptions(conn, subscriber_id, list_id, now) == 0:
        return False
    if left_everything(_statuses(conn, subscriber_id).values()):
        suppress(conn, email, SuppressionReason.UNSUBSCRIBED, "left every list", now=now)
    return True


class JoinOutcome(enum.Enum):
    """What following a "more from us" join link did."""

    JOINED = "joined"
    ALREADY = "already"  # on the list (confirmed) already: nothing changed
    REFUSED = "refused"  # no such subscriber, suppressed, or on no list any more


def join_list(
    conn: Connection,
    uid: str,
    list_id: int,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
) -> JoinOutcome:
    """Put subscriber ``uid`` on ``list_id``, confirmed, on their own click in an issue.

    The link was signed into the copy mailed to them as a confirmed recipient: pressing the
    button proves control of the mailbox as a confirmation link does, so the list joins at
    once, a list they left earlier included (their own choice again). A suppressed address,
    or one that left every list (it no longer receives anything, so an old email's link is
    all that is left), is refused. ``dry_run`` says what a click would do, changing nothing.
    """
    now = now or _now()
    found = find_by_uid(conn, uid)
    if found is None:
        return JoinOutcome.REFUSED
    if not any(s.status is SubscriptionStatus.CONFIRMED for s in found.subscriptions):
        return JoinOutcome.REFUSED
    current = found.subscription(list_id)
    verdict = decide(
        authority=Authority.RECIPIENT,
        current=current.status if current else None,
        suppressed=is_suppressed(conn, found.email_normalized),
    )
    if verdict.refused:
        return JoinOutcome.REFUSED
    if verdict is Verdict.KEEP:
        return JoinOutcome.ALREADY
    if dry_run:
        return JoinOutcome.JOINED
    if verdict is Verdict.ADD:
        conn.execute(
            dialect_insert(conn, subscriptions)
            .values(
                subscriber_id=found.id,
                list_id=list_id,
                status=SubscriptionStatus.CONFIRMED.value,
                created_at=now,
                confirmed_at=now,
            )
            .on_conflict_do_nothing(index_elements=["subscriber_id", "list_id"])
        )
    else:  # CONFIRM, REJOIN
        _set_status(conn, found.id, list_id, SubscriptionStatus.CONFIRMED, now)
    return JoinOutcome.JOINED


def erase(conn: Connection, email: str, *, now: datetime | None = None) -> bool:
    """Delete the personal data of ``email`` (GDPR); only its hash stays, suppressed.

    Returns True when a subscriber row was deleted. The suppression row keeps its original
    reason (or gets ``erased``) and loses the address and the free-text detail.
    """
    now = now or _now()
    normalized, digest = suppression_key(email)
    conn.execute(
        dialect_insert(conn, suppressions)
        .values(
            email_hash=digest,
            email=None,
            reason=SuppressionReason.ERASED.value,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["email_hash"])
    )
    conn.execute(
        update(suppressions)
        .where(suppressions.c.email_hash == digest)
        .values(email=None, detail=None)
    )
    result = conn.execute(delete(subscribers).where(subscribers.c.email_normalized == normalized))
    return bool(result.rowcount)


# --- internals --------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def dialect_insert(conn: Connection, table: Any) -> postgresql.Insert | sqlite.Insert:
    """INSERT with ON CONFLICT support for the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise StoreError(f"unsupported database {conn.dialect.name!r}; use SQLite or PostgreSQL")


def _get_or_create(
    conn: Connection,
    email: str,
    normalized: str,
    *,
    name: str | None,
    attributes: Mapping[str, Any] | None,
    source: str | None,
    now: datetime,
) -> int:
    existing = conn.execute(
        select(subscribers.c.id).where(subscribers.c.email_normalized == normalized)
    ).scalar_one_or_none()
    if existing is not None:
        return int(existing)
    conn.execute(
        dialect_insert(conn, subscribers)
        .values(
            uid=new_subscriber_uid(),
            email=email,
            email_normalized=normalized,
            name=clean_name(name),
            attributes=dict(attributes or {}),
            source=source,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["email_normalized"])
    )
    # read back rather than trust inserted_primary_key: a concurrent insert may have won
    return int(
        conn.execute(
            select(subscribers.c.id).where(subscribers.c.email_normalized == normalized)
        ).scalar_one()
    )


def _statuses(conn: Connection, subscriber_id: int) -> dict[int, SubscriptionStatus]:
    rows = conn.execute(
        select(subscriptions.c.list_id, subscriptions.c.status).where(
            subscriptions.c.subscriber_id == subscriber_id
        )
    )
    return {int(lid): SubscriptionStatus(status) for lid, status in rows}


def _set_status(
    conn: Connection,
    subscriber_id: int,
    list_id: int,
    status: SubscriptionStatus,
    now: datetime,
) -> None:
    values: dict[str, Any] = {"status": status.value}
    if status is SubscriptionStatus.CONFIRMED:
        values["confirmed_at"] = now
    conn.execute(
        update(subscriptions)
        .where(
            subscriptions.c.subscriber_id == subscriber_id,
            subscriptions.c.list_id == list_id,
        )
        .values(**values)
    )


def _end_subscriptions(
    conn: Connection, subscriber_id: int, list_id: int | None, now: datetime
) -> int:
    stmt = (
        update(subscriptions)
        .where(
            subscriptions.c.subscriber_id == subscriber_id,
            subscriptions.c.status != SubscriptionStatus.UNSUBSCRIBED.value,
        )
        .values(status=SubscriptionStatus.UNSUBSCRIBED.value, unsubscribed_at=now)
    )
    if list_id is not None:
        stmt = stmt.where(subscriptions.c.list_id == list_id)
    return int(conn.execute(stmt).rowcount)


def _list_slugs(conn: Connection) -> dict[int, str]:
    return {row.id: row.slug for row in conn.execute(select(lists.c.id, lists.c.slug))}


def _by_id(conn: Connection, subscriber_id: int) -> Subscriber | None:
    row = conn.execute(select(subscribers).where(subscribers.c.id == subscriber_id)).one_or_none()
    return None if row is None else _load(conn, row)


def _load(conn: Connection, row: Row[Any]) -> Subscriber:
    names = {r.id: (r.slug, r.name) for r in conn.execute(select(lists))}
    return next(iter(_load_many(conn, [row], names, None)))


def _load_many(
    conn: Connection,
    rows: Sequence[Row[Any]],
    names: Mapping[int, tuple[str, str]],
    list_id: int | None,
) -> list[Subscriber]:
    ids = [row.id for row in rows]
    stmt = select(subscriptions).where(subscriptions.c.subscriber_id.in_(ids))
    if list_id is not None:
        stmt = stmt.where(subscriptions.c.list_id == list_id)
    by_subscriber: dict[int, list[Subscription]] = {}
    for sub in conn.execute(stmt.order_by(subscriptions.c.list_id)):
        slug, list_name = names.get(sub.list_id, (str(sub.list_id), str(sub.list_id)))
        by_subscriber.setdefault(sub.subscriber_id, []).append(
            Subscription(
                list_id=sub.list_id,
                list_slug=slug,
                list_name=list_name,
                status=SubscriptionStatus(sub.status),
                created_at=sub.created_at,
                confirmed_at=sub.confirmed_at,
                unsubscribed_at=sub.unsubscribed_at,
                requested_in=sub.requested_in,
            )
        )
    result = []
    for row in rows:
        result.append(
            Subscriber(
                id=row.id,
                uid=row.uid,
                email=row.email,
                email_normalized=row.email_normalized,
                name=row.name,
                attributes=dict(row.attributes or {}),
                source=row.source,
                created_at=row.created_at,
                confirmed_at=row.confirmed_at,
                subscriptions=tuple(by_subscriber.get(row.id, ())),
            )
        )
    return result
