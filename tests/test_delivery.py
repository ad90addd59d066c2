"""Delivery end to end against a real SMTP server: ledger states, retries, bounces, outages."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
import secrets
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select

from newsletter.config import Settings
from newsletter.delivery import DeliveryEngine, Policy
from newsletter.errors import ConfigError, StoreError
from newsletter.inbound.verp import DeliveryRef, DeliveryTokens
from newsletter.message import MessageTemplate, Personalization
from newsletter.sending import SendReport, issue_sent, prepare_issue, run_send, with_smtp_url
from newsletter.states import DeliveryStatus, SendStatus, SubscriptionStatus, SuppressionReason
from newsletter.store.ledger import SqlLedger
from newsletter.store.schema import deliveries, issues, subscribers, subscriptions, suppressions
from newsletter.store.subscribers import add_subscriber, ensure_lists, unsubscribe
from newsletter.tokens import TokenPurpose, read_token
from newsletter.transport import SmtpPool
from tests.smtpd import SMTPServer

ISSUE = "2026-11-20-flood-barrier-vote.md"
T0 = datetime(2026, 11, 20, 11, 0, tzinfo=UTC)
FAST = Policy(retry_base_seconds=60, max_attempts=5, batch_size=50, flush_interval=0.01)


def add_people(
    engine: Engine,
    settings: Settings,
    emails: Sequence[str],
    *,
    list_slug: str = "weekly",
    status: SubscriptionStatus = SubscriptionStatus.CONFIRMED,
) -> dict[str, int]:
    with engine.begin() as conn:
        ids = ensure_lists(conn, settings)
        return {
            e: add_subscriber(
                conn, e, list_ids=[ids[list_slug]], name=f"Reader {i}", status=status, now=T0
            ).id
            for i, e in enumerate(emails)
        }


def bulk_people(engine: Engine, settings: Settings, emails: Sequence[str]) -> None:
    """Many confirmed subscribers of the default list in a few statements (plain SQL)."""
    with engine.begin() as conn:
        list_id = ensure_lists(conn, settings)["weekly"]
        first = conn.execute(select(func.coalesce(func.max(subscribers.c.id), 0))).scalar_one()
        ids = range(first + 1, first + 1 + len(emails))
        conn.execute(
            insert(subscribers),
            [
                {
                    "id": i,
                    "uid": secrets.token_hex(16),
                    "email": e,
                    "email_normalized": e.lower(),
                    "attributes": {},
                    "created_at": T0,
                    "confirmed_at": T0,
                }
                for i, e in zip(ids, emails, strict=True)
            ],
        )
        conn.execute(
            insert(subscriptions),
            [
                {
                    "subscriber_id": i,
                    "list_id": list_id,
                    "status": SubscriptionStatus.CONFIRMED.value,
                    "created_at": T0,
                    "confirmed_at": T0,
                }
                for i in ids
            ],
        )


def states(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(subscribers.c.email, deliveries.c.status).join(
                subscribers, subscribers.c.id == deliveries.c.subscriber_id
            )
        )
        return {row.email: row.status for row in rows}


def send(
    settings: Settings, engine: Engine, smtpd: SMTPServer, project: Path, **kw: object
) -> SendReport:
    kw.setdefault("now", T0)
    kw.setdefault("policy", FAST)
    return run_send(
        with_smtp_url(settings, smtpd.url),
        engine,
        project / "issues" / ISSUE,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def people(engine: Engine, settings: Settings) -> list[str]:
    emails = [f"reader{i}@example.org" for i in range(6)]
    add_people(engine, settings, emails)
    return emails


def test_send_reaches_every_confirmed_subscriber_once(
    engine: Engine, settings: Settings, smtpd: SMTPServer, project: Path, people: list[str]
) -> None:
    add_people(engine, settings, ["pending@example.org"], status=SubscriptionStatus.UNCONFIRMED)
    add_people(engine, settings, ["business@example.org"], list_slug="business")
    suppressed = add_people(engine, settings, ["gone@example.org"])
    with engine.begin() as conn:
        # a suppression row alone (subscription still confirmed) must keep them out
        conn.execute(
            insert(suppressions).values(
                email_hash=hashlib.sha256(b"gone@example.org").hexdigest(),
                email=None,
                reason=SuppressionReason.UNSUBSCRIBED.value,
                created_at=T0,
            )
        )
    assert suppressed

    report = send(settings, engine, smtpd, project)

    assert report.finished
    assert report.sent == len(people) == report.recipients
    assert report.created == len(people)
    assert smtpd.handler.by_recipient() == dict.fromkeys(people, 1)
    assert set(states(engine).values()) == {"sent"}
    assert issue_sent(engine, "flood-barrier-vote", "weekly")
    with engine.connect() as conn:
        row = conn.execute(select(issues)).one()
    assert row.status == SendStatus.FINISHED.value
    assert "%%UNSUBSCRIBE_URL%%" in row.html  # stored once for the archive, not per recipient

    # each copy carries the recipient's own signed unsubscribe link and the RFC 8058 headers
    with engine.connect() as conn:
        uids = dict(conn.execute(select(subscribers.c.email, subscribers.c.uid)).all())
    for received in smtpd.handler.messages:
        msg = received.message
        assert not msg.defects
        rcpt = received.rcpt_tos[0]
        assert str(msg["To"]) == f"{'Reader ' + str(people.index(rcpt))} <{rcpt}>"
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        match = re.search(
            r"<https://news\.test\.example/unsubscribe/([\w-]+)>", msg["List-Unsubscribe"]
        )
        assert match is not None
        token = read_token(settings.secret_key, match.group(1), TokenPurpose.UNSUBSCRIBE)
        assert token.subscriber_uid == uids[rcpt]
        html = msg.get_body(("html",))
        assert html is not None
        assert match.group(1) in html.get_content()
        assert received.mail_from == "weekly@test.example"

    # running it again sends nothing
    again = send(settings, engine, smtpd, project)
    assert again.sent_now == 0
    assert again.created is None
    assert len(smtpd.handler.messages) == len(people)


class RecordingProgress:
    """A ``sending.Progress`` that keeps what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def start(self, counts: Mapping[DeliveryStatus, int]) -> None:
        self.calls.append(("start", dict(counts)))

    def update(self, done: int, sent: int) -> None:
        self.calls.append(("update", (done, sent)))

    def stop(self) -> None:
        self.calls.append(("stop", None))


def test_progress_is_reported_through_the_callback(
    engine: Engine, settings: Settings, smtpd: SMTPServer, project: Path, people: list[str]
) -> None:
    smtpd.handler.faults.rcpt[people[0]] = ["550 5.1.1 no such user"]
    progress = RecordingProgress()
    send(settings, engine, smtpd, project, progress=progress)
    kinds = [kind for kind, _ in progress.calls]
    assert kinds[0] == "start"
    assert kinds[-1] == "stop"
    assert progress.calls[0][1] == {**dict.fromkeys(DeliveryStatus, 0), DeliveryStatus.PENDING: 6}
    updates = [value for kind, value in progress.calls if kind == "update"]
    assert updates[-1] == (len(people), len(people) - 1)
    assert [done for done, _ in updates] == list(range(1, len(people) + 1))


@pytest.mark.parametrize(
    "reply", ["451 4.3.0 try later", "452 4.2.2 mailbox full", "421 4.7.0 bye"]
)
def test_temporary_rcpt_reply_is_retried_with_backoff(
    engine: Engine,
    settings: Settings,
    smtpd: SMTPServer,
    project: Path,
    people: list[str],
    reply: str,
) -> None:
    victim = people[2]
    smtpd.handler.faults.rcpt[victim] = [reply, reply]

    first = send(settings, engine, smtpd, project)
    assert not first.finished
    assert first.pending == 1
    assert first.next_attempt_at is not None
    # exponential backoff with jitter: about a minute after the first attempt
    assert T0 + timedelta(seconds=40) <= first.next_attempt_at <= T0 + timedelta(seconds=80)
    assert states(engine)[victim] == "pending"

    # not due yet: nothing happens
    assert send(settings, engine, smtpd, project, now=T0 + timedelta(seconds=30)).sent_now == 0
    second = send(settings, engine, smtpd, project, now=T0 + timedelta(minutes=2))
    assert second.pending == 1  # second 4xx; the next wait is about two minutes
    assert second.next_attempt_at is not None
    assert second.next_attempt_at >= T0 + timedelta(minutes=2, seconds=80)
    third = send(settings, engine, smtpd, project, now=T0 + timedelta(hours=1))
    assert third.finished
    assert smtpd.handler.by_recipient() == dict.fromkeys(people, 1)
    assert set(states(engine).values()) == {"sent"}


@pytest.mark.parametrize(
    ("where", "reply"),
    [
        ("rcpt", "550 5.1.1 no such user"),
        ("rcpt", "554 5.7.1 refused"),
        ("data", "554 5.6.0 bad"),
        ("data", "550 5.7.1 looks like spam"),
    ],
)
def test_permanent_reply_bounces_and_suppresses(
    engine: Engine,
    settings: Settings,
    smtpd: SMTPServer,
    project: Path,
    people: list[str],
    where: str,
    reply: str,
) -> None:
    victim = people[0]
    if where == "rcpt":
        smtpd.handler.faults.rcpt[victim] = [reply]
    else:
        # with one connection the first message is the first in line
        settings = dataclasses.replace(
            settings, smtp=dataclasses.replace(settings.smtp, connections=1)
        )
        smtpd.handler.faults.data = [reply]

    report = send(settings, engine, smtpd, project)

    assert report.finished
    bounced = [e for e, s in states(engine).items() if s == "bounced"]
    assert len(bounced) == 1
    assert report.failed == 1
    assert report.failures[0][0] == bounced[0]
    assert reply.split()[0] in report.failures[0][1]
    counts = smtpd.handler.by_recipient()
    assert counts == {e: 1 for e in people if e != bounced[0]}
    with engine.connect() as conn:
        row = conn.execute(select(suppressions)).one()
    assert row.reason == SuppressionReason.BOUNCED.value
    assert row.email == bounced[0]


@pytest.mark.parametrize("fault", ["data_451", "data_421", "disconnect"])
def test_temporary_data_reply_and_disconnect_in_data_are_retried(
    engine: Engine,
    settings: Settings,
    smtpd: SMTPServer,
    project: Path,
    people: list[str],
    fault: str,
) -> None:
    if fault == "disconnect":
        smtpd.handler.faults.disconnect_in_data = 1
    else:
        smtpd.handler.faults.data = ["451 4.3.0 queue full" if fault == "data_451" else "421 bye"]

    first = send(settings, engine, smtpd, project)
    assert first.pending == 1
    assert first.sent == len(people) - 1
    assert first.next_attempt_at is not None
    assert first.next_attempt_at > T0

    final = send(settings, engine, smtpd, project, now=T0 + timedelta(hours=1))
    assert final.finished
    assert smtpd.handler.by_recipient() == dict.fromkeys(people, 1)


def test_slow_server_times_out_and_is_retried(
    engine: Engine, settings: Settings, smtpd: SMTPServer, project: Path, people: list[str]
) -> None:
    slow = dataclasses.replace(
        settings, smtp=dataclasses.replace(settings.smtp, timeout=0.3, connections=2)
    )
    smtpd.handler.faults.data_delay = 0.6

    first = send(slow, engine, smtpd, project)
    assert first.pending == len(people)
    assert set(states(engine).values()) == {"pending"}

    smtpd.handler.faults.data_delay = 0
    final = send(slow, engine, smtpd, project, now=T0 + timedelta(hours=1))
    assert final.finished
    # a timed-out message may still have been accepted later: at most one extra copy each
    counts = smtpd.handler.by_recipient()
    assert set(counts) == set(people)
    assert all(1 <= n <= 2 for n in counts.values())


def test_relay_down_pauses_and_resumes(
    engine: Engine, settings: Settings, smtpd: SMTPServer, project: Path, people: list[str]
) -> None:
    smtpd.stop()
    paused = send(settings, engine, smtpd, project)
    assert paused.paused is not None
    assert "cannot reach the SMTP server" in paused.paused
    assert paused.pending == len(people)
    assert not paused.finished
    with engine.connect() as conn:
        assert conn.execute(select(func.max(deliveries.c.attempts))).scalar() == 0
        assert conn.execute(select(issues.c.status)).scalar() == SendStatus.PAUSED.value

    smtpd.start()
    resumed = send(settings, engine, smtpd, project)
    assert resumed.finished
    assert smtpd.handler.by_recipient() == dict.fromkeys(people, 1)


def test_sender_refused_pauses_instead_of_bouncing_everyone(
    engine: Engine, settings: Settings, smtpd: SMTPServer, project: Path, people: list[str]
) -> None:
    smtpd.handler.faults.mail = ["550 5.7.1 sender not allowed"] * 20
    report = send(settings, engine, smtpd, project)
    assert report.paused is not None
    assert "refuses the sender" in report.paused
    assert set(states(engine).values()) == {"pending"}
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(suppressions)).scalar() == 0


def test_gives_up_after_max_attempts(
    engine: Engine, settings: Settings, smtpd: SMTPServer, project: Path, people: list[str]
) -> None:
    victim = people[1]
    smtpd.handler.faults.rcpt[victim] = ["451 4.3.0 later"] * 10
    policy = dataclasses.replace(FAST, max_attempts=2)
    send(settings, engine, smtpd, project, policy=policy)
    final = send(settings, engine, smtpd, project, policy=policy, now=T0 + timedelta(hours=1))
    assert final.finished
    assert states(engine)[victim] == "failed"
    assert final.failures == ((victim, "451 4.3.0 later"),)


def test_gives_up_after_max_age(
    engine: Engine, settings: Settings, smtpd: SMTPServer, project: Path, people: list[str]
) -> None:
    victim = people[1]
    smtpd.handler.faults.rcpt[victim] = ["451 4.3.0 later"] * 10
    send(settings, engine, smtpd, project)
    final = send(settings, engine, smtpd, project, now=T0 + timedelta(hours=49))
    assert final.finished
    assert states(engine)[victim] == "failed"


def test_unsubscribed_after_the_send_began_is_skipped(
    engine: Engine, settings: Settings, smtpd: SMTPServer, project: Path, people: list[str]
) -> None:
    s = with_smtp_url(settings, smtpd.url)
    ref, _, created = prepare_issue(s, engine, project / "issues" / ISSUE, now=T0)
    assert created == len(people)
    with engine.begin() as conn:
        sid = conn.execute(
            select(subscribers.c.id).where(subscribers.c.email == people[3])
        ).scalar_one()
        assert unsubscribe(conn, sid, ref.list_id, now=T0)

    report = send(settings, engine, smtpd, project)
    assert report.finished
    assert states(engine)[people[3]] == "failed"
    assert people[3] not in smtpd.handler.by_recipient()
    assert len(smtpd.handler.messages) == len(people) - 1


def test_ledger_rows_are_created_once_and_set_based(
    engine: Engine, settings: Settings, project: Path, people: list[str]
) -> None:
    path = project / "issues" / ISSUE
    ref, _, created = prepare_issue(settings, engine, path, now=T0)
    assert created == len(people)
    add_people(engine, settings, ["late@example.org"])
    again, _, created_again = prepare_issue(settings, engine, path, now=T0)
    assert again.id == ref.id
    assert created_again is None
    counts = SqlLedger(engine).counts(ref)
    assert counts[DeliveryStatus.PENDING] == len(people)


def test_claims_respect_the_limit_and_never_overlap(
    engine: Engine, settings: Settings, project: Path, people: list[str]
) -> None:
    ref, _, _ = prepare_issue(settings, engine, project / "issues" / ISSUE, now=T0)
    ledger = SqlLedger(engine)
    first = ledger.claim(ref, owner="a", now=T0, lease_seconds=60, limit=4)
    second = ledger.claim(ref, owner="b", now=T0, lease_seconds=60, limit=4)
    assert len(first) == 4
    assert len(second) == 2
    assert not {c.subscriber_id for c in first} & {c.subscriber_id for c in second}
    assert ledger.claim(ref, owner="c", now=T0, lease_seconds=60, limit=4) == []
    # an expired lease is claimable again, and counts as another attempt
    later = ledger.claim(ref, owner="c", now=T0 + timedelta(seconds=61), limit=10, lease_seconds=60)
    assert len(later) == 6
    assert {c.attempts for c in later} == {2}


def test_verp_envelope_sender_per_recipient(
    engine: Engine, settings: Settings, smtpd: SMTPServer, project: Path, people: list[str]
) -> None:
    verp = dataclasses.replace(
        settings, smtp=dataclasses.replace(settings.smtp, return_path="bounces@bounce.test.example")
    )
    assert send(verp, engine, smtpd, project).finished
    tokens = DeliveryTokens(settings.token_keys)
    with engine.connect() as conn:
        ids = {r.email: r.id for r in conn.execute(select(subscribers.c.email, subscribers.c.id))}
    issue_id = {ref.issue_id for ref in states_refs(engine)}.pop()
    for received in smtpd.handler.messages:
        (rcpt,) = received.rcpt_tos
        local, _, domain = received.mail_from.partition("@")
        prefix, _, token = local.partition("+")
        # the envelope names the ledger row through a signed token, never the address
        assert (prefix, domain) == ("bounces", "bounce.test.example")
        assert rcpt.split("@")[0] not in received.mail_from
        ref = tokens.read(token)
        assert ref is not None
        assert (ref.issue_id, ref.subscriber_id) == (issue_id, ids[rcpt])
        message = received.message
        assert message["X-Newsletter-Delivery"] == token
        assert message["Message-ID"] == f"<{token}@test.example>"
        assert message["Feedback-ID"] == "flood-barrier-vote:weekly:The-Test-Weekly:test.example"
        # the From header stays the publication's
        assert str(message["From"]) == settings.publication.sender
    assert len(smtpd.handler.messages) == len(people)


def states_refs(engine: Engine) -> list[DeliveryRef]:
    with engine.connect() as conn:
        rows = conn.execute(select(deliveries.c.issue_id, deliveries.c.subscriber_id))
        return [DeliveryRef(a, b) for a, b in rows]


class FlakyLedger(SqlLedger):
    """The real ledger, except that writing outcomes fails the first ``failures`` times."""

    def __init__(self, engine: Engine, failures: int) -> None:
        super().__init__(engine)
        self.failures = failures

    def record(self, *args: Any, **kwargs: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreError("database is locked")
        super().record(*args, **kwargs)


def test_ledger_write_failure_stops_the_send_without_losing_outcomes(
    engine: Engine, settings: Settings, smtpd: SMTPServer, project: Path, people: list[str]
) -> None:
    s = with_smtp_url(settings, smtpd.url)
    ref, rendered, _ = prepare_issue(s, engine, project / "issues" / ISSUE, now=T0)
    template = MessageTemplate(rendered, s, s.mailing_list(ref.list_slug))

    async def deliver() -> None:
        pool = SmtpPool.from_settings(s, connections=1)
        try:
            await DeliveryEngine(
                s, FlakyLedger(engine, 1), pool, policy=FAST, clock=lambda: T0
            ).deliver(ref, template)
        finally:
            await pool.close()

    with pytest.raises(StoreError, match="database is locked"):
        asyncio.run(deliver())
    # what was accepted before the failure was recorded by the last flush, not lost
    sent_before = len(smtpd.handler.messages)
    assert sent_before >= 1
    assert list(states(engine).values()).count("sent") == sent_before
    assert "sending" not in states(engine).values()

    final = send(settings, engine, smtpd, project)
    assert final.finished
    assert smtpd.handler.by_recipient() == dict.fromkeys(people, 1)


def test_leases_are_renewed_so_a_second_engine_never_takes_a_live_batch(
    engine: Engine, settings: Settings, smtpd: SMTPServer, project: Path, people: list[str]
) -> None:
    """A crawling relay keeps a batch longer than its lease; a second engine is free to claim."""
    s = with_smtp_url(settings, smtpd.url)
    ref, rendered, _ = prepare_issue(s, engine, project / "issues" / ISSUE)
    template = MessageTemplate(rendered, s, s.mailing_list(ref.list_slug))
    smtpd.handler.faults.data_delay = 0.25  # six messages take 1.5 s on one connection
    policy = Policy(lease_seconds=1.0, batch_size=len(people), flush_interval=0.01)

    async def one(delay: float) -> None:
        await asyncio.sleep(delay)
        pool = SmtpPool.from_settings(s, connections=1)
        try:
            eng = DeliveryEngine(s, SqlLedger(engine), pool, policy=policy)
            while not issue_sent(engine, ref.slug, ref.list_slug):
                await eng.deliver(ref, template)
                await asyncio.sleep(0.05)
        finally:
            await pool.close()

    async def both() -> None:
        await asyncio.wait_for(asyncio.gather(one(0), one(0.9)), timeout=30)

    asyncio.run(both())
    assert smtpd.handler.by_recipient() == dict.fromkeys(people, 1)
    assert set(states(engine).values()) == {"sent"}


class BrokenSigner:
    """A DKIM signer whose key fails for every message (as the engine hears it)."""

    def sign(
        self, template: MessageTemplate, person: Personalization
    ) -> tuple[bytes, Future[bytes]]:
        signature: Future[bytes] = Future()
        signature.set_exception(ConfigError("dkim", "cannot sign with the configured key"))
        return template.render(person, dot_stuffed=True), signature


def test_a_key_that_cannot_sign_stops_the_send_and_fails_nobody(
    engine: Engine, settings: Settings, smtpd: SMTPServer, project: Path, people: list[str]
) -> None:
    """A setting that is wrong for every message stops the run instead of failing every row."""
    s = with_smtp_url(settings, smtpd.url)
    ref, content, _ = prepare_issue(s, engine, project / "issues" / ISSUE, now=T0)
    template = MessageTemplate(content, s, s.mailing_list(ref.list_slug))
    broken = BrokenSigner()

    async def deliver() -> None:
        pool = SmtpPool.from_settings(s, connections=1)
        try:
            await DeliveryEngine(
                s, SqlLedger(engine), pool, policy=FAST, clock=lambda: T0, signer=broken
            ).deliver(ref, template)
        finally:
            await pool.close()

    with pytest.raises(ConfigError, match="cannot sign"):
        asyncio.run(deliver())
    assert smtpd.handler.messages == []
    assert set(states(engine).values()) == {"pending"}
    with engine.connect() as conn:
        assert set(conn.execute(select(deliveries.c.attempts)).scalars()) == {0}


# --- exact resume: stopped senders, journals, retries, partial relay faults ------------------


def lease_rows(
    engine: Engine, ref_id: int, owner: str, *, now: datetime, count: int | None = None
) -> list[int]:
    """Put the first ``count`` pending rows in ``sending`` under ``owner``'s live lease."""
    with engine.begin() as conn:
        ids = list(
            conn.execute(
                select(deliveries.c.subscriber_id)
                .where(deliveries.c.issue_id == ref_id)
                .order_by(deliveries.c.subscriber_id)
                .limit(count if count is not None else 10**6)
            ).scalars()
        )
        conn.execute(
            deliveries.update()
            .where(deliveries.c.issue_id == ref_id, deliveries.c.subscriber_id.in_(ids))
            .values(
                status="sending",
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=300),
                attempts=1,
            )
        )
    return ids


def zombie() -> tuple[int, str, Any]:
    """A child process that has exited and is not reaped yet: ``(pid, start, popen)``."""
    import subprocess
    import time

    from newsletter.locks import process_start

    proc = subprocess.Popen(["sleep", "0.01"])
    start = process_start(proc.pid)
    assert start is not None
    for _ in range(500):
        found = process_start(proc.pid)
        if found is not None and found[0] == "Z":
            return proc.pid, start[1], proc
        time.sleep(0.01)
    raise AssertionError("the child did not become a zombie")


@pytest.mark.parametrize("how", ["zombie", "reused-pid", "pid-1-again"])
def test_rows_of_a_stopped_sender_are_reclaimed_at_once(
    engine: Engine,
    settings: Settings,
    smtpd: SMTPServer,
    project: Path,
    people: list[str],
    how: str,
) -> None:
    import os

    from newsletter.locks import new_owner, process_start

    s = with_smtp_url(settings, smtpd.url)
    ref, _, _ = prepare_issue(s, engine, project / "issues" / ISSUE, now=T0)
    host = new_owner().rsplit(":", 3)[0]
    proc = None
    if how == "zombie":
        pid, start, proc = zombie()
        owner = f"{host}:{pid}:{start}:0badc0de"
    elif how == "reused-pid":
        # the pid belongs to a live process now, one that started after the owner did
        pid = os.getppid()
        found = process_start(pid)
        assert found is not None
        ticks, _, boot = found[1].partition(".")
        owner = f"{host}:{pid}:{int(ticks) - 1}.{boot}:0badc0de"
    else:
        # the last container's sender was PID 1 too, as this one is: same pid, other process
        owner = f"{host}:{os.getpid()}:1.{'0' * 8}:0badc0de"
    try:
        lease_rows(engine, ref.id, owner, now=datetime.now(UTC), count=4)
        report = send(settings, engine, smtpd, project, now=None)
        assert report.finished, report
        assert smtpd.handler.by_recipient() == dict.fromkeys(people, 1)
    finally:
        if proc is not None:
            proc.wait()


def test_a_live_senders_rows_wait_for_its_lease(
    engine: Engine, settings: Settings, smtpd: SMTPServer, project: Path, people: list[str]
) -> None:
    import os

    from newsletter.locks import new_owner, process_start

    ref, _, _ = prepare_issue(settings, engine, project / "issues" / ISSUE, now=T0)
    host = new_owner().rsplit(":", 3)[0]
    found = process_start(os.getppid())
    assert found is not None
    lease_rows(engine, ref.id, f"{host}:{os.getppid()}:{found[1]}:feedf00d", now=T0, count=2)
    report = send(settings, engine, smtpd, project)
    assert not report.finished
    assert report.counts[DeliveryStatus.SENDING] == 2
    assert report.counts[DeliveryStatus.PENDING] == 0
    assert len(smtpd.handler.messages) == len(people) - 2


def test_the_journal_of_a_killed_sender_is_replayed_before_its_rows_are_sent_again(
    engine: Engine, settings: Settings, smtpd: SMTPServer, project: Path, people: list[str]
) -> None:
    from newsletter.locks import new_owner

    s = with_smtp_url(settings, smtpd.url)
    ref, _, _ = prepare_issue(s, engine, project / "issues" / ISSUE, now=T0)
    pid, start, proc = zombie()
    try:
        owner = f"{new_owner().rsplit(':', 3)[0]}:{pid}:{start}:0badc0de"
        leased = lease_rows(engine, ref.id, owner, now=datetime.now(UTC), count=5)
        # the killed sender had the first three accepted, not yet committed: its journal says so
        ledger = SqlLedger(engine)
        for sid in leased[:3]:
            ledger.note_sent(ref, sid, owner=owner, now=T0)
        journal = ledger.journal.path(owner)
        assert journal.exists()
        # another process's journal of the same database: no file is left open here
        ledger.journal._files.clear()
        report = send(settings, engine, smtpd, project, now=None)
    finally:
        proc.wait()
    assert report.finished
    assert not journal.exists()
    # the three are not sent again; everyone else gets the issue once
    assert len(smtpd.handler.messages) == len(people) - 3
    assert set(states(engine).values()) == {"sent"}
    with engine.connect() as conn:
        replies = conn.execute(
            select(deliveries.c.subscriber_id, deliveries.c.last_reply, deliveries.c.sent_at)
        ).all()
    replayed = {r.subscriber_id for r in replies if "journal of" in (r.last_reply or "")}
    assert replayed == set(leased[:3])
    assert all(r.sent_at == T0 for r in replies if r.subscriber_id in replayed)


def test_a_run_leaves_no_journal_behind(
    engine: Engine, settings: Settings, smtpd: SMTPServer, project: Path, people: list[str]
) -> None:
    noted: list[int] = []

    class Watching(SqlLedger):
        def note_sent(self, issue: Any, subscriber_id: int, **kw: Any) -> None:
            super().note_sent(issue, subscriber_id, **kw)
            noted.append(subscriber_id)

    ledger = Watching(engine)
    s = with_smtp_url(settings, smtpd.url)
    ref, rendered, _ = prepare_issue(s, engine, project / "issues" / ISSUE, now=T0)
    template = MessageTemplate(rendered, s, s.mailing_list(ref.list_slug))

    async def go() -> None:
        pool = SmtpPool.from_settings(s)
        try:
            await DeliveryEngine(s, ledger, pool, policy=FAST, clock=lambda: T0).deliver(
                ref, template
            )
        finally:
            await pool.close()

    asyncio.run(go())
    assert len(noted) == len(people)
    assert not ledger.journal.directory.exists() or not list(ledger.journal.directory.iterdir())


def test_due_retries_are_claimed_before_fresh_rows(
    engine: Engine, settings: Settings, project: Path
) -> None:
    emails = [f"n{i:02d}@example.org" for i in range(30)]
    ids = add_people(engine, settings, emails)
    ref, _, _ = prepare_issue(settings, engine, project / "issues" / ISSUE, now=T0)
    last = ids[emails[-1]]
    with engine.begin() as conn:
        # the last subscriber's first attempt failed a while ago; the retry is due now
        conn.execute(
            deliveries.update()
            .where(deliveries.c.issue_id == ref.id, deliveries.c.subscriber_id == last)
            .values(attempts=1, next_attempt_at=T0 + timedelta(seconds=60))
        )
    ledger = SqlLedger(engine)
    claimed = ledger.claim(
        ref, owner="a", now=T0 + timedelta(seconds=61), lease_seconds=60, limit=5
    )
    assert last in {c.subscriber_id for c in claimed}
    assert len(claimed) == 5


def test_send_stays_for_retries_due_within_max_wait(
    engine: Engine, settings: Settings, smtpd: SMTPServer, project: Path, people: list[str]
) -> None:
    smtpd.handler.faults.rcpt[people[1]] = ["451 4.3.0 later", "451 4.3.0 later"]
    waits: list[datetime] = []

    class Watching(RecordingProgress):
        def waiting(self, until: datetime) -> None:
            waits.append(until)

    policy = dataclasses.replace(FAST, retry_base_seconds=0.3, max_wait=30)
    report = send(settings, engine, smtpd, project, now=None, policy=policy, progress=Watching())
    assert report.finished
    assert smtpd.handler.by_recipient() == dict.fromkeys(people, 1)
    assert len(waits) >= 2, "the progress display heard that the send waits"


def test_retries_due_after_max_wait_leave_the_send_incomplete(
    engine: Engine, settings: Settings, smtpd: SMTPServer, project: Path, people: list[str]
) -> None:
    smtpd.handler.faults.rcpt[people[1]] = ["451 4.3.0 later"]
    policy = dataclasses.replace(FAST, retry_base_seconds=60, max_wait=0.5)
    report = send(settings, engine, smtpd, project, now=None, policy=policy)
    assert not report.finished
    assert report.counts[DeliveryStatus.PENDING] == 1
    assert report.next_attempt_at is not None


@pytest.mark.parametrize(
    "fault",
    ["close", "421 4.7.0 too many connections from your host", "stall"],
    ids=["refused-connect", "421-greeting", "greeting-timeout"],
)
def test_one_bad_connection_of_four_is_not_an_outage(
    engine: Engine, settings: Settings, smtpd: SMTPServer, project: Path, fault: str
) -> None:
    people = [f"b{i:02d}@example.org" for i in range(40)]
    bulk_people(engine, settings, people)
    smtp = dataclasses.replace(settings.smtp, connections=4, timeout=0.5, unreachable_after=30)
    smtpd.handler.faults.greetings = [fault]
    report = send(dataclasses.replace(settings, smtp=smtp), engine, smtpd, project)
    assert report.paused is None
    assert report.finished
    assert smtpd.handler.by_recipient() == dict.fromkeys(people, 1)


def test_the_progress_bar_says_when_the_send_waits() -> None:
    from newsletter.cli.progress import ProgressBar

    bar = ProgressBar()
    bar.start({DeliveryStatus.PENDING: 3, DeliveryStatus.SENT: 1})
    try:
        task = bar.progress.tasks[0]
        assert task.fields["what"] == "sending"
        bar.waiting(datetime(2026, 11, 20, 11, 5, tzinfo=UTC))
        assert task.fields["what"].startswith("waiting for retries due ")
        bar.last = 0.0
        bar.update(2, 2)
        assert task.fields["what"] == "sending"
        assert task.completed == 3
    finally:
        bar.stop()
