"""The scheduler's memory of which editor notices it already sent (one email per skip)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from newsletter.store.schema import scheduler_notices


def claim_notice(
    engine: Engine,
    *,
    list_slug: str,
    issue_slug: str,
    due_at: datetime,
    reason: str,
    now: datetime,
) -> bool:
    """Record that the editor is told about this skip; False if they already were.

    The unique key does the deduplication, so two runs racing past the lock still only claim
    the notice once.
    """
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(scheduler_notices).values(
                    list_slug=list_slug,
                    issue_slug=issue_slug,
                    due_at=due_at,
                    reason=reason,
                    created_at=now,
                )
            )
    except IntegrityError:
        return False
    return True


def forget_notice(
    engine: Engine, *, list_slug: str, issue_slug: str, due_at: datetime, reason: str
) -> None:
    """Undo a claim whose email could not be sent, so the next run tries again."""
    with engine.begin() as conn:
        conn.execute(
            scheduler_notices.delete().where(
                scheduler_notices.c.list_slug == list_slug,
                scheduler_notices.c.issue_slug == issue_slug,
                scheduler_notices.c.due_at == due_at,
                scheduler_notices.c.reason == reason,
            )
        )


def notices_for(engine: Engine, list_slug: str) -> list[tuple[str, str]]:
    """``(issue_slug, reason)`` pairs already reported for a list, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(scheduler_notices.c.issue_slug, scheduler_notices.c.reason)
            .where(scheduler_notices.c.list_slug == list_slug)
            .order_by(scheduler_notices.c.id)
        )
        return [(row.issue_slug, row.reason) for row in rows]
