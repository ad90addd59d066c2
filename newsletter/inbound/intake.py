"""The one intake: every report, whichever way it came in, is parsed, decided and applied here.

``newsletter inbound`` (SMTP), ``newsletter bounces import`` (Maildir, mbox, .eml, IMAP) and the
provider webhooks all call :meth:`Intake.take` (bytes) or :meth:`Intake.take_report` (a
:class:`Report` a webhook built). Parsing (:mod:`reports`) and the decision (:mod:`policy`) are
pure; the store (:mod:`newsletter.store.events`) applies it in the caller's transaction or one
of its own. The same report twice counts once: its digest is stored, and a repeat does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine

from newsletter.config import Settings
from newsletter.inbound.mailto import MailOutcome, MailRequest, unsubscribe_request
from newsletter.inbound.model import Report, ReportKind
from newsletter.inbound.policy import decide, linked_deliveries
from newsletter.inbound.reports import parse_report
from newsletter.inbound.verp import DeliveryTokens
from newsletter.states import EventSource, ReportOutcome
from newsletter.store.events import Applied, SoftPolicy, apply_decision, delivery_facts

Clock = Callable[[], datetime]

#: Reports applied per transaction by :meth:`Intake.take_many` (an import of a big Maildir).
BATCH = 500


class Intake:
    """Takes reports into the store under the publication's keys and ``[bounces]`` policy."""

    def __init__(self, settings: Settings, engine: Engine, *, clock: Clock | None = None) -> None:
        self.engine = engine
        self.keys = settings.token_keys
        self.tokens = DeliveryTokens(settings.token_keys)
        self.soft = SoftPolicy(settings.bounces.soft_limit, settings.bounces.soft_days)
        self.clock = clock or (lambda: datetime.now(UTC))

    def take(
        self,
        data: bytes,
        source: EventSource,
        *,
        envelope_recipient: str | None = None,
        conn: Connection | None = None,
    ) -> Applied:
        """Parse and apply one inbound message."""
        report = parse_report(data, envelope_recipient=envelope_recipient)
        return self.take_report(report, source, raw=data, conn=conn)

    def take_report(
        self,
        report: Report,
        source: EventSource,
        *,
        raw: bytes | None = None,
        conn: Connection | None = None,
    ) -> Applied:
        """Apply a parsed report (or one a webhook built) in ``conn``'s transaction, or its own."""
        if conn is None:
            with self.engine.begin() as own:
                return self._apply(own, report, source, raw)
        return self._apply(conn, report, source, raw)

    def take_many(
        self,
        items: Iterable[tuple[bytes, str | None]],
        source: EventSource,
        *,
        batch: int = BATCH,
    ) -> Iterator[Applied]:
        """Apply ``(bytes, envelope recipient)`` items, ``batch`` per transaction, in order."""
        pending: list[tuple[Report, bytes]] = []

        def flush() -> list[Applied]:
            with self.engine.begin() as conn:
                return [self._apply(conn, report, source, raw) for report, raw in pending]

        for data, recipient in items:
            pending.append((parse_report(data, envelope_recipient=recipient), data))
            if len(pending) >= batch:
                yield from flush()
                pending = []
        if pending:
            yield from flush()

    def _apply(
        self, conn: Connection, report: Report, source: EventSource, raw: bytes | None
    ) -> Applied:
        now = self.clock()
        if report.kind is ReportKind.UNSUBSCRIBE:
            return _unsubscribed(
                unsubscribe_request(conn, self.keys, report, source=source, now=now, raw=raw)
            )
        refs = linked_deliveries(report, self.tokens)
        facts = delivery_facts(conn, refs)
        decision = decide(report, facts)
        return apply_decision(
            conn, report, decision, facts, source=source, now=now, soft=self.soft, raw=raw
        )


def _unsubscribed(outcome: MailOutcome) -> Applied:
    if outcome.result is MailRequest.INVALID:
        return Applied(ReportOutcome.REVIEW, reason=outcome.result.value)
    return Applied(ReportOutcome.APPLIED, email=outcome.email, reason=outcome.result.value)
