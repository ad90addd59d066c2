"""The delivery engine: an issue to every recipient in the ledger, fast, resumable, once.

The engine owns the two interfaces it needs, :class:`LedgerStore` and :class:`Transport`; the
send use-cases (:mod:`newsletter.sending`, ``newsletter send``/``worker``) wire in the SQL
ledger and the SMTP pool, and hear about progress through a callback. Claimed rows flow
through a bounded queue to one sender per connection; outcomes are written back in small group
commits, so a recipient is marked sent only after the relay accepted the message and at most
the messages in flight are repeated after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from newsletter.addresses import ascii_address, sender_domain
from newsletter.config import Settings
from newsletter.errors import (
    ConfigError,
    DeliveryError,
    DeliveryInterrupted,
    InvalidAddressError,
    NewsletterError,
    PermanentDeliveryError,
    StoreError,
    TemporaryDeliveryError,
    TransportUnavailableError,
)
from newsletter.inbound.verp import DeliveryRef, DeliveryTokens
from newsletter.joins import JoinLinks
from newsletter.message import (
    MessageTemplate,
    Personalization,
    delivery_message_id,
    envelope_sender,
)
from newsletter.states import DeliveryStatus
from newsletter.store.issues import IssueRef
from newsletter.store.ledger import Claimed, Outcome, new_owner
from newsletter.tokens import TokenPurpose, make_token
from newsletter.transport import SendResult
from newsletter.urls import unsubscribe_mailto, unsubscribe_url

Clock = Callable[[], datetime]
# the value of a per-recipient placeholder (besides the unsubscribe link) from the issue row id
# and the subscriber's uid: the reader token of tracked links
PersonalValue = Callable[[int, str], str]
# (messages done, of which sent) after each outcome of a run
ProgressCallback = Callable[[int, int], None]
# the run waits for rows that come due at this time (retries, other senders' leases)
WaitCallback = Callable[[datetime], None]


class MessageSigner(Protocol):
    """What the engine needs from DKIM (``dkim_signers.IssueSigner``): a recipient's copy, ready for
    DATA (leading dots doubled), and its signature header(s), made off the event loop."""

    def sign(
        self, template: MessageTemplate, person: Personalization
    ) -> tuple[bytes, asyncio.Future[bytes] | Future[bytes]]: ...


class LedgerStore(Protocol):
    """What the engine needs from the ledger."""

    def claim(
        self, issue: IssueRef, *, owner: str, now: datetime, lease_seconds: float, limit: int
    ) -> Sequence[Claimed]: ...

    def record(
        self, issue: IssueRef, outcomes: Sequence[Outcome], *, owner: str, now: datetime
    ) -> None: ...

    def release(self, issue: IssueRef, *, owner: str, subscriber_ids: Sequence[int]) -> None: ...

    def renew(
        self, issue: IssueRef, *, owner: str, now: datetime, lease_seconds: float
    ) -> None: ...

    def reap(self, issue: IssueRef, *, now: datetime) -> int: ...

    def counts(self, issue: IssueRef) -> Mapping[DeliveryStatus, int]: ...

    def next_attempt_at(self, issue: IssueRef) -> datetime | None: ...

    def finish_if_done(self, issue: IssueRef, *, now: datetime) -> bool: ...

    def note_sent(
        self, issue: IssueRef, subscriber_id: int, *, owner: str, now: datetime
    ) -> None: ...

    def notes_recorded(self, owner: str, *, done: bool = False) -> None: ...


class Transport(Protocol):
    """What the engine needs from the SMTP side."""

    connections: int

    async def send(
        self,
        sender: str,
        recipients: Sequence[str],
        data: bytes,
        *,
        prepared: bool = False,
        envid: str | None = None,
    ) -> SendResult: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Policy:
    """Retry, lease and batching policy (from ``[delivery]``)."""

    max_attempts: int = 8
    retry_base_seconds: float = 60.0
    retry_max_seconds: float = 3600.0
    max_age: timedelta = timedelta(hours=48)
    batch_size: int = 200
    lease_seconds: float = 300.0
    # how often outcomes are committed at most (each acceptance is journaled at once)
    flush_interval: float = 0.05
    # how long a run stays for retries and leases coming due (``newsletter send``); 0: not
    max_wait: float = 0.0
    # how often a waiting run looks again for rows of senders that stopped
    reap_interval: float = 5.0
    # signals that stop a run cleanly (``send`` sets SIGTERM and SIGINT); a second one exits
    stop_signals: tuple[int, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        d = settings.delivery
        return cls(
            max_attempts=d.max_attempts,
            retry_base_seconds=d.retry_base_seconds,
            retry_max_seconds=d.retry_max_seconds,
            max_age=timedelta(hours=d.max_age_hours),
            batch_size=d.batch_size,
            lease_seconds=d.lease_seconds,
        )

    def for_send(self, settings: Settings) -> Policy:
        """This policy as ``newsletter send`` runs it: it waits and stops on signals."""
        return replace(
            self,
            max_wait=settings.delivery.max_wait_minutes * 60,
            stop_signals=(signal.SIGTERM, signal.SIGINT),
        )

    def backoff(self, attempts: int, rng: random.Random) -> float:
        """Exponential in the attempts so far, with +-25 % jitter so retries do not herd."""
        base = min(self.retry_max_seconds, self.retry_base_seconds * 2 ** max(0, attempts - 1))
        return float(base * rng.uniform(0.75, 1.25))


@dataclass
class _Job:
    row: Claimed
    data: bytes
    sender: str
    # the address in RCPT TO: the stored one with an internationalised domain in IDNA form
    recipient: str
    # CRLF with leading dots doubled already: goes after DATA unchanged
    prepared: bool
    # when the row was claimed; with the last lease renewal this says when the lease ends
    claimed_at: datetime
    # the delivery token, as RFC 3461 ENVID where the relay offers DSN
    envid: str | None = None
    # DKIM: the signature header(s) being made off the loop; they go in front of ``data``
    signature: asyncio.Future[bytes] | Future[bytes] | None = None


@dataclass
class DeliveryRun:
    """What one :meth:`DeliveryEngine.deliver` call did (outcomes not yet written included)."""

    outcomes: list[Outcome] = field(default_factory=list)
    released: list[int] = field(default_factory=list)
    paused: TransportUnavailableError | None = None
    # the ledger could not be written: stop, since nothing sent now could be recorded
    store_error: StoreError | None = None
    # a setting is wrong (an unverifiable relay certificate, an unusable DKIM key): stop and
    # say so; every row goes back untouched, since trying again would fail the same way
    config_error: ConfigError | None = None
    # last time every row this engine holds had its lease extended
    renewed_at: datetime | None = None
    # the signal that stopped the run (SIGTERM, SIGINT), if one did
    interrupted: int | None = None
    sent: int = 0
    done: int = 0
    # claimed rows given back unsent (a pause, a stop)
    given_back: int = 0

    @property
    def stopping(self) -> bool:
        return (
            self.paused is not None
            or self.store_error is not None
            or self.config_error is not None
            or self.interrupted is not None
        )


class DeliveryEngine:
    """Delivers one issue's due ledger rows through a transport."""

    def __init__(
        self,
        settings: Settings,
        ledger: LedgerStore,
        transport: Transport,
        *,
        policy: Policy | None = None,
        clock: Clock | None = None,
        owner: str | None = None,
        signer: MessageSigner | None = None,
        rng: random.Random | None = None,
        values: Mapping[str, PersonalValue] | None = None,
    ) -> None:
        self.settings = settings
        self.values = dict(values or {})
        self.ledger = ledger
        self.transport = transport
        self.policy = policy or Policy.from_settings(settings)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.owner = owner or new_owner()
        self.signer = signer
        self.rng = rng or random.Random()
        self.domain = sender_domain(settings.publication.sender)
        # one per engine: the token names the ledger row in the envelope, headers, Message-ID
        self.tokens = DeliveryTokens(settings.token_keys)
        # the first stop signal; set once, it stops every later run of this engine too
        self.stop_signal: int | None = None
        self._run: DeliveryRun | None = None
        self._senders: list[asyncio.Task[None]] = []
        self._cutoff: asyncio.TimerHandle | None = None
        self._queue: asyncio.Queue[_Job | None] | None = None
        self._wake = asyncio.Event()
        # one flush at a time: a run that waits must see every outcome written first
        self._flush_lock = asyncio.Lock()

    def request_stop(self, signum: int) -> None:
        """Stop the running :meth:`deliver` as if ``signum`` had arrived (the worker's hook).

        Nothing more is claimed; messages in flight finish (for at most ``smtp.timeout``), their
        outcomes are written and every unsent claim goes back to pending; ``deliver`` then
        raises :class:`DeliveryInterrupted`.
        """
        if self.stop_signal is None:
            self.stop_signal = signum
        self._wake.set()
        if self._run is not None and self._run.interrupted is None:
            self._run.interrupted = signum
            loop = asyncio.get_running_loop()
            # in-flight transactions get one command timeout to end; then they are cut off
            # and their rows given back (a message cut off in DATA may arrive twice)
            self._cutoff = loop.call_later(self.settings.smtp.timeout, self._cut_off)

    def _cut_off(self) -> None:
        for task in self._senders:
            task.cancel()
        # the senders are gone: what they would have taken goes back, and the producer, if it
        # waits for room in the queue, gets it
        queue, run = self._queue, self._run
        while queue is not None and run is not None and not queue.empty():
            job = queue.get_nowait()
            if job is not None:
                run.released.append(job.row.subscriber_id)

    def on_signal(self, signum: int) -> None:
        """A stop signal arrived: the first stops the run cleanly, a second exits at once."""
        if self.stop_signal is not None:
            # a second signal: out at once. Accepted messages are in the journal and this
            # process's leases are reclaimed by the next run, so the ledger loses nothing
            name = signal.Signals(signum).name
            os.write(2, f"\n{name} again: exiting at once; run it again to continue\n".encode())
            os._exit(128 + signum)
        self.request_stop(signum)

    async def deliver(
        self,
        issue: IssueRef,
        template: MessageTemplate,
        *,
        on_progress: ProgressCallback | None = None,
        joins: JoinLinks | None = None,
        on_wait: WaitCallback | None = None,
        max_wait: float | None = None,
    ) -> DeliveryRun:
        """Send every row that is due now; stops early (``paused``) if the relay is gone.

        ``joins`` are the issue's "more from us" links, signed per recipient. With ``max_wait``
        seconds (default ``policy.max_wait``) the run stays for retries and other senders'
        leases that come due within that time, saying so through ``on_wait``.

        A wrong setting (:class:`ConfigError`: the relay's certificate does not verify, the
        DKIM key cannot sign) stops the run too, gives every unsent row back and is raised.
        A signal in ``policy.stop_signals`` (or :meth:`request_stop`) stops it cleanly and
        raises :class:`DeliveryInterrupted`.
        """
        run = self._run = DeliveryRun()
        if self.stop_signal is not None:
            run.interrupted = self.stop_signal
        wait_for = self.policy.max_wait if max_wait is None else max_wait
        loop = asyncio.get_running_loop()
        for signum in self.policy.stop_signals:
            loop.add_signal_handler(signum, self.on_signal, signum)
        try:
            return await self._deliver(issue, template, run, on_progress, joins, on_wait, wait_for)
        finally:
            for signum in self.policy.stop_signals:
                loop.remove_signal_handler(signum)
            if self._cutoff is not None:
                self._cutoff.cancel()
                self._cutoff = None
            self._run = None

    async def _deliver(
        self,
        issue: IssueRef,
        template: MessageTemplate,
        run: DeliveryRun,
        on_progress: ProgressCallback | None,
        joins: JoinLinks | None,
        on_wait: WaitCallback | None,
        wait_for: float,
    ) -> DeliveryRun:
        await asyncio.to_thread(self.ledger.reap, issue, now=self.clock())
        # copies made ahead of the senders; signed ones further ahead, so a signature is
        # usually made by the time its connection is free
        ahead = 4 if self.signer is not None else 2
        queue: asyncio.Queue[_Job | None] = asyncio.Queue(
            maxsize=ahead * self.transport.connections
        )
        self._queue = queue
        stopping = False
        # jobs handed to the senders and not yet finished
        in_flight = 0
        wait_until = time.monotonic() + wait_for

        async def claim(limit: int) -> Sequence[Claimed]:
            claimed_at = self.clock()
            rows = await asyncio.to_thread(
                self.ledger.claim,
                issue,
                owner=self.owner,
                now=claimed_at,
                lease_seconds=self.policy.lease_seconds,
                limit=limit,
            )
            if rows or run.stopping:
                return rows
            # nothing due: a sender on this host that stopped may hold rows (a zombie, a pid
            # now someone else's); its journal is replayed and its rows claimed now
            if await asyncio.to_thread(self.ledger.reap, issue, now=self.clock()):
                return await claim(limit)
            return rows

        async def due_within_wait() -> bool:
            # stay while retries or leases come due before the wait ends (``max_wait``)
            while not run.stopping:
                if in_flight:
                    # what is in flight may come back as a retry; look when it is written
                    await self._pause(self.policy.flush_interval * 2)
                    return True
                try:
                    # every outcome in the ledger (waiting for a flush under way) before it is
                    # read: a row still shown as ours in `sending` would look a lease away
                    await self._flush(issue, run)
                except StoreError as exc:
                    run.store_error = run.store_error or exc
                    return False
                if time.monotonic() >= wait_until:
                    return False
                due = await asyncio.to_thread(self.ledger.next_attempt_at, issue)
                if due is None:
                    return False
                left = (due - self.clock()).total_seconds()
                if left <= 0:
                    return True
                if left > wait_until - time.monotonic():
                    return False
                if on_wait is not None:
                    on_wait(due)
                await self._pause(min(left, self.policy.reap_interval))
                return True
            return False

        async def produce() -> None:
            nonlocal in_flight
            batch_limit = self.policy.batch_size
            rate = self.settings.smtp.rate
            if rate > 0:
                # at a set rate a big batch is held for long; keep it to what goes out in
                # half a lease so a crashed worker's rows come back without a long wait
                batch_limit = max(1, min(batch_limit, int(rate * self.policy.lease_seconds / 2)))
            while not run.stopping:
                claimed_at = self.clock()
                rows = await claim(batch_limit)
                if not rows:
                    if wait_for > 0 and await due_within_wait():
                        continue
                    return
                for row in rows:
                    if run.stopping:
                        run.released.append(row.subscriber_id)
                        continue
                    if not row.active:
                        run.outcomes.append(
                            Outcome(
                                row.subscriber_id,
                                DeliveryStatus.FAILED,
                                reply="skipped: unsubscribed or suppressed before delivery",
                            )
                        )
                        run.done += 1
                        continue
                    try:
                        job = self._job(issue, template, row, claimed_at, joins)
                    except ConfigError as exc:
                        run.config_error = run.config_error or exc
                        run.released.append(row.subscriber_id)
                        continue
                    except NewsletterError as exc:
                        # bad data in one row (say, a line break in a name) fails that row only
                        run.outcomes.append(
                            Outcome(
                                row.subscriber_id,
                                DeliveryStatus.FAILED,
                                reply=f"cannot build the message: {exc}",
                            )
                        )
                        run.done += 1
                        continue
                    in_flight += 1
                    await queue.put(job)

        async def send() -> None:
            nonlocal in_flight
            while True:
                job = await queue.get()
                if job is None:
                    return
                try:
                    await send_job(job)
                except asyncio.CancelledError:
                    # cut off after a stop: whatever became of the message, the row goes back
                    run.released.append(job.row.subscriber_id)
                    raise
                finally:
                    in_flight -= 1

        async def send_job(job: _Job) -> None:
            if run.stopping or self._lease_running_out(job, run):
                # paused, or the lease could lapse before this transaction ends (renewals
                # failed): another worker may take the row, so give it back, never race
                run.released.append(job.row.subscriber_id)
                return
            outcome = await self._send_one(job, run)
            if outcome is None:
                run.released.append(job.row.subscriber_id)
                return
            if outcome.status is DeliveryStatus.SENT:
                # noted before this connection's next message, so a crash from here on
                # repeats only what is in DATA at that moment, not the last group commit
                try:
                    self.ledger.note_sent(
                        issue, job.row.subscriber_id, owner=self.owner, now=self.clock()
                    )
                except StoreError as exc:
                    run.store_error = run.store_error or exc
                run.sent += 1
            run.outcomes.append(outcome)
            run.done += 1
            if on_progress is not None:
                on_progress(run.done, run.sent)

        async def flush_forever() -> None:
            # the heartbeat: leases of rows still queued or in flight are extended every third
            # of a lease, so a slow relay never lets another worker take over a live batch
            every = timedelta(seconds=self.policy.lease_seconds / 3)
            renewed = self.clock()
            while not stopping:
                await asyncio.sleep(self.policy.flush_interval)
                try:
                    await self._flush(issue, run)
                    now = self.clock()
                    if now - renewed >= every:
                        await asyncio.to_thread(
                            self.ledger.renew,
                            issue,
                            owner=self.owner,
                            now=now,
                            lease_seconds=self.policy.lease_seconds,
                        )
                        renewed = run.renewed_at = now
                except StoreError as exc:
                    run.store_error = exc
                    return

        # made per run: asyncio primitives belong to the loop they first wait on
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        if run.interrupted is not None:
            self._wake.set()
        flusher = asyncio.create_task(flush_forever())
        senders = self._senders = [
            asyncio.create_task(send()) for _ in range(self.transport.connections)
        ]
        try:
            await produce()
        finally:
            for _ in senders:
                await queue.put(None)
            results = await asyncio.gather(*senders, return_exceptions=True)
            self._senders = []
            stopping = True
            await flusher
            # whatever is left (also after an error) is written before anything propagates
            while not queue.empty():
                leftover = queue.get_nowait()
                if leftover is not None:
                    run.released.append(leftover.row.subscriber_id)
            await self._flush(issue, run)
            if not run.outcomes:
                await asyncio.to_thread(self.ledger.notes_recorded, self.owner, done=True)
        for result in results:
            if isinstance(result, asyncio.CancelledError) and run.interrupted is not None:
                continue
            if isinstance(result, BaseException):
                raise result
        if run.config_error is not None:
            raise run.config_error
        if run.store_error is not None:
            raise run.store_error
        if run.interrupted is not None:
            raise DeliveryInterrupted(run.interrupted, sent=run.sent, given_back=run.given_back)
        return run

    async def _pause(self, seconds: float) -> None:
        """Sleep up to ``seconds``; a stop wakes it."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    def _lease_running_out(self, job: _Job, run: DeliveryRun) -> bool:
        start = job.claimed_at
        if run.renewed_at is not None and run.renewed_at > start:
            start = run.renewed_at
        lease = self.policy.lease_seconds
        # a transaction takes at most a few command timeouts (MAIL, RCPT, DATA, connect)
        margin = min(4 * self.settings.smtp.timeout, lease / 2)
        return self.clock() > start + timedelta(seconds=lease - margin)

    def _job(
        self,
        issue: IssueRef,
        template: MessageTemplate,
        row: Claimed,
        claimed_at: datetime,
        joins: JoinLinks | None = None,
    ) -> _Job:
        # SMTP and headers need an internationalised domain in IDNA form; a non-ASCII local
        # part needs SMTPUTF8, which this sender does not use: that row fails, nothing else
        to = ascii_address(row.email)
        if not to.isascii():
            raise InvalidAddressError(row.email, "a non-ASCII local part needs SMTPUTF8")
        # signed at the engine's time: an unsubscribe is attributed to the send by it
        token = make_token(
            self.settings.secret_key,
            TokenPurpose.UNSUBSCRIBE,
            row.uid,
            issue.list_id,
            issued_at=int(self.clock().timestamp()),
        )
        delivery = self.tokens.make(DeliveryRef(issue.id, row.subscriber_id))
        values = {
            name: value(issue.id, row.uid)
            for name, value in self.values.items()
            if name in template.names
        }
        person = Personalization(
            to=to,
            name=row.name,
            unsubscribe_url=unsubscribe_url(self.settings.publication.base_url, token),
            unsubscribe_mailto=unsubscribe_mailto(self.domain, token),
            # the same id on every attempt, so a copy repeated after a crash can be told apart
            message_id=delivery_message_id(delivery, self.domain),
            delivery_token=delivery,
            values={**(joins.values(self.settings, row.uid) if joins else {}), **values},
        )
        sender = envelope_sender(self.settings, delivery)
        if self.signer is None:
            data = template.render(person, dot_stuffed=True)
            return _Job(row, data, sender, to, True, claimed_at, delivery)
        data, signature = self.signer.sign(template, person)
        return _Job(row, data, sender, to, True, claimed_at, delivery, signature)

    async def _send_one(self, job: _Job, run: DeliveryRun) -> Outcome | None:
        row = job.row
        try:
            data = job.data
            if job.signature is not None:
                # usually made by now (the queue runs ahead of the senders): no loop wake-up
                signature = job.signature
                if not signature.done():
                    await asyncio.wrap_future(signature)
                data = signature.result() + data
            result = await self.transport.send(
                job.sender, [job.recipient], data, prepared=job.prepared, envid=job.envid
            )
        except TransportUnavailableError as exc:
            if run.paused is None:
                run.paused = exc
            return None
        except ConfigError as exc:
            if run.config_error is None:
                run.config_error = exc
            return None
        except DeliveryError as exc:
            return self._failed(row, exc)
        if job.recipient in result.accepted:
            return Outcome(row.subscriber_id, DeliveryStatus.SENT, result.code, result.reply)
        error = result.refused.get(job.recipient) or TemporaryDeliveryError(
            "the relay did not accept the recipient", recipient=row.email
        )
        return self._failed(row, error)

    def _failed(self, row: Claimed, error: DeliveryError) -> Outcome:
        now = self.clock()
        if isinstance(error, PermanentDeliveryError):
            return Outcome(
                row.subscriber_id,
                DeliveryStatus.BOUNCED,
                error.code,
                error.message,
                email=row.email,
            )
        too_old = now - row.created_at >= self.policy.max_age
        if row.attempts >= self.policy.max_attempts or too_old:
            return Outcome(row.subscriber_id, DeliveryStatus.FAILED, error.code, error.message)
        delay = self.policy.backoff(row.attempts, self.rng)
        return Outcome(
            row.subscriber_id,
            DeliveryStatus.PENDING,
            error.code,
            error.message,
            next_attempt_at=now + timedelta(seconds=delay),
        )

    async def _flush(self, issue: IssueRef, run: DeliveryRun) -> None:
        async with self._flush_lock:
            await self._flush_now(issue, run)

    async def _flush_now(self, issue: IssueRef, run: DeliveryRun) -> None:
        outcomes, run.outcomes = run.outcomes, []
        released, run.released = run.released, []
        try:
            if outcomes:
                await asyncio.to_thread(
                    self.ledger.record, issue, outcomes, owner=self.owner, now=self.clock()
                )
                outcomes = []
                if not any(o.status is DeliveryStatus.SENT for o in run.outcomes):
                    # every acceptance noted so far is recorded: the journal may be emptied
                    self.ledger.notes_recorded(self.owner)
            if released:
                await asyncio.to_thread(
                    self.ledger.release, issue, owner=self.owner, subscriber_ids=released
                )
                run.given_back += len(released)
        except StoreError:
            # keep them for the next try: an outcome dropped here means a repeat later
            run.outcomes[:0] = outcomes
            run.released[:0] = released
            raise
