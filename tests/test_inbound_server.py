"""``newsletter inbound`` over real SMTP on loopback: who it takes mail for, what it refuses."""

from __future__ import annotations

import dataclasses
import smtplib
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from newsletter.config import Settings
from newsletter.inbound.intake import Intake
from newsletter.inbound.server import Addresses, InboundServer
from newsletter.sink import free_port
from newsletter.store.events import review_reports
from tests.reports import dsn

TOKEN = "a" * 32


@pytest.fixture
def bounce_settings(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings,
        bounces=dataclasses.replace(
            settings.bounces, domain="bounce.test.example", max_message_bytes=64 * 1024
        ),
    )


@pytest.fixture
def server(bounce_settings: Settings, engine: Engine) -> Iterator[InboundServer]:
    inbound = InboundServer(
        bounce_settings, Intake(bounce_settings, engine), host="127.0.0.1", port=free_port()
    )
    inbound.start()
    yield inbound
    inbound.stop()


def test_the_addresses_it_takes(bounce_settings: Settings) -> None:
    addresses = Addresses.from_settings(bounce_settings)
    for taken in (
        f"bounces+{TOKEN}@bounce.test.example",
        f"BOUNCES+{TOKEN.upper()}@Bounce.Test.Example",
        "bounces@bounce.test.example",
        "fbl@bounce.test.example",
        "unsubscribe@bounce.test.example",
        "unsubscribe@test.example",
    ):
        assert addresses.accepts(taken), taken
    for refused in (
        "someone@example.org",
        f"bounces+{TOKEN}@test.example",
        f"other+{TOKEN}@bounce.test.example",
        "bounces+short@bounce.test.example",
        "postmaster@example.org",
        "bounces",
        f"bounces+{TOKEN}@bounce.test.example.evil.example",
    ):
        assert not addresses.accepts(refused), refused


def test_it_is_never_a_relay_and_keeps_what_it_cannot_match(
    server: InboundServer, engine: Engine
) -> None:
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        client.ehlo("mx.example.net")
        client.mail("MAILER-DAEMON@mx.example.net")
        code, reply = client.rcpt("victim@example.org")
        assert code == 550
        assert b"bounces and reports only" in reply
        assert client.rcpt(f"bounces+{TOKEN}@bounce.test.example")[0] == 250
        report = dsn(
            to=f"bounces+{TOKEN}@bounce.test.example",
            recipients=[("ann@example.org", "failed", "5.1.1")],
        )
        code, _ = client.data(report)
        assert code == 250
    with engine.connect() as conn:
        (kept,) = review_reports(conn)
    # a token-shaped local part that does not verify: stored for review, acted on never
    assert "verifies" in (kept.reason or "")
    assert server.handler.received == 1


def test_a_message_over_the_limit_is_refused(server: InboundServer) -> None:
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        client.ehlo("mx.example.net")
        client.mail("MAILER-DAEMON@mx.example.net")
        client.rcpt(f"bounces+{TOKEN}@bounce.test.example")
        code, _ = client.data(b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 1100)
    assert code == 552


def test_the_store_down_means_try_again_later(bounce_settings: Settings, engine: Engine) -> None:
    engine.dispose()
    broken = dataclasses.replace(bounce_settings)
    from newsletter.store.database import make_engine

    # a database that is not there: the report is not lost, the sender keeps it
    missing = make_engine("sqlite:////nonexistent/dir/db.sqlite")
    inbound = InboundServer(broken, Intake(broken, missing), host="127.0.0.1", port=free_port())
    inbound.start()
    try:
        with smtplib.SMTP("127.0.0.1", inbound.port, timeout=10) as client:
            client.ehlo("mx.example.net")
            client.mail("MAILER-DAEMON@mx.example.net")
            client.rcpt(f"bounces+{TOKEN}@bounce.test.example")
            code, _ = client.data(b"Subject: x\r\n\r\nhello\r\n")
        assert code == 451
    finally:
        inbound.stop()
        missing.dispose()


def test_one_message_to_two_verp_addresses_is_two_reports(
    server: InboundServer, engine: Engine
) -> None:
    other = "b" * 32
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        client.sendmail(
            "MAILER-DAEMON@mx.example.net",
            [f"bounces+{TOKEN}@bounce.test.example", f"bounces+{other}@bounce.test.example"],
            b"Subject: Undelivered Mail\r\n\r\nno such user\r\n",
        )
    with engine.connect() as conn:
        kept = review_reports(conn)
    assert len(kept) == 2
