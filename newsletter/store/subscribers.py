"""Subscribers, lists, subscriptions and the suppression list (SQLAlchemy Core).

Every function takes a :class:`~sqlalchemy.Connection` whose transaction the caller owns, so a
web request or a CLI command commits or rolls back as one unit. The suppression list is keyed
by a hash of the normalised address and is honoured forever: nothing here re-subscribes a
suppressed address, and a list the subscriber left is only re-joined through double opt-in.
"""

from __future__ import annotations

import enum
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from sqlalchemy import Connection, Row, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from newsletter.config import Settings
from newsletter.errors import InvalidAddressError, StoreError, SuppressedError
from newsletter.store.schema import (
    SubscriptionStatus,
    SuppressionReason,
    lists,
    subscribers,
    subscriptions,
    suppressions,
)
from newsletter.tokens import new_subscriber_uid

__all__ = [
    "JoinOutcome",
    "SubscribeRequest",
    "Subscriber",
    "Subscription",
    "SubscriptionStatus",
    "SuppressionReason",
    "add_subscriber",
    "clean_name",
    "confirm_subscriber",
    "count_subscribers",
    "count_suppressions",
    "counts_by_status",
    "dialect_insert",
    "email_hash",
    "ensure_lists",
    "erase",
    "find_by_email",
    "find_by_uid",
    "is_suppressed",
    "iter_subscribers",
    "join_list",
    "list_ids",
    "normalize_email",
    "request_subscription",
    "resolve_lists",
    "suppress",
    "suppression_reason",
    "unsubscribe",
]

MAX_NAME_LENGTH = 200

# A conservative shape of the everyday ASCII address. Anything it accepts, email-validator
# accepts with the same result (a property test holds it to that); everything else takes the
# slow, complete path. It exists because validate_email costs ~30 µs and the importer's budget
# for a whole row is 40 µs.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_FAST_ADDRESS = re.compile(
    rf"({_ATEXT}+(?:\.{_ATEXT}+)*)@((?:{_LABEL}\.)+[A-Za-z]{{2,63}})", re.ASCII
)
_SPECIAL_USE = re.compile(
    r"(?:^|\.)(?:" + "|".join(map(re.escape, SPECIAL_USE_DOMAIN_NAMES)) + r")\Z"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SPACES = re.compile(r"\s+")


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


# --- addresses --------------------------------------------------------------------------------


def normalize_email(address: str) -> str:
    """The unique key for ``address``: validated (no DNS), IDN domain in Unicode, lowercased.

    Surrounding spaces are forgiven; CR, LF and NUL anywhere are refused because the address
    ends up in a header. Raises :class:`InvalidAddressError` with a reason a person can act on.
    """
    if not isinstance(address, str):
        raise InvalidAddressError(repr(address), "not text")
    # the fast shape admits no whitespace or control characters, so it needs no checks first
    fast = _fast_normalize(address)
    if fast is not None:
        return fast
    if "\r" in address or "\n" in address or "\0" in address:
        raise InvalidAddressError(address, "contains a line break or NUL")
    candidate = address.strip(" \t")
    if not candidate:
        raise InvalidAddressError(address, "empty address")
    fast = _fast_normalize(candidate)
    if fast is not None:
        return fast
    try:
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddressError(candidate, str(exc)) from None
    return str(result.normalized).lower()


def _fast_normalize(candidate: str) -> str | None:
    if len(candidate) > 254:
        return None
    match = _FAST_ADDRESS.fullmatch(candidate)
    if match is None:
        return None
    local, domain = match.group(1), match.group(2).lower()
    if len(local) > 64 or len(domain) > 253:
        return None
    # IDNA rules forbid "--" in positions 3-4 unless it is an xn-- label: leave those to idna
    if "--" in domain or _SPECIAL_USE.search(domain):
        return None
    return f"{local}@{domain}".lower()


def email_hash(normalized: str) -> str:
    """SHA-256 hex of a normalised address: what the suppression list keys on."""
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def _suppression_key(email: str) -> tuple[str, str]:
    """(normalised address, hash); an address that no longer validates is still suppressible."""
    try:
        normalized = normalize_email(email)
    except InvalidAddressError:
        normalized = email.strip().lower()
    return normalized, email_hash(normalized)


def clean_name(name: str | None) -> str | None:
    """A display name safe anywhere: no control characters or line breaks, spaces collapsed."""
    if name is None:
        return None
    if name.isprintable() and "  " not in name and name == name.strip():
        # the common case: nothing to clean (isprintable is False for every control
        # character, line or paragraph separator and odd space)
        if not unicodedata.is_normalized("NFC", name):
            name = unicodedata.normalize("NFC", name)
        return name[:MAX_NAME_LENGTH] or None
    cleaned = _SPACES.sub(" ", _CONTROL.sub(" ", unicodedata.normalize("NFC", name))).strip()
    return cleaned[:MAX_NAME_LENGTH] or None


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
    normalized, digest = _suppression_key(email)
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
    _, digest = _suppression_key(email)
    value = conn.execute(
        select(suppressions.c.reason).where(suppressions.c.email_hash == digest)
    ).scalar_one_or_none()
    return None if value is None else SuppressionReason(value)


def is_suppressed(conn: Connection, email: str) -> bool:
    return suppression_reason(conn, email) is not None


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
    :class:`StoreError`: only they can re-join it, through the subscribe form. Existing
    subscriptions are left as they are, so repeating the call changes nothing.
    """
    now = now or _now()
    normalized = normalize_email(email)
    reason = suppression_reason(conn, normalized)
    if reason is not None:
        raise SuppressedError(normalized, reason.value)
    subscriber_id = _get_or_create(
        conn, email.strip(), normalized, name=name, attributes=attributes, source=source, now=now
    )
    current = _statuses(conn, subscriber_id)
    wanted = list(dict.fromkeys(list_ids))
    left = [lid for lid in wanted if current.get(lid) is SubscriptionStatus.UNSUBSCRIBED]
    if left:
        names = _list_slugs(conn)
        raise StoreError(
            f"{normalized} unsubscribed from {', '.join(names[lid] for lid in left)}; "
            "only they can re-join, through the subscribe form"
        )
    confirmed_at = now if status is SubscriptionStatus.CONFIRMED else None
    for lid in wanted:
        if lid not in current:
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
        elif (
            current[lid] is SubscriptionStatus.UNCONFIRMED
            and status is SubscriptionStatus.CONFIRMED
        ):
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


@dataclass(frozen=True)
class SubscribeRequest:
    """What a subscribe-form submission did; never shown to the person who submitted it."""

    subscriber: Subscriber | None
    # lists now waiting for confirmation: a confirmation email is due when non-empty
    pending: tuple[int, ...]
    suppressed: bool = False


def request_subscription(
    conn: Connection,
    email: str,
    *,
    list_ids: Iterable[int],
    name: str | None = None,
    source: str | None = "web",
    now: datetime | None = None,
) -> SubscribeRequest:
    """Record a subscribe-form request; the lists join only when the link is confirmed.

    A suppressed address changes nothing. A list the person had left goes back to
    ``unconfirmed`` (which receives nothing) and rejoins only on confirmation; its
    ``unsubscribed_at`` stays as the record of the earlier unsubscribe.
    """
    now = now or _now()
    normalized = normalize_email(email)
    if is_suppressed(conn, normalized):
        return SubscribeRequest(None, (), suppressed=True)
    subscriber_id = _get_or_create(
        conn, email.strip(), normalized, name=name, attributes=None, source=source, now=now
    )
    current = _statuses(conn, subscriber_id)
    pending: list[int] = []
    for lid in dict.fromkeys(list_ids):
        status = current.get(lid)
        if status is None:
            conn.execute(
                dialect_insert(conn, subscriptions)
                .values(
                    subscriber_id=subscriber_id,
                    list_id=lid,
                    status=SubscriptionStatus.UNCONFIRMED.value,
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=["subscriber_id", "list_id"])
            )
            pending.append(lid)
        elif status is SubscriptionStatus.UNSUBSCRIBED:
            conn.execute(
                update(subscriptions)
                .where(
                    subscriptions.c.subscriber_id == subscriber_id,
                    subscriptions.c.list_id == lid,
                )
                .values(status=SubscriptionStatus.UNCONFIRMED.value)
            )
            pending.append(lid)
        elif status is SubscriptionStatus.UNCONFIRMED:
            pending.append(lid)
    return SubscribeRequest(_by_id(conn, subscriber_id), tuple(pending))


def confirm_subscriber(
    conn: Connection,
    uid: str,
    *,
    now: datetime | None = None,
    requested_before: datetime | None = None,
) -> Subscriber | None:
    """Activate every subscription of ``uid`` waiting for confirmation (double opt-in).

    With ``requested_before`` (when the link was issued) only what was waiting then is
    confirmed: a list someone asked for in the person's name later, or one they left later,
    needs a link of its own. Returns None when there is no such subscriber or the address is
    suppressed (a confirmation link never overrides the suppression list). Confirming twice
    is harmless.
    """
    now = now or _now()
    found = find_by_uid(conn, uid)
    if found is None or is_suppressed(conn, found.email_normalized):
        return None
    stmt = update(subscriptions).where(
        subscriptions.c.subscriber_id == found.id,
        subscriptions.c.status == SubscriptionStatus.UNCONFIRMED.value,
    )
    if requested_before is not None:
        stmt = stmt.where(
            subscriptions.c.created_at < requested_before,
            or_(
                subscriptions.c.unsubscribed_at.is_(None),
                subscriptions.c.unsubscribed_at < requested_before,
            ),
        )
    conn.execute(stmt.values(status=SubscriptionStatus.CONFIRMED.value, confirmed_at=now))
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

    Leaving one list is not a suppression; leaving everything should go through
    :func:`suppress` so that no later import or form brings the address back.
    """
    return _end_subscriptions(conn, subscriber_id, list_id, now or _now()) > 0


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
    if found is None or is_suppressed(conn, found.email_normalized):
        return JoinOutcome.REFUSED
    if not any(s.status is SubscriptionStatus.CONFIRMED for s in found.subscriptions):
        return JoinOutcome.REFUSED
    current = found.subscription(list_id)
    if current is not None and current.status is SubscriptionStatus.CONFIRMED:
        return JoinOutcome.ALREADY
    if dry_run:
        return JoinOutcome.JOINED
    if current is None:
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
    else:
        _set_status(conn, found.id, list_id, SubscriptionStatus.CONFIRMED, now)
    return JoinOutcome.JOINED


def erase(conn: Connection, email: str, *, now: datetime | None = None) -> bool:
    """Delete the personal data of ``email`` (GDPR); only its hash stays, suppressed.

    Returns True when a subscriber row was deleted. The suppression row keeps its original
    reason (or gets ``erased``) and loses the address and the free-text detail.
    """
    now = now or _now()
    normalized, digest = _suppression_key(email)
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


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything stored is UTC
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


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
        created = _aware(sub.created_at)
        assert created is not None
        by_subscriber.setdefault(sub.subscriber_id, []).append(
            Subscription(
                list_id=sub.list_id,
                list_slug=slug,
                list_name=list_name,
                status=SubscriptionStatus(sub.status),
                created_at=created,
                confirmed_at=_aware(sub.confirmed_at),
                unsubscribed_at=_aware(sub.unsubscribed_at),
            )
        )
    result = []
    for row in rows:
        created = _aware(row.created_at)
        assert created is not None
        result.append(
            Subscriber(
                id=row.id,
                uid=row.uid,
                email=row.email,
                email_normalized=row.email_normalized,
                name=row.name,
                attributes=dict(row.attributes or {}),
                source=row.source,
                created_at=created,
                confirmed_at=_aware(row.confirmed_at),
                subscriptions=tuple(by_subscriber.get(row.id, ())),
            )
        )
    return result
