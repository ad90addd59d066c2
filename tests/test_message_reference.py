"""The reference message build: List-Unsubscribe stays raw from build to the relay."""

from __future__ import annotations

import asyncio
import email
import email.policy
from pathlib import Path

import pytest

from newsletter.config import Settings
from newsletter.errors import InvalidAddressError
from newsletter.issues import load_issue
from newsletter.message import build_email_message
from newsletter.rendering import Renderer
from newsletter.transport import send_single
from tests.smtpd import SMTPServer

TOKEN = "A" * 56
URL = f"https://news.test.example/unsubscribe/{TOKEN}"
MAILTO = f"mailto:unsubscribe@test.example?subject=unsubscribe%20{TOKEN}"


@pytest.fixture
def message_args(settings: Settings, project: Path) -> dict[str, object]:
    issue = load_issue(next((project / "issues").glob("2026-11-20-*.md")), settings)
    return {
        "content": Renderer(settings).render(issue),
        "settings": settings,
        "mailing_list": settings.mailing_list(None),
    }


def raw_header(data: bytes, name: bytes) -> bytes:
    """The header as written on the wire, folded lines joined."""
    head = data.split(b"\r\n\r\n" if b"\r\n\r\n" in data else b"\n\n", 1)[0]
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    out: list[bytes] = []
    inside = False
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if inside:
                out[-1] += line
            continue
        inside = line.lower().startswith(name.lower() + b":")
        if inside:
            out.append(line)
    assert len(out) == 1, out
    return out[0]


def test_list_unsubscribe_is_written_raw(message_args: dict[str, object]) -> None:
    msg = build_email_message(
        **message_args, to="r@example.org", unsubscribe_url=URL, unsubscribe_mailto=MAILTO
    )  # type: ignore[arg-type]
    data = msg.as_bytes()
    header = raw_header(data, b"List-Unsubscribe")
    assert b"=?" not in header
    assert header == f"List-Unsubscribe: <{URL}>, <{MAILTO}>".encode()
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert not parsed.defects
    assert parsed["List-Unsubscribe"] == f"<{URL}>, <{MAILTO}>"


def test_send_single_keeps_list_unsubscribe_raw(
    message_args: dict[str, object], smtpd: SMTPServer, settings: Settings
) -> None:
    import dataclasses

    msg = build_email_message(
        **message_args, to="r@example.org", unsubscribe_url=URL, unsubscribe_mailto=MAILTO
    )  # type: ignore[arg-type]
    asyncio.run(send_single(dataclasses.replace(settings, smtp_url=smtpd.url), msg))
    [received] = smtpd.handler.messages
    assert received.rcpt_tos == ["r@example.org"]
    assert b"=?" not in raw_header(received.data, b"List-Unsubscribe")
    assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.parametrize("field", ["to", "unsubscribe_url", "unsubscribe_mailto"])
def test_line_breaks_never_reach_a_header(message_args: dict[str, object], field: str) -> None:
    values = {"to": "r@example.org", "unsubscribe_url": URL, "unsubscribe_mailto": MAILTO}
    values[field] += "\r\nBcc: victim@example.org"
    with pytest.raises(InvalidAddressError):
        build_email_message(**message_args, **values)  # type: ignore[arg-type]


def test_stable_message_id_is_opaque_and_repeatable() -> None:
    from newsletter.message import stable_message_id

    uid = "ab" * 16
    first = stable_message_id(b"k" * 32, 12, uid, "test.example")
    assert first == stable_message_id(b"k" * 32, 12, uid, "test.example")
    assert first != stable_message_id(b"k" * 32, 13, uid, "test.example")
    assert first != stable_message_id(b"j" * 32, 12, uid, "test.example")
    local = first[1:].split("@")[0]
    assert "12" not in local.split(".")
    assert uid[:8] not in local
    assert first.endswith("@test.example>")
