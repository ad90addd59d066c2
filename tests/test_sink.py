"""The local sink stores each message it receives once in a Maildir, with the envelope."""

from __future__ import annotations

import asyncio
import email
import email.policy
import mailbox
import socket
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from newsletter.errors import SinkError
from newsletter.sink import Sink, count_messages


def make(to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "weekly@test.example"
    msg["To"] = to
    msg["Subject"] = "Grüße"
    msg.set_content("hello ünïcode")
    return msg


def test_sink_files_messages_in_a_maildir(tmp_path: Path) -> None:
    maildir = tmp_path / "maildir"
    with Sink(maildir) as sink:
        assert sink.host == "127.0.0.1"

        async def go() -> None:
            for to in ("a@example.org", "b@example.org"):
                await aiosmtplib.send(make(to), hostname=sink.host, port=sink.port)

        asyncio.run(go())
        assert sink.handler.received == 2
    assert count_messages(maildir) == 2
    stored = sorted(
        (
            email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
            for f in (maildir / "new").iterdir()
        ),
        key=lambda m: str(m["X-Sink-Envelope-To"]),
    )
    assert [m["X-Sink-Envelope-To"] for m in stored] == ["a@example.org", "b@example.org"]
    assert stored[0]["X-Sink-Envelope-From"] == "<weekly@test.example>"
    assert stored[0]["Subject"] == "Grüße"
    assert len(mailbox.Maildir(str(maildir))) == 2
    assert len(list((maildir / "new").iterdir())) == 2


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sink = Sink(tmp_path / "m", port=port)
        with pytest.raises(SinkError, match=f"cannot listen on 127.0.0.1:{port}"):
            sink.start()


def test_count_of_missing_maildir_is_zero(tmp_path: Path) -> None:
    assert count_messages(tmp_path / "none") == 0
