"""What analytics keeps (docs/analytics.md): tracked links, hits, totals, attributed unsubscribes.

A send records what it counts (:func:`record_tracking`) in the transaction that creates its
issue row. The redirect's buffer hands hits over in batches (:func:`record_hits`): raw rows go
to ``hits`` and the totals to ``link_counts``/``issue_counts`` in one transaction, so the
totals are exactly the sum of every batch written, and they outlive the raw rows
(:func:`prune_hits`). Nothing here ties a hit to a person unless the send counted per
subscriber.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, func, select, tuple_
from sqlalchemy.exc import SQLAlchemyError

from newsletter.errors import StoreError
from newsletter.links import Link
from newsletter.states import DeliveryStatus, EventKind, HitKind
from newsletter.store.schema import (
    deliveries,
    delivery_events,
    hits,
    issue_counts,
    issue_links,
    issue_tracking,
    issue_unsubscribes,
    issues,
    link_counts,
    subscribers,
    subscriptions,
)
from newsletter.store.subscribers import dialect_insert

#: An unsubscribe counts against an issue when it comes this soon after the copy was sent.
ATTRIBUTION_WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class Tracking:
    """What one send counts, as decided when it began."""

    clicks: bool = False
    clicks_in_text: bool = False
    opens: bool = False
    per_subscriber: bool = False

    @property
    def anything(self) -> bool:
        return self.clicks or self.opens


@dataclass(frozen=True)
class Hit:
    """One click or open as the redirect saw it, before it is written."""

    issue_id: int
    kind: HitKind
    position: int | None
    at: datetime
    # the recipient, only when the send counted per subscriber
    subscriber_uid: str | None = None
    # why it is not a person: head, scanner, burst (None: a reader, as far as we can tell)
    automated: str | None = None


# --- when a send begins -----------------------------------------------------------------------


def record_tracking(
    conn: Connection, issue_id: int, tracking: Tracking, links: Sequence[Link], *, now: datetime
) -> None:
    """Store what the send counts and its numbered links (inside the issue's transaction)."""
    conn.execute(
        issue_tracking.insert().values(
            issue_id=issue_id,
            clicks=tracking.clicks,
            clicks_in_text=tracking.clicks_in_text,
            opens=tracking.opens,
            per_subscriber=tracking.per_subscriber,
            created_at=now,
        )
    )
    if links:
        conn.execute(
            issue_links.insert(),
            [
                {
                    "issue_id": issue_id,
                    "position": link.position,
                    "part": link.part,
                    "url": link.url,
                    "label": link.label,
                }
                for link in links
            ],
        )


def load_tracking(engine: Engine, issue_id: int) -> tuple[Tracking, list[Link]]:
    """What the send of ``issue_id`` counts and its links (nothing for an untracked send)."""
    with engine.connect() as conn:
        row = conn.execute(
            select(issue_tracking).where(issue_tracking.c.issue_id == issue_id)
        ).first()
        if row is None:
            return Tracking(), []
        links = [
            Link(r.position, r.part, r.url, r.label)
            for r in conn.execute(
                select(issue_links)
                .where(issue_links.c.issue_id == issue_id)
                .order_by(issue_links.c.position)
            )
        ]
    tracking = Tracking(
        clicks=row.clicks,
        clicks_in_text=row.clicks_in_text,
        opens=row.opens,
        per_subscriber=row.per_subscriber,
    )
    return tracking, links


# --- hits -------------------------------------------------------------------------------------


def record_hits(engine: Engine, batch: Sequence[Hit], *, scanner_window: timedelta) -> None:
    """Write a batch of hits and add them to the totals, in one transaction.

    With a subscriber: a hit within ``scanner_window`` of that recipient's delivery is a
    mail-security scanner's (it fetched the links as the message arrived); unique counts go
    up for a recipient's first human click on a link (and first on the issue) and first open.
    """
    if not batch:
        return
    try:
        with engine.begin() as conn:
            _record(conn, batch, scanner_window)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot record clicks: {exc}") from exc


def _record(conn: Connection, batch: Sequence[Hit], scanner_window: timedelta) -> None:
    uids = {h.subscriber_uid for h in batch if h.subscriber_uid}
    ids: dict[str, int] = {}
    if uids:
        ids = {
            r.uid: r.id
            for r in conn.execute(
                select(subscribers.c.uid, subscribers.c.id).where(subscribers.c.uid.in_(uids))
            )
        }
    rows: list[dict[str, Any]] = []
    for index, hit in enumerate(batch):
        rows.append(
            {
                "_row": index,
                "issue_id": hit.issue_id,
                "kind": hit.kind.value,
                "position": hit.position,
                "subscriber_id": ids.get(hit.subscriber_uid or ""),
                "automated": hit.automated is not None,
                "reason": hit.automated,
                "at": hit.at,
            }
        )
    known = [r for r in rows if r["subscriber_id"] is not None]
    if known:
        _mark_early(conn, known, scanner_window)
    firsts = _firsts(conn, [r for r in known if not r["automated"]])
    conn.execute(hits.insert(), [{k: v for k, v in r.items() if k != "_row"} for r in rows])

    per_link: dict[tuple[int, int], list[int]] = {}
    per_issue: dict[int, list[int]] = {}
    for index, r in enumerate(rows):
        first_link, first_issue = firsts.get(index, (False, False))
        if r["kind"] == HitKind.CLICK.value:
            t = per_link.setdefault((r["issue_id"], r["position"]), [0, 0, 0])
            t[1 if r["automated"] else 0] += 1
            t[2] += first_link
            per_issue.setdefault(r["issue_id"], [0, 0, 0, 0])[3] += first_issue
        else:
            t = per_issue.setdefault(r["issue_id"], [0, 0, 0, 0])
            t[1 if r["automated"] else 0] += 1
            t[2] += first_link
    for (issue_id, position), (human, automated, unique) in per_link.items():
        stmt = dialect_insert(conn, link_counts).values(
            issue_id=issue_id,
            position=position,
            clicks=human,
            automated=automated,
            unique_clicks=unique,
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["issue_id", "position"],
                set_={
                    "clicks": link_counts.c.clicks + human,
                    "automated": link_counts.c.automated + automated,
                    "unique_clicks": link_counts.c.unique_clicks + unique,
                },
            )
        )
    for issue_id, (opens, automated, unique_opens, clickers) in per_issue.items():
        stmt = dialect_insert(conn, issue_counts).values(
            issue_id=issue_id,
            opens=opens,
            opens_automated=automated,
            unique_opens=unique_opens,
            unique_clickers=clickers,
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["issue_id"],
                set_={
                    "opens": issue_counts.c.opens + opens,
                    "opens_automated": issue_counts.c.opens_automated + automated,
                    "unique_opens": issue_counts.c.unique_opens + unique_opens,
                    "unique_clickers": issue_counts.c.unique_clickers + clickers,
                },
            )
        )


def _mark_early(conn: Connection, rows: list[dict[str, Any]], window: timedelta) -> None:
    """Hits this soon after the recipient's copy was accepted are a scanner's, not theirs."""
    pairs = {(r["issue_id"], r["subscriber_id"]) for r in rows}
    sent = {
        (r.issue_id, r.subscriber_id): r.sent_at
        for r in conn.execute(
            select(deliveries.c.issue_id, deliveries.c.subscriber_id, deliveries.c.sent_at).where(
                tuple_(deliveries.c.issue_id, deliveries.c.subscriber_id).in_(pairs),
                deliveries.c.status == DeliveryStatus.SENT.value,
            )
        )
    }
    for r in rows:
        when = sent.get((r["issue_id"], r["subscriber_id"]))
        if not r["automated"] and when is not None and r["at"] - when < window:
            r["automated"] = True
            r["reason"] = "early"


def _firsts(conn: Connection, rows: list[dict[str, Any]]) -> dict[int, tuple[bool, bool]]:
    """Index in the batch -> (first human hit of this recipient on this link or on the open
    pixel, first human click of this recipient on the issue), for hits with a subscriber."""
    if not rows:
        return {}
    pairs = {(r["issue_id"], r["subscriber_id"]) for r in rows}
    seen_link: set[tuple[int, int, str, int | None]] = set()
    seen_issue: set[tuple[int, int]] = set()
    for old in conn.execute(
        select(hits.c.issue_id, hits.c.subscriber_id, hits.c.kind, hits.c.position)
        .where(
            tuple_(hits.c.issue_id, hits.c.subscriber_id).in_(pairs),
            hits.c.automated.is_(False),
        )
        .distinct()
    ):
        seen_link.add((old.issue_id, old.subscriber_id, old.kind, old.position))
        if old.kind == HitKind.CLICK.value:
            seen_issue.add((old.issue_id, old.subscriber_id))
    result: dict[int, tuple[bool, bool]] = {}
    for r in rows:
        key = (r["issue_id"], r["subscriber_id"], r["kind"], r["position"])
        first_link = key not in seen_link
        seen_link.add(key)
        first_issue = False
        if r["kind"] == HitKind.CLICK.value:
            pair = (r["issue_id"], r["subscriber_id"])
            first_issue = pair not in seen_issue
            seen_issue.add(pair)
        result[r["_row"]] = (first_link, first_issue)
    return result


def prune_hits(engine: Engine, *, now: datetime, retention_days: int) -> int:
    """Delete raw hits older than ``retention_days``; the totals stay. Returns rows deleted."""
    cutoff = now - timedelta(days=retention_days)
    try:
        with engine.begin() as conn:
            return int(conn.execute(delete(hits).where(hits.c.at < cutoff)).rowcount or 0)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot delete old clicks: {exc}") from exc


# --- unsubscribes -----------------------------------------------------------------------------


def attribute_unsubscribe(
    conn: Connection,
    *,
    subscriber_id: int,
    subscriber_uid: str,
    list_id: int,
    issued_at: int,
    now: datetime,
) -> int | None:
    """Count an unsubscribe against the issue whose copy carried the link; that issue's id.

    The token says who, which list and when it was signed. A delivery signs it just before
    the copy goes out, so the issue is the one of that list whose copy to this person was
    accepted at or after the signing time, in a send that had begun by then. Links from
    anything else (a confirmation, a test copy) match no send. Only unsubscribes within
    :data:`ATTRIBUTION_WINDOW` of the copy count; one per person and issue.
    """
    signed = datetime.fromtimestamp(issued_at, tz=now.tzinfo)
    # the token has whole seconds; the rows full precision
    row = conn.execute(
        select(issues.c.id, deliveries.c.sent_at)
        .join(deliveries, deliveries.c.issue_id == issues.c.id)
        .where(
            issues.c.list_id == list_id,
            deliveries.c.subscriber_id == subscriber_id,
            deliveries.c.status == DeliveryStatus.SENT.value,
            issues.c.created_at < signed + timedelta(seconds=1),
            deliveries.c.sent_at >= signed,
        )
        .order_by(deliveries.c.sent_at)
        .limit(1)
    ).first()
    if row is None or now - row.sent_at > ATTRIBUTION_WINDOW:
        return None
    conn.execute(
        dialect_insert(conn, issue_unsubscribes)
        .values(issue_id=row.id, subscriber_uid=subscriber_uid, at=now)
        .on_conflict_do_nothing(index_elements=["issue_id", "subscriber_uid"])
    )
    return int(row.id)


# --- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkCount:
    position: int
    part: str
    url: str
    label: str
    clicks: int = 0
    automated: int = 0
    unique_clicks: int = 0


@dataclass(frozen=True)
class Engagement:
    """An issue's totals, as the report shows them."""

    tracking: Tracking
    links: tuple[LinkCount, ...] = ()
    opens: int = 0
    opens_automated: int = 0
    unique_opens: int = 0
    unique_clickers: int = 0
    unsubscribes: int = 0


def engagement(conn: Connection, issue_id: int) -> Engagement:
    row = conn.execute(select(issue_tracking).where(issue_tracking.c.issue_id == issue_id)).first()
    tracking = (
        Tracking(row.clicks, row.clicks_in_text, row.opens, row.per_subscriber)
        if row is not None
        else Tracking()
    )
    lk, c = issue_links.c, link_counts.c
    links = tuple(
        LinkCount(
            r.position,
            r.part,
            r.url,
            r.label,
            int(r.clicks or 0),
            int(r.automated or 0),
            int(r.unique_clicks or 0),
        )
        for r in conn.execute(
            select(lk.position, lk.part, lk.url, lk.label, c.clicks, c.automated, c.unique_clicks)
            .select_from(
                issue_links.outerjoin(
                    link_counts, and_(c.issue_id == lk.issue_id, c.position == lk.position)
                )
            )
            .where(lk.issue_id == issue_id)
            .order_by(lk.position)
        )
    )
    totals = conn.execute(select(issue_counts).where(issue_counts.c.issue_id == issue_id)).first()
    unsubscribes = conn.execute(
        select(func.count())
        .select_from(issue_unsubscribes)
        .where(issue_unsubscribes.c.issue_id == issue_id)
    ).scalar_one()
    return Engagement(
        tracking=tracking,
        links=links,
        opens=totals.opens if totals else 0,
        opens_automated=totals.opens_automated if totals else 0,
        unique_opens=totals.unique_opens if totals else 0,
        unique_clickers=totals.unique_clickers if totals else 0,
        unsubscribes=int(unsubscribes),
    )


def subscriber_hits(conn: Connection, subscriber_id: int, *, limit: int = 200) -> list[Any]:
    """A person's recorded clicks and opens, newest first (per-subscriber sends only)."""
    return list(
        conn.execute(
            select(
                hits.c.at,
                hits.c.kind,
                hits.c.automated,
                issues.c.slug,
                issue_links.c.label,
                issue_links.c.url,
            )
            .select_from(
                hits.join(issues, issues.c.id == hits.c.issue_id).outerjoin(
                    issue_links,
                    and_(
                        issue_links.c.issue_id == hits.c.issue_id,
                        issue_links.c.position == hits.c.position,
                    ),
                )
            )
            .where(hits.c.subscriber_id == subscriber_id)
            .order_by(hits.c.at.desc())
            .limit(limit)
        )
    )


def link_targets(engine: Engine, issue_id: int) -> tuple[bool, dict[int, str]] | None:
    """(per subscriber?, position -> URL) of a tracked send; None when there is no such send."""
    with engine.connect() as conn:
        row = conn.execute(
            select(issue_tracking.c.per_subscriber).where(issue_tracking.c.issue_id == issue_id)
        ).first()
        if row is None:
            return None
        targets = {
            r.position: r.url
            for r in conn.execute(
                select(issue_links.c.position, issue_links.c.url).where(
                    issue_links.c.issue_id == issue_id
                )
            )
        }
    return bool(row.per_subscriber), targets


# --- bounces and complaints of an issue -------------------------------------------------------
#
# From issue 11's events store (newsletter.store.events): hard bounces are the ledger's bounced
# rows (refused in the session or reported later), soft ones the people with a soft event or a
# row given up on a 4xx, complaints the people whose complaint was linked to this send.


@dataclass(frozen=True)
class IssueEvents:
    hard_bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0


def issue_events(conn: Connection, issue_id: int) -> IssueEvents:
    """Hard and soft bounces and complaints of one send."""
    from newsletter.store.events import issue_feedback

    found = issue_feedback(conn, issue_id)
    return IssueEvents(
        hard_bounces=found.hard, soft_bounces=found.soft, complaints=found.complaints
    )


def delivery_times(conn: Connection, issue_id: int) -> list[datetime]:
    """When each accepted copy of the send went out, oldest first."""
    return list(
        conn.execute(
            select(deliveries.c.sent_at)
            .where(deliveries.c.issue_id == issue_id, deliveries.c.sent_at.is_not(None))
            .order_by(deliveries.c.sent_at)
        ).scalars()
    )


def list_events(conn: Connection, list_id: int, since: datetime) -> dict[str, list[datetime]]:
    """When people joined, confirmed, left, bounced and complained on one list since ``since``.

    Bounces are the list's sends' bounced copies (in the session or reported later),
    complaints the complaints linked to the list's sends.
    """
    s = subscriptions.c

    def times(column: Any, *where: Any) -> list[datetime]:
        return [
            t
            for t in conn.execute(
                select(column).where(s.list_id == list_id, column >= since, *where)
            ).scalars()
            if t is not None
        ]

    bounced = list(
        conn.execute(
            select(deliveries.c.updated_at)
            .join(issues, issues.c.id == deliveries.c.issue_id)
            .where(
                issues.c.list_id == list_id,
                deliveries.c.status == DeliveryStatus.BOUNCED.value,
                deliveries.c.updated_at >= since,
            )
        ).scalars()
    )
    # a complaint is about one send, so it is the list of that send's (the events store)
    complained = list(
        conn.execute(
            select(delivery_events.c.occurred_at).where(
                delivery_events.c.list_id == list_id,
                delivery_events.c.kind == EventKind.COMPLAINT.value,
                delivery_events.c.occurred_at >= since,
            )
        ).scalars()
    )
    return {
        "joined": times(s.created_at),
        "confirmed": times(s.confirmed_at),
        "left": times(s.unsubscribed_at),
        "bounced": bounced,
        "complained": complained,
    }
