"""The ``issues`` table: one row per issue sent (or being sent) to a list, with its bodies.

A send records the subject and both bodies once, when it begins, so a resumed send, a worker
on another machine and the public archive all see what the first recipient got. Reading a
row gives a light :class:`IssueRef`; the bodies (tens of kilobytes) are loaded on demand with
:func:`load_bodies`, so a worker polling every few seconds does not reread them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import Connection, Engine, Select, func, literal, select, update
from sqlalchemy.exc import SQLAlchemyError

from newsletter.errors import StoreError
from newsletter.states import DeliveryStatus, SendStatus
from newsletter.store.schema import deliveries, issues, lists, subscriptions
from newsletter.store.subscribers import deliverable, dialect_insert

# Every send state means subscribers already hold the email and its "view in browser" link.
ARCHIVED_STATES = tuple(state.value for state in SendStatus)


@dataclass(frozen=True)
class IssueRef:
    """An ``issues`` row without its bodies: what a send is about."""

    id: int
    slug: str
    list_id: int
    list_slug: str
    status: SendStatus
    title: str = ""
    issue_date: date | None = None


@dataclass(frozen=True)
class IssueBodies:
    """What a send delivers, as recorded when it began (a :class:`message.MessageContent`)."""

    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class SentIssue:
    """An issue as the archive lists it; ``html`` is empty unless asked for."""

    slug: str
    list_slug: str
    list_name: str
    title: str
    subject: str
    issue_date: datetime
    sent_at: datetime
    html: str = ""
    authors: tuple[str, ...] = ()
    preheader: str = ""


_REF_COLUMNS = (
    issues.c.id,
    issues.c.slug,
    issues.c.list_id,
    lists.c.slug.label("list_slug"),
    issues.c.status,
    issues.c.title,
    issues.c.issue_date,
)


def _refs() -> Select[Any]:
    return select(*_REF_COLUMNS).join(lists, lists.c.id == issues.c.list_id)


def _ref(row: Any) -> IssueRef:
    return IssueRef(
        id=row.id,
        slug=row.slug,
        list_id=row.list_id,
        list_slug=row.list_slug,
        status=SendStatus(row.status),
        title=row.title,
        issue_date=row.issue_date.date(),
    )


def find_issue(engine: Engine, slug: str, list_slug: str) -> IssueRef | None:
    """The send of ``slug`` to ``list_slug``, if one began."""
    with engine.connect() as conn:
        return _find(conn, slug, list_slug)


def _find(conn: Connection, slug: str, list_slug: str) -> IssueRef | None:
    row = conn.execute(_refs().where(issues.c.slug == slug, lists.c.slug == list_slug)).first()
    return None if row is None else _ref(row)


def send_started(engine: Engine, slug: str, list_slug: str) -> bool:
    """True when delivery has recorded this issue for this list (a send began)."""
    return find_issue(engine, slug, list_slug) is not None


def open_issues(engine: Engine) -> list[IssueRef]:
    """Sends that began and did not finish (what workers pick up), oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            _refs()
            .where(issues.c.status != SendStatus.FINISHED.value)
            .order_by(issues.c.created_at)
        )
        return [_ref(row) for row in rows]


def issues_by_slug(engine: Engine, slug: str) -> list[IssueRef]:
    """Every list's send of ``slug``."""
    with engine.connect() as conn:
        return [_ref(row) for row in conn.execute(_refs().where(issues.c.slug == slug))]


def load_bodies(engine: Engine, ref: IssueRef) -> IssueBodies:
    """The subject and bodies recorded when the send of ``ref`` began."""
    with engine.connect() as conn:
        row = conn.execute(
            select(issues.c.subject, issues.c.html, issues.c.text).where(issues.c.id == ref.id)
        ).first()
    if row is None:
        raise StoreError(f"issue {ref.slug!r} ({ref.list_slug}) is no longer in the store")
    return IssueBodies(subject=row.subject, html=row.html, text=row.text)


def set_status(engine: Engine, ref: IssueRef, status: SendStatus) -> None:
    with engine.begin() as conn:
        conn.execute(update(issues).where(issues.c.id == ref.id).values(status=status.value))


def start_issue(
    engine: Engine,
    *,
    slug: str,
    list_id: int,
    list_slug: str,
    title: str,
    subject: str,
    issue_date: date,
    html: str,
    text: str,
    now: datetime,
    authors: Sequence[str] = (),
    preheader: str = "",
    on_create: Callable[[Connection, int], None] | None = None,
) -> tuple[IssueRef, int | None]:
    """Record the issue and create its ledger rows, once; ``(issue, rows created)``.

    ``on_create(conn, issue_id)`` runs in the same transaction when the row is new (the
    send's link table is written there, so the two never disagree).

    The ``issues`` row and every recipient's delivery row are written in one transaction,
    the rows by one ``INSERT ... SELECT`` over confirmed, non-suppressed subscribers. When
    the issue exists already, nothing changes and the count is None: a rerun resumes the
    send it began and does not pick up people who subscribed since.
    """
    when = datetime.combine(issue_date, time(0), tzinfo=UTC)
    try:
        with engine.begin() as conn:
            created = conn.execute(
                dialect_insert(conn, issues)
                .values(
                    slug=slug,
                    list_id=list_id,
                    title=title,
                    subject=subject,
                    issue_date=when,
                    status=SendStatus.SENDING.value,
                    html=html,
                    text=text,
                    created_at=now,
                    authors=list(authors),
                    preheader=preheader or None,
                )
                .on_conflict_do_nothing(index_elements=["slug", "list_id"])
                .returning(issues.c.id)
            ).scalar_one_or_none()
            count: int | None = None
            if created is not None:
                count = _create_deliveries(conn, created, list_id, now)
                if on_create is not None:
                    on_create(conn, created)
            ref = _find(conn, slug, list_slug)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot record issue {slug!r}: {exc}") from exc
    assert ref is not None
    return ref, count


def _create_deliveries(conn: Connection, issue_id: int, list_id: int, now: datetime) -> int:
    recipients = deliverable(
        conn,
        list_id,
        literal(issue_id),
        subscriptions.c.subscriber_id,
        literal(DeliveryStatus.PENDING.value),
        literal(0),
        literal(now, type_=deliveries.c.next_attempt_at.type),
        literal(now, type_=deliveries.c.created_at.type),
        literal(now, type_=deliveries.c.updated_at.type),
    )
    stmt = (
        dialect_insert(conn, deliveries)
        .from_select(
            [
                "issue_id",
                "subscriber_id",
                "status",
                "attempts",
                "next_attempt_at",
                "created_at",
                "updated_at",
            ],
            recipients,
        )
        .on_conflict_do_nothing(index_elements=["issue_id", "subscriber_id"])
    )
    conn.execute(stmt)
    # the issue row is new in this transaction, so every row it has was just created
    # (rowcount of INSERT ... SELECT is not reliable across drivers)
    return int(
        conn.execute(
            select(func.count()).select_from(deliveries).where(deliveries.c.issue_id == issue_id)
        ).scalar_one()
    )


# --- the archive ------------------------------------------------------------------------------


def _archived(*, with_html: bool) -> Select[Any]:
    i, lst = issues, lists
    columns = [
        i.c.slug,
        lst.c.slug.label("list_slug"),
        lst.c.name.label("list_name"),
        i.c.title,
        i.c.subject,
        i.c.issue_date,
        i.c.created_at,
        i.c.finished_at,
        i.c.authors,
        i.c.preheader,
    ]
    if with_html:
        columns.append(i.c.html)
    return (
        select(*columns)
        .select_from(i.join(lst, i.c.list_id == lst.c.id))
        .where(i.c.status.in_(ARCHIVED_STATES))
        .order_by(i.c.issue_date.desc(), i.c.created_at.desc(), i.c.id.desc())
    )


def _sent(row: Any, *, with_html: bool) -> SentIssue:
    return SentIssue(
        slug=row.slug,
        list_slug=row.list_slug,
        list_name=row.list_name,
        title=row.title,
        subject=row.subject,
        issue_date=row.issue_date,
        sent_at=row.finished_at or row.created_at,
        html=row.html if with_html else "",
        authors=tuple(str(a) for a in row.authors or ()),
        preheader=row.preheader or "",
    )


def sent_issues(
    engine: Engine,
    *,
    list_slug: str | None = None,
    limit: int | None = None,
    with_html: bool = False,
) -> list[SentIssue]:
    """Issues subscribers already hold, newest first (optionally one list's, at most ``limit``)."""
    query = _archived(with_html=with_html)
    if list_slug is not None:
        query = query.where(lists.c.slug == list_slug)
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [_sent(row, with_html=with_html) for row in conn.execute(query)]


def sent_copies(engine: Engine, slug: str, list_slug: str | None = None) -> Sequence[SentIssue]:
    """Every list's sent copy of ``slug`` (one list's with ``list_slug``), with its HTML."""
    query = _archived(with_html=True).where(issues.c.slug == slug)
    if list_slug is not None:
        query = query.where(lists.c.slug == list_slug)
    with engine.connect() as conn:
        return [_sent(row, with_html=True) for row in conn.execute(query)]


def previous_issue(conn: Connection, ref: IssueRef) -> IssueRef | None:
    """The send to the same list that began before ``ref`` (the editor's report compares them)."""
    row = conn.execute(
        _refs()
        .where(issues.c.list_id == ref.list_id, issues.c.id != ref.id)
        .where(
            issues.c.created_at
            <= select(issues.c.created_at).where(issues.c.id == ref.id).scalar_subquery()
        )
        .order_by(issues.c.created_at.desc(), issues.c.id.desc())
        .limit(1)
    ).first()
    return None if row is None else _ref(row)
