"""The aiosmtplib internals the bulk path relies on, and the public-API path it falls back to."""

from __future__ import annotations

import asyncio
import re
from importlib.metadata import version

import aiosmtplib
import pytest

from newsletter.transport import (
    AIOSMTPLIB_INTERNALS,
    SmtpPool,
    _BulkSMTP,
    close_session,
    open_session,
    parse_smtp_url,
)
from tests.conftest import REPO
from tests.smtpd import SMTPServer

PIN = re.search(r'"(aiosmtplib[^"]*)"', (REPO / "pyproject.toml").read_text()).group(1)  # type: ignore[union-attr]


def test_the_internals_the_fast_path_writes_through_are_still_there(smtpd: SMTPServer) -> None:
    """Fails loudly, naming what is gone, when an aiosmtplib release drops one of them."""

    async def missing() -> list[str]:
        smtp = await open_session(parse_smtp_url(smtpd.url), _BulkSMTP, timeout=5)
        try:
            gone = [
                f"SMTPProtocol.{name}"
                for name in AIOSMTPLIB_INTERNALS["SMTPProtocol"]
                if not hasattr(smtp.protocol, name)
            ]
            gone += [
                f"SMTP.{name}"
                for name in AIOSMTPLIB_INTERNALS["SMTP"]
                if not callable(getattr(smtp, name, None))
            ]
            lock = getattr(smtp.protocol, "_command_lock", None)
            if lock is not None and not isinstance(lock, asyncio.Lock):
                gone.append("SMTPProtocol._command_lock (no longer an asyncio.Lock)")
            return gone
        finally:
            await close_session(smtp)

    gone = asyncio.run(missing())
    assert not gone, (
        f"aiosmtplib {version('aiosmtplib')} no longer has {', '.join(gone)}. "
        "newsletter.transport._BulkSMTP (mail_fast, data_prepared) writes through these; "
        "without them every message takes aiosmtplib's public path, several times slower "
        "(benchmarks/send.py). Adapt _BulkSMTP to this release, then move the pin "
        f"{PIN!r} in pyproject.toml."
    )


def test_the_installed_aiosmtplib_is_inside_the_pin() -> None:
    assert PIN == "aiosmtplib>=3.0,<6"
    major = int(version("aiosmtplib").split(".")[0])
    assert 3 <= major < 6, f"aiosmtplib {version('aiosmtplib')} is outside {PIN}"


@pytest.mark.parametrize(
    ("internals", "prepared"),
    [(False, True), (False, False), (True, True)],
    ids=["public-prepared", "public-raw", "fast"],
)
def test_both_paths_deliver_the_same_bytes(
    smtpd: SMTPServer, monkeypatch: pytest.MonkeyPatch, internals: bool, prepared: bool
) -> None:
    monkeypatch.setattr(_BulkSMTP, "use_internals", internals)
    used: list[str] = []
    public_data = aiosmtplib.SMTP.data

    async def data(self: aiosmtplib.SMTP, message: bytes, **kw: object) -> object:
        used.append("data")
        return await public_data(self, message, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(_BulkSMTP, "data", data)
    message = b"Subject: fallback\r\n\r\n.leading dot\r\n..two dots\r\nend.\r\n"
    # what MessageTemplate.render(dot_stuffed=True) hands the pool: dots doubled already
    stuffed = message.replace(b"\r\n.", b"\r\n..")

    async def go() -> None:
        pool = SmtpPool(parse_smtp_url(smtpd.url), connections=1, timeout=5)
        try:
            for rcpt in ("a@example.org", "b@example.org"):
                data = stuffed if prepared else message
                result = await pool.send("sender@test.example", [rcpt], data, prepared=prepared)
                assert result.accepted == (rcpt,)
        finally:
            await pool.close()

    asyncio.run(go())
    # the public path goes through aiosmtplib's data(); the fast one never does
    assert used == ([] if internals else ["data", "data"])
    assert [m.rcpt_tos for m in smtpd.handler.messages] == [["a@example.org"], ["b@example.org"]]
    assert {m.data for m in smtpd.handler.messages} == {message}
