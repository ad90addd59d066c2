"""How an issue did: the numbers ``newsletter report`` prints and the dashboard draws.

:func:`issue_report` reads one send from the store into an :class:`IssueReport`;
:meth:`IssueReport.as_json` is the stable shape ``--json`` prints (keys documented in
docs/analytics.md). Rates are judged against the thresholds mailbox providers publish:
complaints at 0.1 % of delivered mail are a warning and at 0.3 % an alarm (Gmail and Yahoo
sender rules); hard bounces at 2 % of attempted mail are a warning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

# the providers' thresholds live with the bounce policy: one place for every report
from newsletter.inbound.policy import COMPLAINT_ALARM as COMPLAINT_ALARM
from newsletter.inbound.policy import COMPLAINT_WARN as COMPLAINT_WARN
from newsletter.inbound.policy import HARD_WARN
from newsletter.inbound.policy import Level as Level
from newsletter.states import DeliveryStatus
from newsletter.store.analytics import (
    ATTRIBUTION_WINDOW,
    Engagement,
    IssueEvents,
    Tracking,
    delivery_times,
    engagement,
    issue_events,
    list_events,
)
from newsletter.store.issues import IssueRef
from newsletter.store.ledger import SqlLedger
from newsletter.store.schema import issues

OPENS_NOTE = (
    "Opens are an estimate: Apple Mail Privacy Protection and image proxies (Gmail, Outlook) "
    "fetch the pixel for readers who never open, and clients that block images never do."
)
HARD_BOUNCE_WARN = HARD_WARN
GROWTH_KINDS = ("joined", "confirmed", "left", "bounced", "complained")


def complaint_level(rate: float | None) -> Level:
    if rate is None or rate < COMPLAINT_WARN:
        return Level.OK
    return Level.ALARM if rate >= COMPLAINT_ALARM else Level.WARN


def bounce_level(rate: float | None) -> Level:
    return Level.WARN if rate is not None and rate >= HARD_BOUNCE_WARN else Level.OK


@dataclass(frozen=True)
class LinkReport:
    position: int
    label: str
    url: str
    part: str
    clicks: int
    automated: int
    # distinct recipients; None when the send was not counted per subscriber
    unique: int | None


@dataclass(frozen=True)
class IssueReport:
    slug: str
    list_slug: str
    title: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    counts: Mapping[DeliveryStatus, int]
    events: IssueEvents
    engagement: Engagement
    sent_times: Sequence[datetime] = ()

    @property
    def tracking(self) -> Tracking:
        return self.engagement.tracking

    @property
    def recipients(self) -> int:
        return sum(self.counts.values())

    @property
    def delivered(self) -> int:
        return self.counts.get(DeliveryStatus.SENT, 0)

    @property
    def attempted(self) -> int:
        c = self.counts
        return (
            c.get(DeliveryStatus.SENT, 0)
            + c.get(DeliveryStatus.BOUNCED, 0)
            + c.get(DeliveryStatus.FAILED, 0)
        )

    @property
    def pending(self) -> int:
        return self.counts.get(DeliveryStatus.PENDING, 0) + self.counts.get(
            DeliveryStatus.SENDING, 0
        )

    @property
    def hard_bounce_rate(self) -> float | None:
        return _ratio(self.events.hard_bounces, self.attempted)

    @property
    def complaint_rate(self) -> float | None:
        return _ratio(self.events.complaints, self.delivered)

    @property
    def unsubscribe_rate(self) -> float | None:
        return _ratio(self.engagement.unsubscribes, self.delivered)

    @property
    def links(self) -> list[LinkReport]:
        per = self.tracking.per_subscriber
        return [
            LinkReport(
                position=link.position,
                label=link.label,
                url=link.url,
                part=link.part,
                clicks=link.clicks,
                automated=link.automated,
                unique=link.unique_clicks if per else None,
            )
            for link in self.engagement.links
        ]

    @property
    def clicks(self) -> int:
        return sum(link.clicks for link in self.engagement.links)

    @property
    def clicks_automated(self) -> int:
        return sum(link.automated for link in self.engagement.links)

    @property
    def unique_clickers(self) -> int | None:
        return self.engagement.unique_clickers if self.tracking.per_subscriber else None

    @property
    def click_through_basis(self) -> str | None:
        """What the click-through rate counts: distinct recipients, or clicks (an upper bound)."""
        if not self.tracking.clicks:
            return None
        return "unique_recipients" if self.tracking.per_subscriber else "clicks"

    @property
    def click_through_rate(self) -> float | None:
        basis = self.click_through_basis
        if basis is None:
            return None
        clicked = self.engagement.unique_clickers if basis == "unique_recipients" else self.clicks
        return _ratio(clicked, self.delivered)

    def deliveries_per_bucket(self, buckets: int = 24) -> list[tuple[datetime, int]]:
        """Accepted copies over the send's span, in at most ``buckets`` equal steps."""
        return time_buckets(self.sent_times, buckets)

    def as_json(self) -> dict[str, Any]:
        """The stable ``--json`` shape (docs/analytics.md names every key)."""
        e, g = self.events, self.engagement
        return {
            "issue": self.slug,
            "list": self.list_slug,
            "title": self.title,
            "status": self.status,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "recipients": self.recipients,
            "delivered": self.delivered,
            "pending": self.pending,
            "failed": self.counts.get(DeliveryStatus.FAILED, 0),
            "hard_bounces": e.hard_bounces,
            "soft_bounces": e.soft_bounces,
            "complaints": e.complaints,
            "hard_bounce_rate": self.hard_bounce_rate,
            "hard_bounce_level": bounce_level(self.hard_bounce_rate).value,
            "complaint_rate": self.complaint_rate,
            "complaint_level": complaint_level(self.complaint_rate).value,
            "unsubscribes": g.unsubscribes,
            "unsubscribe_window_days": ATTRIBUTION_WINDOW.days,
            "unsubscribe_rate": self.unsubscribe_rate,
            "tracking": {
                "clicks": self.tracking.clicks,
                "clicks_in_text": self.tracking.clicks_in_text,
                "opens": self.tracking.opens,
                "per_subscriber": self.tracking.per_subscriber,
            },
            "clicks": {
                "total": self.clicks if self.tracking.clicks else None,
                "unique_recipients": self.unique_clickers,
                "automated": self.clicks_automated if self.tracking.clicks else None,
                "click_through_rate": self.click_through_rate,
                "click_through_basis": self.click_through_basis,
            },
            "links": [
                {
                    "position": link.position,
                    "text": link.label,
                    "url": link.url,
                    "part": link.part,
                    "clicks": link.clicks,
                    "unique": link.unique,
                    "automated": link.automated,
                }
                for link in self.links
            ],
            "opens": {
                "estimate": True,
                "total": g.opens if self.tracking.opens else None,
                "unique_recipients": g.unique_opens
                if self.tracking.opens and self.tracking.per_subscriber
                else None,
                "automated": g.opens_automated if self.tracking.opens else None,
                "note": OPENS_NOTE,
            },
        }


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def time_buckets(times: Sequence[datetime], buckets: int) -> list[tuple[datetime, int]]:
    """``times`` (sorted) counted in at most ``buckets`` equal steps from the first to the last."""
    if not times:
        return []
    first, last = times[0], times[-1]
    span = (last - first).total_seconds()
    if span <= 0:
        return [(first, len(times))]
    # whole seconds, minutes or hours per step read better on an axis than 37.3 s
    step = max(1.0, span / buckets)
    for nice in (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 21600, 86400):
        if step <= nice:
            step = float(nice)
            break
    count = int(span // step) + 1
    counts = [0] * count
    for t in times:
        counts[min(count - 1, int((t - first).total_seconds() // step))] += 1
    return [(first + timedelta(seconds=i * step), n) for i, n in enumerate(counts)]


def issue_report(engine: Engine, ref: IssueRef) -> IssueReport:
    """Everything the store knows about how the send ``ref`` did."""
    counts = SqlLedger(engine).counts(ref)
    with engine.connect() as conn:
        row = conn.execute(
            select(issues.c.created_at, issues.c.finished_at, issues.c.status).where(
                issues.c.id == ref.id
            )
        ).one()
        return IssueReport(
            slug=ref.slug,
            list_slug=ref.list_slug,
            title=ref.title,
            status=row.status,
            started_at=row.created_at,
            finished_at=row.finished_at,
            counts=counts,
            events=issue_events(conn, ref.id),
            engagement=engagement(conn, ref.id),
            sent_times=delivery_times(conn, ref.id),
        )


@dataclass(frozen=True)
class Week:
    start: date
    counts: Mapping[str, int]


def list_growth(
    engine: Engine, list_id: int, *, weeks: int, today: date, timezone: str
) -> list[Week]:
    """The last ``weeks`` weeks (Monday to Sunday in ``timezone``), oldest first."""
    zone = ZoneInfo(timezone)
    monday = today - timedelta(days=today.weekday())
    first = monday - timedelta(weeks=weeks - 1)
    since = datetime.combine(first, datetime.min.time(), tzinfo=zone)
    with engine.connect() as conn:
        found = list_events(conn, list_id, since)
    table = {first + timedelta(weeks=i): dict.fromkeys(GROWTH_KINDS, 0) for i in range(weeks)}
    for kind, times in found.items():
        for t in times:
            day = t.astimezone(zone).date()
            start = day - timedelta(days=day.weekday())
            if start in table:
                table[start][kind] += 1
    return [Week(start, counts) for start, counts in sorted(table.items())]
