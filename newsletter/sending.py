"""The send use-cases: wire an issue file, the store, the SMTP pool and the delivery engine.

:func:`run_send` is what ``newsletter send``, the scheduler and the demo call; the worker
(:mod:`newsletter.worker`) shares :func:`pool_for` and :func:`report_for`. The engine itself
(:mod:`newsletter.delivery`) knows none of this; progress reaches whoever shows it through a
:class:`Progress` handed in, so nothing here draws on a terminal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine

from newsletter.config import MailingList, Settings
from newsletter.delivery import Clock, DeliveryEngine, DeliveryRun, Policy, Transport
from newsletter.dkim_signers import IssueSigner
from newsletter.errors import QuotaReachedError
from newsletter.joins import JoinLinks, join_names, placeholders
from newsletter.message import MessageContent, MessageTemplate, feedback_id
from newsletter.states import DeliveryStatus, SendStatus
from newsletter.store.analytics import load_tracking, record_tracking
from newsletter.store.issues import IssueRef, find_issue, load_bodies, set_status, start_issue
from newsletter.store.ledger import Failure, SqlLedger
from newsletter.tracking import (
    links_for,
    reader_placeholders,
    reader_values,
    tracked_content,
    tracking_for,
)
from newsletter.transport import SmtpPool


class Progress(Protocol):
    """Whoever shows a send's progress (the CLI's progress bar)."""

    def start(self, counts: Mapping[DeliveryStatus, int]) -> None:
        """The send begins; ``counts`` are the ledger's before this run."""

    def update(self, done: int, sent: int) -> None:
        """``done`` messages dealt with by this run so far, ``sent`` of them accepted."""

    def stop(self) -> None:
        """The run is over (also after an error)."""


@dataclass(frozen=True)
class SendReport:
    """How a send (or one run of a resumed send) ended."""

    issue_slug: str
    list_slug: str
    counts: Mapping[DeliveryStatus, int]
    # recipients whose delivery failed or bounced, with the relay's last reply
    failures: tuple[tuple[str, str], ...] = ()
    duration_seconds: float = 0.0
    # delivered by this run (the counts are the whole issue's)
    sent_now: int = 0
    created: int | None = None
    paused: str | None = None
    # the pause is the relay's hourly quota (smtp.hourly_cap), not an outage
    quota: bool = False
    next_attempt_at: datetime | None = None

    @property
    def recipients(self) -> int:
        return sum(self.counts.values())

    @property
    def sent(self) -> int:
        return self.counts.get(DeliveryStatus.SENT, 0)

    @property
    def failed(self) -> int:
        return self.counts.get(DeliveryStatus.FAILED, 0) + self.counts.get(
            DeliveryStatus.BOUNCED, 0
        )

    @property
    def pending(self) -> int:
        return self.counts.get(DeliveryStatus.PENDING, 0) + self.counts.get(
            DeliveryStatus.SENDING, 0
        )

    @property
    def finished(self) -> bool:
        return self.pending == 0 and self.paused is None

    @property
    def rate(self) -> float:
        return self.sent_now / self.duration_seconds if self.duration_seconds > 0 else 0.0


def prepare_issue(
    settings: Settings,
    engine: Engine,
    issue_path: Path,
    *,
    list_slug: str | None = None,
    now: datetime | None = None,
) -> tuple[IssueRef, MessageContent, int | None]:
    """Load and render the issue once and record it with its ledger rows (idempotent).

    Returns the send, what its messages are built from (as recorded: links not yet tracked,
    see :func:`issue_template`), and how many ledger rows were created (None when the send
    began earlier). A send that began earlier keeps the subject and bodies it was recorded
    with, so a resumed send gives everyone the same issue even if the file changed since.
    What the send counts (``[analytics]``) and its link table are recorded with the issue row.
    """
    from newsletter.images import derive_images
    from newsletter.issues import load_issue
    from newsletter.rendering import Renderer
    from newsletter.store.subscribers import ensure_lists

    issue = load_issue(issue_path, settings)
    slug = list_slug or issue.list or settings.publication.default_list
    settings.mailing_list(slug)  # a ConfigError naming the known lists
    ref = find_issue(engine, issue.slug, slug)
    if ref is not None:
        return ref, load_bodies(engine, ref), None
    # the resized copies must be online before the first recipient opens the email
    rendered = Renderer(settings).render(issue, derive_images(issue, settings))
    with engine.begin() as conn:
        list_id = ensure_lists(conn, settings)[slug]
    when = now or datetime.now(UTC)
    tracking = tracking_for(settings)
    links = links_for(settings, tracking, rendered)

    def record(conn: Connection, issue_id: int) -> None:
        record_tracking(conn, issue_id, tracking, links, now=when)

    ref, created = start_issue(
        engine,
        slug=issue.slug,
        list_id=list_id,
        list_slug=slug,
        title=issue.title,
        subject=rendered.subject,
        issue_date=issue.date,
        html=rendered.html,
        text=rendered.text,
        now=when,
        authors=issue.authors,
        preheader=rendered.preheader,
        on_create=record,
    )
    return ref, rendered, created


def issue_template(
    settings: Settings,
    engine: Engine,
    ref: IssueRef,
    content: MessageContent,
    mailing_list: MailingList,
) -> MessageTemplate:
    """The per-recipient template of a send: its recorded bodies with tracked links, if any.

    Its placeholders are the unsubscribe link, the bodies' join links and, when the send
    counts per reader, the reader token. It carries the send's ``Feedback-ID`` and, with
    ``[bounces] provider``, the relay's metadata header for the delivery token.
    """
    tracking, links = load_tracking(engine, ref.id)
    delivered = tracked_content(settings, ref.id, content, tracking, links)
    names = (*placeholders(content), *reader_placeholders(tracking))
    return MessageTemplate(
        delivered,
        settings,
        mailing_list,
        placeholders=names,
        feedback=feedback_id(settings, ref.slug, ref.list_slug),
        provider=settings.bounces.provider,
    )


def engine_for(
    settings: Settings,
    ledger: SqlLedger,
    transport: Transport,
    *,
    policy: Policy | None = None,
    clock: Clock | None = None,
    signer: IssueSigner | None = None,
) -> DeliveryEngine:
    """The delivery engine as sends and workers run it (DKIM, per-recipient link values);
    ``signer`` is one already started, else ``[dkim]``'s is made here."""
    return DeliveryEngine(
        settings,
        ledger,
        transport,
        policy=policy,
        clock=clock,
        signer=signer if signer is not None else IssueSigner.from_config(settings.dkim),
        values=reader_values(settings),
    )


def run_send(
    settings: Settings,
    engine: Engine,
    issue_path: Path,
    *,
    list_slug: str | None = None,
    transport: Transport | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
    policy: Policy | None = None,
) -> SendReport:
    """Send ``issue_path`` to its list: everything due now, resuming any earlier run.

    Calling it again on a finished issue sends nothing. When the relay is unreachable the
    report says ``paused`` and the unsent rows stay pending for the next run.
    """
    started = time.monotonic()
    # the DKIM signer process starts while the issue is prepared: ready by the first copy
    signer = IssueSigner.from_config(settings.dkim)
    if signer is not None:
        signer.start()
    try:
        ref, content, created = prepare_issue(
            settings, engine, issue_path, list_slug=list_slug, now=now
        )
        template = issue_template(
            settings, engine, ref, content, settings.mailing_list(ref.list_slug)
        )
        joins = join_links(engine, content, settings)
        return asyncio.run(
            _deliver(
                settings,
                SqlLedger(engine),
                ref,
                template,
                joins=joins,
                transport=transport,
                now=now,
                progress=progress,
                policy=policy,
                started=started,
                created=created,
                signer=signer,
            )
        )
    finally:
        if signer is not None:
            signer.close()


async def _deliver(
    settings: Settings,
    ledger: SqlLedger,
    ref: IssueRef,
    template: MessageTemplate,
    *,
    joins: JoinLinks,
    transport: Transport | None,
    now: datetime | None,
    progress: Progress | None,
    policy: Policy | None,
    started: float,
    created: int | None,
    signer: IssueSigner | None = None,
) -> SendReport:
    own_transport = transport is None
    pool: Transport = transport if transport is not None else pool_for(settings, ledger)
    clock: Clock = (lambda: now) if now is not None else (lambda: datetime.now(UTC))
    engine = engine_for(settings, ledger, pool, policy=policy, clock=clock, signer=signer)
    try:
        if progress is None:
            run = await engine.deliver(ref, template, joins=joins)
        else:
            progress.start(await asyncio.to_thread(ledger.counts, ref))
            try:
                run = await engine.deliver(
                    ref,
                    template,
                    on_progress=progress.update,
                    joins=joins,
                    # a progress display that can say the send waits for retries
                    on_wait=getattr(progress, "waiting", None),
                )
            finally:
                progress.stop()
    finally:
        if own_transport:
            await pool.close()
        if isinstance(engine.signer, IssueSigner):
            engine.signer.close()
    return await asyncio.to_thread(
        report_for, ledger, ref, now=clock(), run=run, started=started, created=created
    )


def join_links(engine: Engine, content: MessageContent, settings: Settings) -> JoinLinks:
    """The "more from us" links of an issue's bodies, with the ids of their lists."""
    from newsletter.store.subscribers import ensure_lists

    names = join_names(content)
    if not names:
        return JoinLinks()
    with engine.begin() as conn:
        ids = ensure_lists(conn, settings)
    return JoinLinks.for_content(content, settings, ids)


def report_for(
    ledger: SqlLedger,
    ref: IssueRef,
    *,
    now: datetime,
    run: DeliveryRun | None = None,
    started: float | None = None,
    created: int | None = None,
) -> SendReport:
    """The report of ``ref`` after ``run``; marks the send finished, or paused if it paused."""
    finished = ledger.finish_if_done(ref, now=now)
    paused = str(run.paused) if run is not None and run.paused is not None else None
    if paused is not None and not finished:
        set_status(ledger.engine, ref, SendStatus.PAUSED)
    failures = tuple((f.email, _reply(f)) for f in ledger.failures(ref, limit=50) if _final(f))
    return SendReport(
        issue_slug=ref.slug,
        list_slug=ref.list_slug,
        counts=ledger.counts(ref),
        failures=failures,
        duration_seconds=time.monotonic() - started if started is not None else 0.0,
        sent_now=run.sent if run is not None else 0,
        created=created,
        paused=paused,
        quota=run is not None and isinstance(run.paused, QuotaReachedError),
        next_attempt_at=None if finished else ledger.next_attempt_at(ref),
    )


def _final(f: Failure) -> bool:
    return f.status in (DeliveryStatus.FAILED, DeliveryStatus.BOUNCED)


def _reply(f: Failure) -> str:
    return f"{f.code} {f.reply}" if f.code else (f.reply or f.status.value)


def issue_sent(engine: Engine, slug: str, list_slug: str) -> bool:
    """True when every delivery of the issue to the list is done (sent, failed or bounced)."""
    ref = find_issue(engine, slug, list_slug)
    if ref is None:
        return False
    counts = SqlLedger(engine).counts(ref)
    return counts[DeliveryStatus.PENDING] == 0 and counts[DeliveryStatus.SENDING] == 0


def pool_for(settings: Settings, ledger: SqlLedger) -> SmtpPool:
    """The SMTP pool from settings, its hourly cap primed with what the ledger sent lately."""
    pool = SmtpPool.from_settings(settings)
    if pool.hourly is not None:
        # the hourly cap counts what this and earlier runs sent, as the ledger remembers it
        now = datetime.now(UTC)
        sent = ledger.sent_since(now - timedelta(hours=1))
        pool.hourly.seed((now - when).total_seconds() for when in sent)
    return pool


def with_smtp_url(settings: Settings, smtp_url: str) -> Settings:
    """``settings`` pointed at another relay (the demo's sink, a test server)."""
    return replace(settings, smtp_url=smtp_url)
