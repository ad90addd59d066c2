"""RFC 3464 delivery status notifications: per-recipient Action, Status and Diagnostic-Code.

Reads the ``message/delivery-status`` part (and RFC 6533's ``message/global-delivery-status``)
of a ``multipart/report``: one block of per-message fields, then one block per recipient.
Which failures are hard follows RFC 3463's status codes, see :func:`severity`.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import Message

from newsletter.inbound import mime
from newsletter.inbound.model import Action, Recipient, Severity

STATUS_TYPES = ("message/delivery-status", "message/global-delivery-status")
#: Class-5 codes that describe this message or a full mailbox, not a bad address: a soft
#: failure (RFC 3463: X.2.2 mailbox full, X.3.4 message too big, X.4.7 delivery time expired)
SOFT_PERMANENT = frozenset({"5.2.2", "5.3.4", "5.4.7"})
#: Recipient blocks read from one report; a DSN for more is cut there
MAX_RECIPIENTS = 100

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE = re.compile(r"(?<![\d.])([245])\d\d(?![\d.])")
_ACTIONS = {a.value: a for a in Action}
# opensmtpd writes "Action: error"; older MTAs "failure"
_ACTIONS.update({"error": Action.FAILED, "failure": Action.FAILED})
_MAX_ADDRESS = 320
_MAX_DIAGNOSTIC = 1000


@dataclass
class DeliveryStatus:
    """The fields of one delivery-status part."""

    per_message: dict[str, str] = field(default_factory=dict)
    recipients: list[Recipient] = field(default_factory=list)
    #: recipient blocks that named nobody or had no usable Action
    skipped: int = 0


def find_status_part(parts: Sequence[mime.Part]) -> Message | None:
    return mime.first_of(parts, STATUS_TYPES)


def read_status(part: Message) -> DeliveryStatus:
    """Per-message fields and per-recipient entries of a delivery-status part."""
    blocks = _blocks(part)
    result = DeliveryStatus()
    if not blocks:
        return result
    result.per_message = blocks[0]
    for block in blocks[1 : MAX_RECIPIENTS + 1]:
        recipient = _recipient(block)
        if recipient is None:
            result.skipped += 1
        else:
            result.recipients.append(recipient)
    return result


def severity(action: Action, status: str | None, diagnostic: str | None) -> Severity | None:
    """HARD when the address is bad, SOFT when only this attempt failed, None if no failure.

    ``failed`` with a class-5 status is hard, except :data:`SOFT_PERMANENT`; ``failed`` with
    class 4 (an MTA that gave up retrying) and ``delayed`` are soft. Without a status the
    SMTP code in the diagnostic decides, and a ``failed`` with neither counts as hard: the
    reporting MTA said it gave up for good.
    """
    if action is Action.DELAYED:
        return Severity.SOFT
    if action is not Action.FAILED:
        return None
    if status is None and diagnostic:
        code = _SMTP_CODE.search(diagnostic)
        if code:
            return Severity.HARD if code.group(1) == "5" else Severity.SOFT
    if status is None:
        return Severity.HARD
    if status.startswith("5"):
        return Severity.SOFT if status in SOFT_PERMANENT else Severity.HARD
    return Severity.SOFT


def status_code(text: str | None) -> str | None:
    """The first RFC 3463 status code (``5.1.1``) in ``text``, normalised."""
    if not text:
        return None
    match = _STATUS.search(text)
    if not match:
        return None
    return f"{match.group(1)}.{int(match.group(2))}.{int(match.group(3))}"


def typed_value(value: str | None) -> str | None:
    """The value of ``type; value`` fields (``rfc822; a@b``, ``dns; mx.example``), unbracketed."""
    if not value:
        return None
    kind, sep, rest = value.partition(";")
    text = (rest if sep else kind).strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    return text or None


def _recipient(block: dict[str, str]) -> Recipient | None:
    final = address_value(block.get("final-recipient"))
    original = address_value(block.get("original-recipient"))
    address = final or original or address_value(block.get("x-actual-recipient"))
    action_text = (block.get("action") or "").lower().split(" ", 1)[0].split("(", 1)[0]
    action = _ACTIONS.get(action_text.strip())
    if address is None or action is None:
        return None
    diagnostic = block.get("diagnostic-code")
    if diagnostic:
        # "smtp; 550 5.1.1 ...": the type says how to read it, the rest is what the server said
        kind, sep, rest = diagnostic.partition(";")
        diagnostic = (rest if sep and " " not in kind.strip() else diagnostic).strip()
        diagnostic = diagnostic[:_MAX_DIAGNOSTIC] or None
    status = status_code(block.get("status")) or status_code(diagnostic)
    return Recipient(
        address=address,
        original=original if original and original != address else None,
        action=action,
        status=status,
        severity=severity(action, status, diagnostic),
        diagnostic=diagnostic,
        remote_mta=typed_value(block.get("remote-mta")),
    )


def address_value(value: str | None) -> str | None:
    """The address of an ``rfc822; a@b`` field, or None if it cannot be one."""
    text = typed_value(value)
    if text is None or " " in text or len(text) > _MAX_ADDRESS:
        # a space or a runaway length: not an address someone could have been mailed at
        return None
    return text


def _blocks(part: Message) -> list[dict[str, str]]:
    """The part's field blocks as ``{lowercased name: first value}``."""
    encoding = (mime.header(part, "content-transfer-encoding") or "").lower()
    parsed = mime.children(part)
    # only message/delivery-status is split into blocks by the stdlib parser; it reads the
    # global (RFC 6533) type as one embedded message, headers then a body of further blocks
    split = mime.content_type(part) == "message/delivery-status"
    if parsed and split and encoding not in ("base64", "quoted-printable"):
        blocks = []
        for block in parsed:
            fields: dict[str, str] = {}
            for name, value in mime.fields(block):
                fields.setdefault(name, value)
            if fields:
                blocks.append(fields)
        return blocks
    if parsed:
        # put the text back together: encoded "blocks", or the global type's one message
        text = "\n\n".join(_payload_text(block) for block in parsed)
        if encoding in ("base64", "quoted-printable"):
            text = _decode(text, encoding)
    else:
        text = mime.body_text(part)
    return text_blocks(text)


def _payload_text(block: Message) -> str:
    lines = [f"{name}: {mime.raw_text(value)}" for name, value in block.raw_items()]
    # decode=True gives the bytes as sent; without it compat32 turns 8-bit text into U+FFFD
    payload = mime.body_bytes(block)
    if payload:
        lines.append("")
        lines.append(payload.decode("utf-8", "replace"))
    return "\n".join(lines)


def _decode(text: str, encoding: str) -> str:
    data = text.encode("ascii", "replace")
    try:
        if encoding == "base64":
            raw = base64.b64decode(re.sub(rb"[^A-Za-z0-9+/=]", b"", data) + b"==")
        else:
            raw = quopri.decodestring(data)
    except (binascii.Error, ValueError):
        return ""
    return raw.decode("utf-8", "replace")


def text_blocks(text: str) -> list[dict[str, str]]:
    """``Name: value`` blocks separated by blank lines, continuation lines folded in."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last: str | None = None
    for line in text[: mime.MAX_TEXT_CHARS].splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
            current, last = {}, None
            if len(blocks) > MAX_RECIPIENTS:
                break
            continue
        if line[:1] in (" ", "\t") and last is not None:
            current[last] = mime.clean(current[last] + " " + line)
            continue
        name, sep, value = line.partition(":")
        name = name.strip().lower()
        if sep and name and " " not in name and len(current) < mime.MAX_FIELDS:
            # the first occurrence counts, as in the parsed blocks; a repeat's lines are dropped
            last = None if name in current else name
            current.setdefault(name, mime.clean(value))
        else:
            last = None
    if current:
        blocks.append(current)
    return blocks
