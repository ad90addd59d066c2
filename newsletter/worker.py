"""``newsletter worker``: deliver every open send in the ledger, on any number of machines.

Workers need no issue files: each send is delivered from the subject and bodies recorded when
it began. With PostgreSQL any number of workers share one send; each claims its own batches.
SIGTERM or SIGINT stops a worker cleanly (handlers installed on the event loop, so it works as
PID 1 in a container too): it claims nothing more, lets messages in flight finish, gives the
rest back and raises :class:`DeliveryInterrupted`; a second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from newsletter.config import MailingList, Settings
from newsletter.delivery import Policy, Transport
from newsletter.dkim_signers import IssueSigner
from newsletter.errors import DeliveryInterrupted, QuotaReachedError
from newsletter.joins import JoinLinks
from newsletter.message import MessageTemplate
from newsletter.sending import engine_for, issue_template, join_links, pool_for, report_for
from newsletter.states import SendStatus
from newsletter.store.issues import load_bodies, open_issues, set_status
from newsletter.store.ledger import SqlLedger


def _mailing_list(settings: Settings, slug: str) -> MailingList:
    # a list removed from the config after its send began still finishes under its slug
    return settings.lists.get(slug) or MailingList(slug=slug, name=slug)


def run_worker(
    settings: Settings,
    engine: Engine,
    *,
    transport: Transport | None = None,
    until_done: bool = False,
    poll_seconds: float = 5.0,
    max_pause_seconds: float = 60.0,
    on_event: Callable[[str], None] | None = None,
    policy: Policy | None = None,
) -> int:
    """Deliver every open send in the ledger, forever (or ``until_done``); messages sent.

    Any number of workers may run against one PostgreSQL database: each claims its own
    batches. When the relay is down the worker says so and tries again with a growing pause.
    """
    return asyncio.run(
        _work(
            settings,
            SqlLedger(engine),
            transport=transport,
            until_done=until_done,
            poll_seconds=poll_seconds,
            max_pause_seconds=max_pause_seconds,
            on_event=on_event or (lambda _msg: None),
            policy=policy,
        )
    )


async def _work(
    settings: Settings,
    ledger: SqlLedger,
    *,
    transport: Transport | None,
    until_done: bool,
    poll_seconds: float,
    max_pause_seconds: float,
    on_event: Callable[[str], None],
    policy: Policy | None,
) -> int:
    pool: Transport = transport if transport is not None else pool_for(settings, ledger)
    engine = engine_for(settings, ledger, pool, policy=policy)
    templates: dict[int, tuple[MessageTemplate, JoinLinks]] = {}
    total = 0
    pause = 1.0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        stop.set()
        engine.on_signal(signum)

    async def rest(seconds: float) -> None:
        # a stop ends the rest at once
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)

    # signal handlers live in the main thread only (a worker run in a thread has none)
    signals = (
        (signal.SIGTERM, signal.SIGINT)
        if threading.current_thread() is threading.main_thread()
        else ()
    )
    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        while True:
            if engine.stop_signal is not None:
                raise DeliveryInterrupted(engine.stop_signal, sent=total, given_back=0)
            refs = await asyncio.to_thread(open_issues, ledger.engine)
            if not refs and until_done:
                return total
            paused: str | None = None
            waits: list[datetime] = []
            for ref in refs:
                cached = templates.get(ref.id)
                if cached is None:
                    # the bodies are read once per send this worker takes on, not every poll
                    bodies = await asyncio.to_thread(load_bodies, ledger.engine, ref)
                    template = await asyncio.to_thread(
                        issue_template,
                        settings,
                        ledger.engine,
                        ref,
                        bodies,
                        _mailing_list(settings, ref.list_slug),
                    )
                    joins = await asyncio.to_thread(join_links, ledger.engine, bodies, settings)
                    cached = templates[ref.id] = (template, joins)
                template, joins = cached
                try:
                    # no waiting for retries inside one send: the poll loop comes back to it
                    run = await engine.deliver(ref, template, joins=joins, max_wait=0)
                except DeliveryInterrupted as exc:
                    raise DeliveryInterrupted(
                        exc.signum, sent=total + exc.sent, given_back=exc.given_back
                    ) from None
                total += run.sent
                if run.paused is not None:
                    what = (
                        "hourly cap reached"
                        if isinstance(run.paused, QuotaReachedError)
                        else "relay unreachable"
                    )
                    paused = f"{what}: {run.paused}"
                    await asyncio.to_thread(set_status, ledger.engine, ref, SendStatus.PAUSED)
                    break
                report = await asyncio.to_thread(
                    report_for, ledger, ref, now=engine.clock(), run=run
                )
                if run.sent:
                    on_event(
                        f"{ref.slug} ({ref.list_slug}): {run.sent} sent, "
                        f"{report.pending} pending, {report.failed} failed"
                    )
                if report.finished:
                    on_event(f"{ref.slug} ({ref.list_slug}): finished")
                elif report.next_attempt_at is not None:
                    waits.append(report.next_attempt_at)
            if paused is not None:
                on_event(f"{paused}; trying again in {pause:.0f} s")
                await rest(pause)
                pause = min(max_pause_seconds, pause * 2)
                continue
            pause = 1.0
            now = engine.clock()
            wait = poll_seconds
            if waits:
                wait = min(poll_seconds, max(0.05, (min(waits) - now).total_seconds()))
            await rest(wait)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        if transport is None:
            await pool.close()
        if isinstance(engine.signer, IssueSigner):
            engine.signer.close()
