"""The one intake: every report, whichever way it came in, is parsed, decided and applied here.

``newsletter inbound`` (SMTP), ``newsletter bounces import`` (Maildir, mbox, .eml, IMAP) and the
provider webhooks all call :meth:`Intake.take` (bytes) or :meth:`Intake.take_report` (a
:class:`Report` a webhook built). Parsing (:mod:`reports`) and the decision (:mod:`policy`) are
pure; the store (:mod:`newsletter.store.events`) applies it in the caller's transaction or one
of its own. The same report twice counts once: its digest is stored, and a repeat does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from newsletter.config import Settings
from newsletter.errors import StoreError
from newsletter.inbound.mailto import MailOutcome, MailRequest, unsubscribe_request
from newsletter.inbound.model import Report, ReportKind
from newsletter.inbound.policy import decide, linked_deliveries
from newsletter.inbound.reports import parse_report
from newsletter.inbound.verp import DeliveryRef, DeliveryTokens
from newsletter.states import EventSource, ReportOutcome
from newsletter.store.events import Applied, SoftPolicy, apply_decisions, delivery_facts

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
        try:
            if conn is None:
                with self.engine.begin() as own:
                    return self._apply(own, report, source, raw)
            return self._apply(conn, report, source, raw)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot store the report: {exc}") from exc

    def take_many(
        self,
        items: Iterable[tuple[bytes, str | None]],
        source: EventSource,
        *,
        batch: int = BATCH,
        workers: int = 1,
    ) -> Iterator[Applied]:
        """Apply ``(bytes, envelope recipient)`` items, ``batch`` per transaction, in order.

        With ``workers`` > 1 the parsing (pure, and most of the cost) runs in that many
        processes while this one writes to the store.
        """
        pool = ProcessPoolExecutor(workers) if workers > 1 else None
        try:
            chunk: list[tuple[bytes, str | None]] = []
            for item in items:
                chunk.append(item)
                if len(chunk) >= batch:
                    yield from self._take_chunk(chunk, source, pool)
                    chunk = []
            if chunk:
                yield from self._take_chunk(chunk, source, pool)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    def _take_chunk(
        self,
        chunk: Sequence[tuple[bytes, str | None]],
        source: EventSource,
        pool: ProcessPoolExecutor | None,
    ) -> list[Applied]:
        if pool is None:
            reports = [_parse(item) for item in chunk]
        else:
            reports = list(pool.map(_parse, chunk, chunksize=max(1, len(chunk) // 16)))
        with self.engine.begin() as conn:
            return self._apply_many(
                conn,
                [(report, data) for report, (data, _) in zip(reports, chunk, strict=True)],
                source,
            )

    def _apply(
        self, conn: Connection, report: Report, source: EventSource, raw: bytes | None
    ) -> Applied:
        (applied,) = self._apply_many(conn, [(report, raw)], source)
        return applied

    def _apply_many(
        self,
        conn: Connection,
        items: Sequence[tuple[Report, bytes | None]],
        source: EventSource,
    ) -> list[Applied]:
        """Decide and apply ``items`` in ``conn``'s transaction, a few statements in all."""
        now = self.clock()
        results: dict[int, Applied] = {}
        linked: list[tuple[int, Report, bytes | None, tuple[DeliveryRef, ...]]] = []
        for index, (report, raw) in enumerate(items):
            if report.kind is ReportKind.UNSUBSCRIBE:
                outcome = unsubscribe_request(
                    conn, self.keys, report, source=source, now=now, raw=raw
                )
                results[index] = _unsubscribed(outcome)
            else:
                linked.append((index, report, raw, linked_deliveries(report, self.tokens)))
        facts = delivery_facts(conn, (ref for *_, refs in linked for ref in refs))
        decided = [
            (report, decide(report, {r: facts[r] for r in refs if r in facts}), raw)
            for _, report, raw, refs in linked
        ]
        applied = apply_decisions(conn, decided, facts, source=source, now=now, soft=self.soft)
        for (index, *_), result in zip(linked, applied, strict=True):
            results[index] = result
        return [results[index] for index in range(len(items))]


def _parse(item: tuple[bytes, str | None]) -> Report:
    # module level: what a worker process runs
    return parse_report(item[0], envelope_recipient=item[1])


def _unsubscribed(outcome: MailOutcome) -> Applied:
    if outcome.result is MailRequest.INVALID:
        return Applied(ReportOutcome.REVIEW, reason=outcome.result.value)
    return Applied(ReportOutcome.APPLIED, email=outcome.email, reason=outcome.result.value)
