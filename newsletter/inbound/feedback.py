"""RFC 5965 feedback reports (ARF): the complaints of mailbox providers' feedback loops.

A report is a ``multipart/report; report-type=feedback-report`` of a human-readable part, a
``message/feedback-report`` part (``Feedback-Type``, ``User-Agent``, ``Original-Mail-From``,
``Original-Rcpt-To`` ...) and the complained-about message or its headers. Providers often
redact the recipient (``Original-Rcpt-To`` missing, ``xxxxx@``, ``redacted@``); the report is
then matched through the original's headers, which is why every issue carries our delivery
header.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.utils import parseaddr

from newsletter.inbound import dsn, mime
from newsletter.inbound.model import FeedbackType

FEEDBACK_TYPES = ("message/feedback-report",)
COMPLAINT_TYPES = frozenset(
    {FeedbackType.ABUSE, FeedbackType.FRAUD, FeedbackType.VIRUS, FeedbackType.OTHER}
)
# a local part of only x, *, # or dots, or one that says it was removed
_REDACTED_LOCAL = re.compile(r"[xX*#.\-_]+|.*redacted.*|.*removed.*|.*hidden.*", re.IGNORECASE)
_TYPES = {t.value: t for t in FeedbackType}
# RFC 5965 predecessors and providers' spellings
_TYPES.update({"complaint": FeedbackType.ABUSE, "spam": FeedbackType.ABUSE})


@dataclass
class FeedbackFields:
    fields: dict[str, str] = field(default_factory=dict)
    feedback_type: FeedbackType | None = None
    #: the raw Feedback-Type when it is not one we know
    unknown_type: str | None = None


def find_feedback_part(parts: Sequence[mime.Part]) -> Message | None:
    return mime.first_of(parts, FEEDBACK_TYPES)


def read_feedback(part: Message) -> FeedbackFields:
    """The machine-readable fields of a ``message/feedback-report`` part."""
    values: dict[str, str] = {}
    blocks = mime.children(part)
    if blocks:
        # parsed as an embedded message: its header section is the report's fields
        for block in blocks[:1]:
            for name, value in mime.fields(block):
                values.setdefault(name, value)
    if not values:
        for text_block in dsn.text_blocks(mime.body_text(part)):
            for name, value in text_block.items():
                values.setdefault(name, value)
    result = FeedbackFields(fields=values)
    raw_type = (values.get("feedback-type") or "").strip().lower()
    result.feedback_type = _TYPES.get(raw_type)
    if raw_type and result.feedback_type is None:
        result.unknown_type = raw_type[:64]
    return result


def is_redacted(address: str | None) -> bool:
    """Whether ``address`` is missing or masked by the provider rather than a real mailbox."""
    if not address:
        return True
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return True
    return _REDACTED_LOCAL.fullmatch(local) is not None


def reported_recipient(fields: dict[str, str], original_to: str | None) -> str | None:
    """The complaining recipient, if the report names one that is not redacted."""
    for candidate in (dsn.address_value(fields.get("original-rcpt-to")), _address(original_to)):
        if candidate and not is_redacted(candidate):
            return candidate
    return None


def _address(value: str | None) -> str | None:
    if not value:
        return None
    address = parseaddr(value)[1]
    return dsn.address_value(address)
