"""The bulk SMTP path never lets an address carry a command of its own to the server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from newsletter.errors import PermanentDeliveryError, TransportUnavailableError
from newsletter.transport import SmtpPool, parse_smtp_url
from tests.smtpd import SMTPServer

DATA = b"Subject: x\r\nTo: ok@example.org\r\n\r\nbody\r\n"

HOSTILE = [
    "a@example.org>\r\nRCPT TO:<victim@example.org",
    "a@example.org\nRCPT TO:<victim@example.org>",
    "a@example.org\rDATA",
    "a@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;victim@example.org",
    "victim@example.org> <x@example.org",
    "a b@example.org",
    "jöhn@example.org",
    "a@bücher.example.org",
    "a@example.org\x00",
    "",
]


def _send(smtpd: SMTPServer, sender: str, recipients: list[str]) -> Any:
    async def go() -> Any:
        pool = SmtpPool(parse_smtp_url(smtpd.url), local_hostname="sender.test", timeout=2)
        try:
            return await pool.send(sender, recipients, DATA)
        finally:
            await pool.close()

    return asyncio.run(go())


def test_hostile_recipients_are_refused_locally_and_never_reach_the_server(
    smtpd: SMTPServer,
) -> None:
    result = _send(smtpd, "a@test.example", ["ok@example.org", *HOSTILE])
    assert result.accepted == ("ok@example.org",)
    for address in HOSTILE:
        assert isinstance(result.refused[address], PermanentDeliveryError)
    assert [m.rcpt_tos for m in smtpd.handler.messages] == [["ok@example.org"]]


@pytest.mark.parametrize("sender", HOSTILE[:6])
def test_hostile_envelope_sender_stops_before_mail_from(smtpd: SMTPServer, sender: str) -> None:
    with pytest.raises(TransportUnavailableError):
        _send(smtpd, sender, ["ok@example.org"])
    assert smtpd.handler.messages == []
