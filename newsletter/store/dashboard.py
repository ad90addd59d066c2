"""The reads the editors' dashboard makes: sends and their progress, people and their history.

Every function takes the lists the editor may see (None: all), so a page can only show what
its editor's account covers, whatever id or slug the URL names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, or_, select

from newsletter.states import DeliveryStatus, SendStatus
from newsletter.store.schema import (
    deliveries,
    issue_unsubscribes,
    issues,
    lists,
    subscribers,
    subscriptions,
)


@dataclass(frozen=True)
class Send:
    """One issue's send to one list, with its ledger counts."""

    id: int
    slug: str
    list_slug: str
    title: str
    status: SendStatus
    started_at: datetime
    finished_at: datetime | None
    counts: dict[DeliveryStatus, int]

    @property
    def recipients(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        return (
            self.recipients
            - self.counts[DeliveryStatus.PENDING]
            - self.counts[DeliveryStatus.SENDING]
        )

    def as_progress(self) -> dict[str, Any]:
        """What the live progress stream says about the send."""
        return {
            "id": self.id,
            "status": self.status.value,
            "recipients": self.recipients,
            "done": self.done,
            **{status.value: n for status, n in self.counts.items()},
        }


def _visible(column: Any, allowed: Sequence[str] | None) -> Any:
    return True if allowed is None else column.in_(list(allowed))


def sends(
    conn: Connection,
    allowed: Sequence[str] | None,
    *,
    limit: int = 50,
    open_only: bool = False,
) -> list[Send]:
    """The newest sends the editor may see (only unfinished ones with ``open_only``)."""
    query = (
        select(
            issues.c.id,
            issues.c.slug,
            lists.c.slug.label("list_slug"),
            issues.c.title,
            issues.c.status,
            issues.c.created_at,
            issues.c.finished_at,
        )
        .join(lists, lists.c.id == issues.c.list_id)
        .where(_visible(lists.c.slug, allowed))
        .order_by(issues.c.created_at.desc(), issues.c.id.desc())
        .limit(limit)
    )
    if open_only:
        query = query.where(issues.c.status != SendStatus.FINISHED.value)
    rows = list(conn.execute(query))
    counts: dict[int, dict[DeliveryStatus, int]] = {
        r.id: dict.fromkeys(DeliveryStatus, 0) for r in rows
    }
    if rows:
        for issue_id, status, n in conn.execute(
            select(deliveries.c.issue_id, deliveries.c.status, func.count())
            .where(deliveries.c.issue_id.in_(list(counts)))
            .group_by(deliveries.c.issue_id, deliveries.c.status)
        ):
            counts[issue_id][DeliveryStatus(status)] = int(n)
    return [
        Send(
            id=r.id,
            slug=r.slug,
            list_slug=r.list_slug,
            title=r.title,
            status=SendStatus(r.status),
            started_at=r.created_at,
            finished_at=r.finished_at,
            counts=counts[r.id],
        )
        for r in rows
    ]


def visible_lists(conn: Connection, allowed: Sequence[str] | None) -> list[tuple[int, str, str]]:
    """(id, slug, name) of the lists the editor may see."""
    return [
        (r.id, r.slug, r.name)
        for r in conn.execute(
            select(lists.c.id, lists.c.slug, lists.c.name)
            .where(_visible(lists.c.slug, allowed))
            .order_by(lists.c.slug)
        )
    ]


def _on_visible_list(allowed: Sequence[str] | None) -> Any:
    if allowed is None:
        return True
    return (
        select(subscriptions.c.subscriber_id)
        .join(lists, lists.c.id == subscriptions.c.list_id)
        .where(subscriptions.c.subscriber_id == subscribers.c.id, lists.c.slug.in_(list(allowed)))
        .exists()
    )


def find_people(
    conn: Connection, query: str, allowed: Sequence[str] | None, *, limit: int = 50
) -> list[tuple[str, str, str | None]]:
    """(uid, email, name) of people whose address or name contains ``query``."""
    needle = query.strip().lower()
    if not needle:
        return []
    pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = conn.execute(
        select(subscribers.c.uid, subscribers.c.email, subscribers.c.name)
        .where(
            or_(
                subscribers.c.email_normalized.like(pattern, escape="\\"),
                func.lower(subscribers.c.name).like(pattern, escape="\\"),
            ),
            _on_visible_list(allowed),
        )
        .order_by(subscribers.c.email_normalized)
        .limit(limit)
    )
    return [(r.uid, r.email, r.name) for r in rows]


def may_see_person(conn: Connection, subscriber_id: int, allowed: Sequence[str] | None) -> bool:
    return bool(
        conn.execute(
            select(subscribers.c.id).where(
                subscribers.c.id == subscriber_id, _on_visible_list(allowed)
            )
        ).first()
    )


def person_deliveries(
    conn: Connection, subscriber_id: int, allowed: Sequence[str] | None, *, limit: int = 100
) -> list[Any]:
    """The person's copies of the sends the editor may see, newest first."""
    return list(
        conn.execute(
            select(
                issues.c.slug,
                issues.c.title,
                lists.c.slug.label("list_slug"),
                deliveries.c.status,
                deliveries.c.attempts,
                deliveries.c.last_code,
                deliveries.c.last_reply,
                deliveries.c.sent_at,
                deliveries.c.updated_at,
            )
            .join(issues, issues.c.id == deliveries.c.issue_id)
            .join(lists, lists.c.id == issues.c.list_id)
            .where(deliveries.c.subscriber_id == subscriber_id, _visible(lists.c.slug, allowed))
            .order_by(deliveries.c.updated_at.desc())
            .limit(limit)
        )
    )


def person_unsubscribes(conn: Connection, uid: str) -> list[Any]:
    """Which issue's link each of the person's unsubscribes came through."""
    return list(
        conn.execute(
            select(issue_unsubscribes.c.at, issues.c.slug, lists.c.slug.label("list_slug"))
            .join(issues, issues.c.id == issue_unsubscribes.c.issue_id)
            .join(lists, lists.c.id == issues.c.list_id)
            .where(issue_unsubscribes.c.subscriber_uid == uid)
            .order_by(issue_unsubscribes.c.at.desc())
        )
    )
