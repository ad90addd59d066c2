"""The SMTP pool against a real server: partial acceptance, recycling, reconnects, limits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from newsletter.errors import (
    PermanentDeliveryError,
    TemporaryDeliveryError,
    TransportUnavailableError,
)
from newsletter.transport import HourlyCap, SmtpPool, TokenBucket, parse_smtp_url
from tests.smtpd import RecordingHandler, SMTPServer

DATA = b"From: a@test.example\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n"


class CountingHandler(RecordingHandler):
    """Also counts sessions (EHLO commands)."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions = 0

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.sessions += 1
        session.host_name = hostname
        return responses


@pytest.fixture
def smtp_handler() -> RecordingHandler:
    return CountingHandler()


def pool(smtpd: SMTPServer, **kw: Any) -> SmtpPool:
    kw.setdefault("timeout", 2)
    kw.setdefault("unreachable_after", 1)
    return SmtpPool(parse_smtp_url(smtpd.url), local_hostname="sender.test", **kw)


def test_partial_acceptance(smtpd: SMTPServer) -> None:
    smtpd.handler.faults.rcpt = {
        "bad@example.org": ["550 5.1.1 unknown"],
        "busy@example.org": ["452 4.2.2 full"],
    }

    async def go() -> Any:
        p = pool(smtpd)
        try:
            return await p.send(
                "a@test.example", ["ok@example.org", "bad@example.org", "busy@example.org"], DATA
            )
        finally:
            await p.close()

    result = asyncio.run(go())
    assert result.accepted == ("ok@example.org",)
    assert isinstance(result.refused["bad@example.org"], PermanentDeliveryError)
    assert result.refused["bad@example.org"].code == 550
    assert isinstance(result.refused["busy@example.org"], TemporaryDeliveryError)
    assert result.code == 250
    assert [m.rcpt_tos for m in smtpd.handler.messages] == [["ok@example.org"]]


def test_all_refused_returns_no_accepted_and_connection_stays_usable(smtpd: SMTPServer) -> None:
    smtpd.handler.faults.rcpt = {"bad@example.org": ["550 no"]}

    async def go() -> Any:
        p = pool(smtpd, connections=1)
        try:
            first = await p.send("a@test.example", ["bad@example.org"], DATA)
            second = await p.send("a@test.example", ["ok@example.org"], DATA)
            return first, second
        finally:
            await p.close()

    first, second = asyncio.run(go())
    assert first.accepted == ()
    assert second.accepted == ("ok@example.org",)
    handler = smtpd.handler
    assert isinstance(handler, CountingHandler)
    assert handler.sessions == 1


def test_connections_are_recycled_and_reused(smtpd: SMTPServer) -> None:
    async def go() -> None:
        p = pool(smtpd, connections=1, recycle_after=3)
        try:
            for i in range(7):
                await p.send("a@test.example", [f"r{i}@example.org"], DATA)
        finally:
            await p.close()

    asyncio.run(go())
    handler = smtpd.handler
    assert isinstance(handler, CountingHandler)
    assert len(handler.messages) == 7
    assert handler.sessions == 3  # 3 + 3 + 1 messages


def test_reconnects_after_the_server_dropped_an_idle_connection(smtpd: SMTPServer) -> None:
    async def go() -> tuple[int, int]:
        p = pool(smtpd, connections=1)
        try:
            await p.send("a@test.example", ["one@example.org"], DATA)
            # the relay restarts: the pooled connection is dead but nothing was sent on it
            smtpd.stop()
            smtpd.start()
            await p.send("a@test.example", ["two@example.org"], DATA)
        finally:
            await p.close()
        return 0, 0

    asyncio.run(go())
    assert smtpd.handler.by_recipient() == {"one@example.org": 1, "two@example.org": 1}


def test_unreachable_relay_and_refused_sender(smtpd: SMTPServer) -> None:
    smtpd.handler.faults.mail = ["553 5.7.1 not your domain"]

    async def refused() -> None:
        p = pool(smtpd)
        try:
            await p.send("a@test.example", ["x@example.org"], DATA)
        finally:
            await p.close()

    with pytest.raises(TransportUnavailableError, match="refuses the sender"):
        asyncio.run(refused())

    smtpd.stop()
    with pytest.raises(TransportUnavailableError, match="cannot reach the SMTP server"):
        asyncio.run(refused())


def send_many(p: SmtpPool, n: int) -> list[str]:
    """``n`` messages at once through ``p``; the recipients, in order."""
    rcpts = [f"m{i}@example.org" for i in range(n)]

    async def go() -> None:
        try:
            await asyncio.gather(*(p.send("a@test.example", [r], DATA) for r in rcpts))
        finally:
            await p.close()

    asyncio.run(go())
    return rcpts


@pytest.mark.parametrize(
    "fault",
    ["close", "421 4.3.2 service not available, closing channel", "stall"],
    ids=["refused-connect", "421-greeting", "greeting-timeout"],
)
def test_one_bad_connection_is_taken_out_and_the_others_keep_sending(
    smtpd: SMTPServer, fault: str
) -> None:
    # the first of four connections fails to open: its messages go through the other three
    smtpd.handler.faults.greetings = [fault]
    p = pool(smtpd, connections=4, timeout=0.5, unreachable_after=30)
    rcpts = send_many(p, 20)
    assert smtpd.handler.by_recipient() == dict.fromkeys(rcpts, 1)
    assert smtpd.handler.connections >= 4
    assert p.active == 4


def test_a_slot_that_keeps_failing_backs_off_and_comes_back(smtpd: SMTPServer) -> None:
    # one connection fails three times in a row; with backoff it is tried again and works
    smtpd.handler.faults.greetings = ["close", "close", "close"]
    p = pool(smtpd, connections=1, unreachable_after=30)
    p.BACKOFF_FIRST = 0.05
    rcpts = send_many(p, 3)
    assert smtpd.handler.by_recipient() == dict.fromkeys(rcpts, 1)
    assert smtpd.handler.connections == 4


def test_no_connection_for_unreachable_after_is_an_outage(smtpd: SMTPServer) -> None:
    smtpd.handler.faults.greetings = ["421 4.3.2 down for maintenance"] * 1000
    p = pool(smtpd, connections=2, unreachable_after=0.5)
    p.BACKOFF_FIRST = 0.05
    with pytest.raises(TransportUnavailableError, match=r"421.*no connection opened for 0.5 s"):
        send_many(p, 4)
    assert smtpd.handler.messages == []


def test_a_pool_idle_for_long_still_counts_an_outage_from_the_first_failure(
    smtpd: SMTPServer,
) -> None:
    # a worker's pool sits idle between sends; one refused connect after that is no outage
    p = pool(smtpd, connections=2, unreachable_after=0.3)

    async def go() -> None:
        try:
            await p.send("a@test.example", ["first@example.org"], DATA)
            await asyncio.sleep(0.5)
            smtpd.handler.faults.greetings = ["close"]
            await asyncio.gather(
                *(p.send("a@test.example", [f"m{i}@example.org"], DATA) for i in range(6))
            )
        finally:
            await p.close()

    asyncio.run(go())
    assert len(smtpd.handler.messages) == 7


def test_too_many_connections_shrinks_the_pool(smtpd: SMTPServer) -> None:
    # the relay takes one connection from us and answers 421 to a second one
    smtpd.handler.faults.greetings = ["", "421 4.7.0 too many connections from your IP"]
    p = pool(smtpd, connections=2, unreachable_after=30)

    async def go() -> None:
        try:
            await p.send("a@test.example", ["first@example.org"], DATA)
            await asyncio.gather(
                *(p.send("a@test.example", [f"m{i}@example.org"], DATA) for i in range(10))
            )
        finally:
            await p.close()

    asyncio.run(go())
    assert p.active == 1
    assert len(smtpd.handler.messages) == 11
    assert smtpd.handler.connections == 2


def test_timeout_is_temporary(smtpd: SMTPServer) -> None:
    smtpd.handler.faults.data_delay = 1.0

    async def go() -> None:
        p = pool(smtpd, timeout=0.2)
        try:
            await p.send("a@test.example", ["x@example.org"], DATA)
        finally:
            await p.close()

    with pytest.raises(TemporaryDeliveryError, match="timed out"):
        asyncio.run(go())


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_token_bucket_limits_the_rate() -> None:
    t = FakeTime()
    bucket = TokenBucket(10, burst=1, clock=t.clock, sleep=t.sleep)

    async def go() -> None:
        for _ in range(21):
            await bucket.acquire()

    asyncio.run(go())
    # the first is free, the next 20 take 0.1 s each
    assert t.now == pytest.approx(2.0)


def test_hourly_cap_waits_for_the_window() -> None:
    t = FakeTime()
    cap = HourlyCap(3, clock=t.clock, sleep=t.sleep)
    cap.seed([3500.0])  # one sent 3500 s ago by an earlier run

    async def go() -> list[float]:
        times = []
        for _ in range(4):
            await cap.acquire()
            times.append(t.now)
        return times

    times = asyncio.run(go())
    # two slots free now; the third opens when the seeded one ages out (100 s); the fourth
    # waits for the first of this run to age out
    assert times[:2] == [0.0, 0.0]
    assert times[2] == pytest.approx(100.0)
    assert times[3] == pytest.approx(3600.0)


@pytest.mark.parametrize(
    "data",
    [
        b"Subject: dots\r\n\r\n.leading dot\r\n..two\r\nend.\r\n",
        b".first line is a dot\r\n\r\nbody",
        b"Subject: bare\n\nline feeds only\n.dot after LF\nno final newline",
    ],
)
def test_dots_and_line_endings_arrive_intact(smtpd: SMTPServer, data: bytes) -> None:
    async def go() -> None:
        p = pool(smtpd)
        try:
            await p.send("a@test.example", ["x@example.org"], data)
        finally:
            await p.close()

    asyncio.run(go())
    expected = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    assert smtpd.handler.messages[0].data == expected
