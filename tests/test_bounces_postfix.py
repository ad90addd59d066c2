"""The whole loop through a real Postfix: it accepts every issue, the destination refuses some
recipients, Postfix writes real DSNs to the VERP envelope sender and hands them to
``newsletter inbound`` through a transport map; the hard-bounced are suppressed and left out
of the next send."""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from newsletter.config import Settings
from newsletter.inbound.intake import Intake
from newsletter.inbound.server import InboundServer
from newsletter.sending import run_send, with_smtp_url
from newsletter.sink import free_port
from newsletter.states import DeliveryStatus, EventKind, SuppressionReason
from newsletter.store.events import list_events, raw_report
from newsletter.store.schema import deliveries, subscribers
from newsletter.store.subscribers import suppression_reason
from tests.postfix import Postfix, require_postfix, service_root
from tests.smtpd import SMTPServer
from tests.test_delivery import FAST, add_people

pytestmark = pytest.mark.slow

BOUNCE_DOMAIN = "bounce.test.example"
GOOD = ["ann@example.org", "bob@example.org"]
GONE = ["gone1@example.org", "gone2@example.org"]
FULL = ["full@example.org"]


@pytest.fixture
def relay_settings(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings, bounces=dataclasses.replace(settings.bounces, domain=BOUNCE_DOMAIN)
    )


@pytest.fixture
def inbound(relay_settings: Settings, engine: Engine) -> Iterator[InboundServer]:
    server = InboundServer(
        relay_settings, Intake(relay_settings, engine), host="127.0.0.1", port=free_port()
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def postfix(smtpd: SMTPServer, inbound: InboundServer) -> Iterator[Postfix]:
    require_postfix()
    root = service_root("newsletter-postfix-")
    instance = Postfix(root, {"example.org": smtpd.port, BOUNCE_DOMAIN: inbound.port})
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(root, ignore_errors=True)


def wait_for(condition, what: str, postfix: Postfix, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    # waits for Postfix's queue to do its work; the assertion is the condition, not the time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}; Postfix log:\n{postfix.log()[-4000:]}")


def test_postfix_dsns_suppress_the_hard_bounced(
    relay_settings: Settings,
    engine: Engine,
    smtpd: SMTPServer,
    postfix: Postfix,
    inbound: InboundServer,
    project: Path,
) -> None:
    add_people(engine, relay_settings, GOOD + GONE + FULL)
    for address in GONE:
        smtpd.handler.faults.rcpt[address] = ["550 5.1.1 <" + address + ">: no such user"]
    for address in FULL:
        smtpd.handler.faults.rcpt[address] = ["452 4.2.2 <" + address + ">: mailbox full"]
    via_postfix = with_smtp_url(relay_settings, postfix.url)
    issues = sorted((project / "issues").glob("2026-*.md"))

    report = run_send(via_postfix, engine, issues[0], policy=FAST)
    # Postfix takes every message with 250: the relay says nothing about the failures then
    # (its DSNs may already be in by the time the report is read: counts can show bounced)
    assert report.finished
    assert report.sent_now == 5

    def reports_in() -> bool:
        with engine.connect() as conn:
            return len(list_events(conn)) >= 3

    wait_for(reports_in, "three DSNs through newsletter inbound", postfix)
    with engine.connect() as conn:
        events = list_events(conn)
        by_email = {e.email: e for e in events}
        for address in GONE:
            assert suppression_reason(conn, address) is SuppressionReason.BOUNCED
        for address in GOOD + FULL:
            assert suppression_reason(conn, address) is None
        rows = {
            r.email: (r.status, r.sent_at)
            for r in conn.execute(
                select(subscribers.c.email, deliveries.c.status, deliveries.c.sent_at).join(
                    subscribers, subscribers.c.id == deliveries.c.subscriber_id
                )
            )
        }
        raw = raw_report(conn, by_email["gone1@example.org"].report_id)
    assert set(by_email) == set(GONE + FULL)
    for address in GONE:
        event = by_email[address]
        assert (event.kind, event.severity.value, event.status) == (  # type: ignore[union-attr]
            EventKind.BOUNCE,
            "hard",
            "5.1.1",
        )
        assert "no such user" in (event.diagnostic or "")
        # the ledger keeps both: accepted by the relay, then bounced
        assert rows[address][0] == DeliveryStatus.BOUNCED.value
        assert rows[address][1] is not None
    soft = by_email["full@example.org"]
    assert (soft.kind, soft.severity.value, soft.status) == (EventKind.BOUNCE, "soft", "4.2.2")  # type: ignore[union-attr]
    assert rows["full@example.org"][0] == DeliveryStatus.FAILED.value
    for address in GOOD:
        assert rows[address][0] == DeliveryStatus.SENT.value
    # a real DSN from Postfix, about our envelope and our ENVID
    assert raw is not None
    assert b"Reporting-MTA: dns; mail.test.example" in raw
    token = next(m for m in smtpd.handler.messages if m.rcpt_tos == ["ann@example.org"])
    assert token.mail_from.startswith("bounces+")
    assert b"Original-Envelope-Id: " in raw
    assert {m.rcpt_tos[0] for m in smtpd.handler.messages} == set(GOOD)

    smtpd.handler.reset()
    report = run_send(via_postfix, engine, issues[1], policy=FAST)
    assert report.finished
    assert report.recipients == 3

    def delivered() -> bool:
        return len(smtpd.handler.messages) >= 3

    wait_for(delivered, "the next issue at the destination", postfix)
    assert sorted(m.rcpt_tos[0] for m in smtpd.handler.messages) == sorted(GOOD + FULL)
