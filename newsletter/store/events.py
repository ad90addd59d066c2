"""The events store: inbound reports, the delivery events they carry, and what they change.

Writing: :func:`delivery_facts` looks up the rows a report's verified tokens name,
:func:`apply_decision` stores the report once (its digest is unique: a repeat is a no-op) with
the event and applies :mod:`newsletter.inbound.policy`'s decision: the ledger row's late outcome
(``sent`` then ``bounced``), the suppression list, the soft-bounce count. Every function takes a
:class:`~sqlalchemy.Connection` whose transaction the caller owns.

Reading (``newsletter status``, ``bounces list``, ``subscribers show``, the editor's report and
issue 14's dashboard): :func:`issue_feedback` (counts per issue), :func:`subscriber_events`
(a person's events), :func:`list_events` (recent events, by issue), :func:`weekly_counts`
(events per week), :func:`review_reports` (what could not be linked).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, delete, func, select, update

from newsletter.inbound.model import Report, Severity
from newsletter.inbound.policy import COUNTED_CLASS, Decision, DeliveryFacts, Effect
from newsletter.inbound.verp import DeliveryRef
from newsletter.states import (
    DeliveryStatus,
    EventKind,
    EventSource,
    ReportOutcome,
    SubscriptionStatus,
    SuppressionReason,
)
from newsletter.store.schema import (
    deliveries,
    delivery_events,
    inbound_reports,
    issues,
    lists,
    subscribers,
    subscriptions,
    suppressions,
)
from newsletter.store.subscribers import dialect_insert

__all__ = [
    "RAW_LIMIT",
    "Applied",
    "EventRow",
    "IssueFeedback",
    "ReviewRow",
    "SoftPolicy",
    "WeekCounts",
    "apply_decision",
    "apply_decisions",
    "delivery_facts",
    "issue_feedback",
    "list_events",
    "prune_raw",
    "record_report",
    "review_reports",
    "subscriber_events",
    "weekly_counts",
]

#: Raw reports are kept up to this many bytes (what the parser reads, too).
RAW_LIMIT = 512 * 1024
_TEXT_LIMIT = 1000


@dataclass(frozen=True)
class SoftPolicy:
    """``[bounces] soft_limit`` soft bounces within ``soft_days`` suppress the address."""

    limit: int = 3
    days: float = 30.0


@dataclass(frozen=True)
class Applied:
    """What storing one report did."""

    outcome: ReportOutcome | None
    effect: Effect | None = None
    ref: DeliveryRef | None = None
    #: the subscriber's address, when the report was linked to one
    email: str | None = None
    #: the address went on the suppression list because of this report
    suppressed: bool = False
    #: it counted under the policy (the first of its class for the delivery)
    counted: bool = False
    reason: str | None = None

    @property
    def duplicate(self) -> bool:
        """The same report was stored before: nothing was done again."""
        return self.outcome is None


def _chunks(values: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def delivery_facts(
    conn: Connection, refs: Iterable[DeliveryRef]
) -> dict[DeliveryRef, DeliveryFacts]:
    """The ledger rows ``refs`` name that exist, with their subscriber's address and list."""
    wanted = set(refs)
    if not wanted:
        return {}
    d = deliveries.c
    found: dict[DeliveryRef, DeliveryFacts] = {}
    issue_ids = sorted({r.issue_id for r in wanted})
    for chunk in _chunks(sorted({r.subscriber_id for r in wanted})):
        rows = conn.execute(
            select(
                d.issue_id,
                d.subscriber_id,
                d.status,
                subscribers.c.email_normalized,
                issues.c.list_id,
            )
            .join(subscribers, subscribers.c.id == d.subscriber_id)
            .join(issues, issues.c.id == d.issue_id)
            .where(d.subscriber_id.in_(chunk), d.issue_id.in_(issue_ids))
        )
        for row in rows:
            ref = DeliveryRef(row.issue_id, row.subscriber_id)
            if ref in wanted:
                found[ref] = DeliveryFacts(
                    ref, row.email_normalized, row.list_id, DeliveryStatus(row.status)
                )
    return found


def _report_row(
    report: Report,
    *,
    source: EventSource,
    outcome: ReportOutcome,
    now: datetime,
    raw: bytes | None,
    reason: str | None,
) -> dict[str, Any]:
    return {
        "received_at": now,
        "source": source.value,
        "kind": report.kind.value,
        "detector": report.detector.value,
        "digest": report.digest,
        "message_id": _clip(report.message_id, 300),
        "outcome": outcome.value,
        "reason": _clip(reason),
        "raw": raw[:RAW_LIMIT] if raw is not None else None,
        "raw_size": len(raw) if raw is not None else 0,
    }


def _insert_reports(conn: Connection, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Insert report rows, skipping digests stored already; digest -> id of those inserted."""
    if not rows:
        return {}
    result = conn.execute(
        dialect_insert(conn, inbound_reports)
        .on_conflict_do_nothing(index_elements=["digest"])
        .returning(inbound_reports.c.id, inbound_reports.c.digest),
        list(rows),
    )
    return {digest: int(report_id) for report_id, digest in result}


def record_report(
    conn: Connection,
    report: Report,
    *,
    source: EventSource,
    outcome: ReportOutcome,
    now: datetime,
    raw: bytes | None = None,
    reason: str | None = None,
) -> int | None:
    """Store the report once; its id, or None when a report with its digest is stored already."""
    row = _report_row(report, source=source, outcome=outcome, now=now, raw=raw, reason=reason)
    return _insert_reports(conn, [row]).get(report.digest)


def apply_decision(
    conn: Connection,
    report: Report,
    decision: Decision,
    facts: Mapping[DeliveryRef, DeliveryFacts],
    *,
    source: EventSource,
    now: datetime,
    soft: SoftPolicy,
    raw: bytes | None = None,
) -> Applied:
    """Store ``report`` and carry out ``decision`` (idempotent: a stored digest does nothing)."""
    (applied,) = apply_decisions(
        conn, [(report, decision, raw)], facts, source=source, now=now, soft=soft
    )
    return applied


def _outcome(effect: Effect) -> ReportOutcome:
    if effect is Effect.REVIEW:
        return ReportOutcome.REVIEW
    if effect is Effect.RECORD:
        return ReportOutcome.RECORDED
    return ReportOutcome.APPLIED


def apply_decisions(
    conn: Connection,
    items: Sequence[tuple[Report, Decision, bytes | None]],
    facts: Mapping[DeliveryRef, DeliveryFacts],
    *,
    source: EventSource,
    now: datetime,
    soft: SoftPolicy,
) -> list[Applied]:
    """Store reports and carry out their decisions, in order, in a few statements per batch.

    The same as applying them one by one: a digest stored already (or earlier in the batch)
    does nothing; the first event of its class for a delivery is the counted one; a soft
    bounce that reaches the limit suppresses, counting the ones earlier in the batch.
    """
    rows: list[dict[str, Any] | None] = []
    seen: set[str] = set()
    for report, decision, raw in items:
        if report.digest in seen:
            rows.append(None)
            continue
        seen.add(report.digest)
        effect = decision.effect
        reason = decision.reason if effect in (Effect.REVIEW, Effect.RECORD) else effect.value
        rows.append(
            _report_row(
                report, source=source, outcome=_outcome(effect), now=now, raw=raw, reason=reason
            )
        )
    ids = _insert_reports(conn, [row for row in rows if row is not None])

    acting = [
        (index, report, decision, facts[decision.ref])
        for index, (report, decision, _) in enumerate(items)
        if report.digest in ids
        and rows[index] is not None
        and decision.effect is not Effect.REVIEW
        and decision.kind is not None
        and decision.ref is not None
        and decision.ref in facts
    ]
    subscriber_ids = sorted({row.ref.subscriber_id for _, _, _, row in acting})
    counted_before = _counted_classes(conn, subscriber_ids)
    suppressed = _suppressed_emails(conn, sorted({row.email for _, _, _, row in acting}))
    window = now - timedelta(days=soft.days)
    soft_counts = _soft_counts(conn, subscriber_ids, window)

    results: dict[int, Applied] = {}
    events: list[dict[str, Any]] = []
    ledger: list[dict[str, Any]] = []
    suppress_rows: list[tuple[str, SuppressionReason, str | None, int]] = []
    for index, report, decision, row in acting:
        effect = decision.effect
        group = COUNTED_CLASS.get(effect)
        key = (row.ref.issue_id, row.ref.subscriber_id, group)
        counted = group is not None and key not in counted_before
        if counted:
            counted_before.add(key)
        recipient = decision.recipient
        status = recipient.status if recipient is not None else None
        diagnostic = recipient.diagnostic if recipient is not None else None
        what: str | None = None
        now_suppressed = False

        def suppress_for(
            reason: SuppressionReason, detail: str | None, row: DeliveryFacts = row
        ) -> bool:
            if row.email in suppressed:
                return False
            suppressed.add(row.email)
            suppress_rows.append((row.email, reason, detail, row.ref.subscriber_id))
            return True

        if effect is Effect.HARD_BOUNCE:
            ledger.append(_ledger_row(row.ref, DeliveryStatus.BOUNCED, status, diagnostic))
            detail = " ".join(p for p in (status, diagnostic) if p) or None
            now_suppressed = suppress_for(SuppressionReason.BOUNCED, detail)
            what = "suppressed" if now_suppressed else "ledger"
        elif effect is Effect.COMPLAINT:
            now_suppressed = suppress_for(SuppressionReason.COMPLAINED, "feedback-loop complaint")
            what = "suppressed" if now_suppressed else None
        elif effect is Effect.SOFT_BOUNCE:
            # a delay changes nothing in the ledger: the relay is still trying
            ledger.append(_ledger_row(row.ref, DeliveryStatus.FAILED, status, diagnostic))
            what = "ledger"
        if counted and group == "soft":
            total = soft_counts.get(row.ref.subscriber_id, 0) + 1
            soft_counts[row.ref.subscriber_id] = total
            if total >= soft.limit and suppress_for(
                SuppressionReason.BOUNCED, f"{soft.limit} soft bounces within {soft.days:g} days"
            ):
                now_suppressed = True
                what = "suppressed"
        severity = decision.severity
        events.append(
            {
                "report_id": ids[report.digest],
                "occurred_at": now,
                "source": source.value,
                "kind": decision.kind.value,  # type: ignore[union-attr]
                "severity": severity.value if severity is not None else None,
                "issue_id": row.ref.issue_id,
                "subscriber_id": row.ref.subscriber_id,
                "list_id": row.list_id,
                "status": _clip(status, 20),
                "diagnostic": _clip(diagnostic),
                "reporter": _clip(report.reporter, 200),
                "feedback_type": report.feedback_type.value if report.feedback_type else None,
                "counted": counted,
                "effect": what,
            }
        )
        results[index] = Applied(
            _outcome(effect),
            effect,
            row.ref,
            email=row.email,
            suppressed=now_suppressed,
            counted=counted,
            reason=decision.reason,
        )
    if events:
        conn.execute(delivery_events.insert(), events)
    if ledger:
        _write_late_outcomes(conn, ledger, now)
    if suppress_rows:
        _suppress_many(conn, suppress_rows, now)

    out: list[Applied] = []
    for index, (report, decision, _) in enumerate(items):
        if index in results:
            out.append(results[index])
        elif rows[index] is None or report.digest not in ids:
            out.append(Applied(None, reason="already received"))
        else:
            out.append(
                Applied(
                    _outcome(decision.effect), decision.effect, decision.ref, reason=decision.reason
                )
            )
    return out


def record_unsubscribe(
    conn: Connection,
    report: Report,
    *,
    subscriber_id: int | None,
    list_id: int | None,
    changed: bool,
    source: EventSource,
    now: datetime,
    raw: bytes | None = None,
    issue_id: int | None = None,
) -> int | None:
    """Store a ``mailto:`` unsubscribe request and its event; None when stored already.

    ``issue_id`` is the issue the unsubscribe is attributed to, when analytics found one."""
    outcome = ReportOutcome.APPLIED if subscriber_id is not None else ReportOutcome.REVIEW
    reason = None if subscriber_id is not None else "the unsubscribe token does not verify"
    report_id = record_report(
        conn, report, source=source, outcome=outcome, now=now, raw=raw, reason=reason
    )
    if report_id is not None and subscriber_id is not None:
        conn.execute(
            delivery_events.insert().values(
                report_id=report_id,
                occurred_at=now,
                source=source.value,
                kind=EventKind.UNSUBSCRIBE.value,
                subscriber_id=subscriber_id,
                issue_id=issue_id,
                list_id=list_id,
                counted=False,
                effect="unsubscribed" if changed else None,
            )
        )
    return report_id


def _class_of(kind: str, severity: str | None) -> str | None:
    if severity == Severity.SOFT.value:
        return "soft"
    if kind == EventKind.BOUNCE.value and severity == Severity.HARD.value:
        return "hard"
    if kind == EventKind.COMPLAINT.value:
        return "complaint"
    return None


def _counted_classes(
    conn: Connection, subscriber_ids: Sequence[int]
) -> set[tuple[int, int, str | None]]:
    """(issue, subscriber, class) of every counted event of these subscribers."""
    e = delivery_events.c
    found: set[tuple[int, int, str | None]] = set()
    for chunk in _chunks(subscriber_ids):
        rows = conn.execute(
            select(e.issue_id, e.subscriber_id, e.kind, e.severity).where(
                e.subscriber_id.in_(chunk), e.counted.is_(True)
            )
        )
        for issue_id, subscriber_id, kind, severity in rows:
            found.add((issue_id, subscriber_id, _class_of(kind, severity)))
    return found


def _soft_counts(
    conn: Connection, subscriber_ids: Sequence[int], since: datetime
) -> dict[int, int]:
    e = delivery_events.c
    counts: dict[int, int] = {}
    for chunk in _chunks(subscriber_ids):
        rows = conn.execute(
            select(e.subscriber_id, func.count())
            .where(
                e.subscriber_id.in_(chunk),
                e.severity == Severity.SOFT.value,
                e.counted.is_(True),
                e.occurred_at >= since,
            )
            .group_by(e.subscriber_id)
        )
        counts.update({int(sid): int(n) for sid, n in rows})
    return counts


def _suppressed_emails(conn: Connection, emails: Sequence[str]) -> set[str]:
    from newsletter.addresses import email_hash

    by_hash = {email_hash(email): email for email in emails}
    found: set[str] = set()
    for chunk in _chunks(sorted(by_hash)):
        rows = conn.execute(
            select(suppressions.c.email_hash).where(suppressions.c.email_hash.in_(chunk))
        )
        found.update(by_hash[digest] for (digest,) in rows)
    return found


def _ledger_row(
    ref: DeliveryRef, status: DeliveryStatus, code: str | None, diagnostic: str | None
) -> dict[str, Any]:
    said = " ".join(p for p in (code, diagnostic) if p)
    return {
        "iid": ref.issue_id,
        "sid": ref.subscriber_id,
        "st": status.value,
        "reply": _clip("late: " + said if said else "late report"),
    }


def _write_late_outcomes(conn: Connection, rows: Sequence[dict[str, Any]], now: datetime) -> None:
    """The ledger rows learn how their delivery ended; ``sent_at`` stays as the record of the
    send. A row already bounced stays bounced (a soft failure after a hard one changes nothing).

    A report about a message proves the relay accepted it: a row whose acceptance the sender
    has not written yet (a fast relay's DSN can come back within the sender's group commit)
    gets its ``sent_at`` now, and the sender's later write leaves the late outcome alone.
    """
    d = deliveries.c
    conn.execute(
        update(deliveries)
        .where(
            d.issue_id == bindparam("iid"),
            d.subscriber_id == bindparam("sid"),
            d.status != DeliveryStatus.BOUNCED.value,
        )
        .values(
            status=bindparam("st"),
            last_reply=bindparam("reply"),
            updated_at=now,
            sent_at=func.coalesce(d.sent_at, now),
            lease_owner=None,
            lease_expires_at=None,
        ),
        list(rows),
    )


def _suppress_many(
    conn: Connection,
    rows: Sequence[tuple[str, SuppressionReason, str | None, int]],
    now: datetime,
) -> None:
    """Suppress addresses and end every subscription of theirs (as ``suppress`` does, batched)."""
    from newsletter.addresses import suppression_key

    values = []
    for email, reason, detail, _ in rows:
        normalized, digest = suppression_key(email)
        values.append(
            {
                "email_hash": digest,
                "email": normalized,
                "reason": reason.value,
                "detail": _clip(detail),
                "created_at": now,
            }
        )
    conn.execute(
        dialect_insert(conn, suppressions).on_conflict_do_nothing(index_elements=["email_hash"]),
        values,
    )
    ids = sorted({subscriber_id for *_, subscriber_id in rows})
    for chunk in _chunks(ids):
        conn.execute(
            update(subscriptions)
            .where(
                subscriptions.c.subscriber_id.in_(chunk),
                subscriptions.c.status != SubscriptionStatus.UNSUBSCRIBED.value,
            )
            .values(status=SubscriptionStatus.UNSUBSCRIBED.value, unsubscribed_at=now)
        )


def _clip(value: str | None, limit: int = _TEXT_LIMIT) -> str | None:
    if value is None:
        return None
    if not value.isprintable():
        value = "".join(ch if ch.isprintable() else " " for ch in value)
    return value[:limit]


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssueFeedback:
    """What came back about one issue's deliveries: people counted once per class."""

    issue_id: int
    sent: int
    hard: int = 0
    soft: int = 0
    complaints: int = 0
    auto_replies: int = 0
    unmatched: int = 0

    def rate(self, count: int) -> float:
        return count / self.sent if self.sent else 0.0

    @property
    def hard_rate(self) -> float:
        return self.rate(self.hard)

    @property
    def soft_rate(self) -> float:
        return self.rate(self.soft)

    @property
    def complaint_rate(self) -> float:
        return self.rate(self.complaints)


def issue_feedback(conn: Connection, issue_id: int) -> IssueFeedback:
    """Hard and soft bounces, complaints and auto-replies of one issue, people counted once.

    Hard bounces are the ledger's ``bounced`` rows: refused during the session (5xx) or
    reported later (a DSN, a webhook), one per person. Soft ones are the people with a soft
    event (a late soft bounce or a delay) or a row whose last reply was a 4xx (deferred, or
    given up after the retries).
    """
    e = delivery_events.c
    d = deliveries.c
    sent, hard = conn.execute(
        select(
            func.count(case((d.sent_at.is_not(None) | (d.status == DeliveryStatus.SENT.value), 1))),
            func.count(case((d.status == DeliveryStatus.BOUNCED.value, 1))),
        ).where(d.issue_id == issue_id)
    ).one()
    soft_events = select(e.subscriber_id).where(e.issue_id == issue_id, _soft())
    # deferred on a 4xx (still to be retried) or given up after the retries
    soft_rows = select(d.subscriber_id).where(
        d.issue_id == issue_id,
        d.status != DeliveryStatus.BOUNCED.value,
        d.last_code >= 400,
        d.last_code < 500,
    )
    soft = conn.execute(
        select(func.count()).select_from(soft_events.union(soft_rows).subquery())
    ).scalar_one()
    complaints, auto = conn.execute(
        select(
            func.count(func.distinct(case((e.kind == EventKind.COMPLAINT.value, e.subscriber_id)))),
            func.count(
                func.distinct(case((e.kind == EventKind.AUTO_REPLY.value, e.subscriber_id)))
            ),
        ).where(e.issue_id == issue_id)
    ).one()
    return IssueFeedback(issue_id, int(sent), int(hard), int(soft), int(complaints), int(auto))


def _hard() -> Any:
    e = delivery_events.c
    return and_(e.kind == EventKind.BOUNCE.value, e.severity == Severity.HARD.value)


def _soft() -> Any:
    return delivery_events.c.severity == Severity.SOFT.value


@dataclass(frozen=True)
class EventRow:
    """One event as ``bounces list`` and ``subscribers show`` print it."""

    id: int
    occurred_at: datetime
    source: EventSource
    kind: EventKind
    severity: Severity | None
    email: str | None
    issue_slug: str | None
    list_slug: str | None
    status: str | None
    diagnostic: str | None
    reporter: str | None
    feedback_type: str | None
    counted: bool
    effect: str | None
    report_id: int
    extra: Mapping[str, Any] = field(default_factory=dict)


def _event_query() -> Any:
    e = delivery_events.c
    return (
        select(
            e.id,
            e.occurred_at,
            e.source,
            e.kind,
            e.severity,
            subscribers.c.email,
            issues.c.slug.label("issue_slug"),
            lists.c.slug.label("list_slug"),
            e.status,
            e.diagnostic,
            e.reporter,
            e.feedback_type,
            e.counted,
            e.effect,
            e.report_id,
        )
        .select_from(delivery_events)
        .outerjoin(subscribers, subscribers.c.id == e.subscriber_id)
        .outerjoin(issues, issues.c.id == e.issue_id)
        .outerjoin(lists, lists.c.id == e.list_id)
    )


def _event(row: Any) -> EventRow:
    return EventRow(
        id=row.id,
        occurred_at=row.occurred_at,
        source=EventSource(row.source),
        kind=EventKind(row.kind),
        severity=Severity(row.severity) if row.severity else None,
        email=row.email,
        issue_slug=row.issue_slug,
        list_slug=row.list_slug,
        status=row.status,
        diagnostic=row.diagnostic,
        reporter=row.reporter,
        feedback_type=row.feedback_type,
        counted=bool(row.counted),
        effect=row.effect,
        report_id=row.report_id,
    )


def subscriber_events(conn: Connection, subscriber_id: int, *, limit: int = 100) -> list[EventRow]:
    """A person's events, newest first."""
    e = delivery_events.c
    stmt = _event_query().where(e.subscriber_id == subscriber_id)
    rows = conn.execute(stmt.order_by(e.occurred_at.desc(), e.id.desc()).limit(limit))
    return [_event(row) for row in rows]


def list_events(
    conn: Connection,
    *,
    since: datetime | None = None,
    issue_ids: Iterable[int] | None = None,
    kinds: Iterable[EventKind] | None = None,
    limit: int = 200,
) -> list[EventRow]:
    """Events newest first, optionally since a time, for some issues, of some kinds."""
    e = delivery_events.c
    stmt = _event_query()
    if since is not None:
        stmt = stmt.where(e.occurred_at >= since)
    if issue_ids is not None:
        stmt = stmt.where(e.issue_id.in_(list(issue_ids)))
    if kinds is not None:
        stmt = stmt.where(e.kind.in_([k.value for k in kinds]))
    rows = conn.execute(stmt.order_by(e.occurred_at.desc(), e.id.desc()).limit(limit))
    return [_event(row) for row in rows]


@dataclass(frozen=True)
class WeekCounts:
    """Events of one ISO week (Monday 00:00 UTC), by kind and severity."""

    week: datetime
    counts: Mapping[str, int]


def weekly_counts(conn: Connection, *, since: datetime) -> list[WeekCounts]:
    """Counts per week since ``since``: ``hard``, ``soft``, ``complaint``, ``auto-reply``,
    ``unsubscribe`` ... (a bounce is keyed by its severity), oldest week first."""
    e = delivery_events.c
    rows = conn.execute(select(e.occurred_at, e.kind, e.severity).where(e.occurred_at >= since))
    weeks: dict[datetime, dict[str, int]] = {}
    for occurred, kind, severity in rows:
        day = occurred.replace(hour=0, minute=0, second=0, microsecond=0)
        monday = day - timedelta(days=day.weekday())
        key = severity if kind in (EventKind.BOUNCE.value, EventKind.DELAY.value) else kind
        bucket = weeks.setdefault(monday, {})
        bucket[key] = bucket.get(key, 0) + 1
    return [WeekCounts(week, counts) for week, counts in sorted(weeks.items())]


@dataclass(frozen=True)
class ReviewRow:
    """A report the intake could not link to a delivery, or found ambiguous."""

    id: int
    received_at: datetime
    source: EventSource
    kind: str
    reason: str | None
    message_id: str | None
    raw_size: int


def review_reports(
    conn: Connection, *, since: datetime | None = None, limit: int = 100
) -> list[ReviewRow]:
    """Reports waiting for a person, newest first."""
    r = inbound_reports.c
    stmt = select(r.id, r.received_at, r.source, r.kind, r.reason, r.message_id, r.raw_size).where(
        r.outcome == ReportOutcome.REVIEW.value
    )
    if since is not None:
        stmt = stmt.where(r.received_at >= since)
    rows = conn.execute(stmt.order_by(r.received_at.desc(), r.id.desc()).limit(limit))
    return [
        ReviewRow(
            row.id,
            row.received_at,
            EventSource(row.source),
            row.kind,
            row.reason,
            row.message_id,
            row.raw_size,
        )
        for row in rows
    ]


def raw_report(conn: Connection, report_id: int) -> bytes | None:
    """The stored bytes of a report (None once pruned, or for a webhook event stored without)."""
    value = conn.execute(
        select(inbound_reports.c.raw).where(inbound_reports.c.id == report_id)
    ).scalar_one_or_none()
    return None if value is None else bytes(value)


def prune_raw(conn: Connection, *, before: datetime) -> int:
    """Drop the raw bytes of reports received before ``before`` (the rows and events stay)."""
    r = inbound_reports.c
    result = conn.execute(
        update(inbound_reports).where(r.received_at < before, r.raw.is_not(None)).values(raw=None)
    )
    return int(result.rowcount or 0)


def delete_reports(conn: Connection, ids: Iterable[int]) -> int:
    """Remove reviewed reports (and their events) for good."""
    result = conn.execute(delete(inbound_reports).where(inbound_reports.c.id.in_(list(ids))))
    return int(result.rowcount or 0)
