"""Where a report says which message of ours it is about: tokens and the original's headers.

A delivery token can arrive in the envelope recipient of the report (the VERP address it was
sent to), in ``Delivered-To``/``X-Original-To``/``To`` of the report, in a DSN's
``Original-Envelope-Id`` (when we sent ``ENVID``) or ``X-Postfix-Sender``, in a feedback
report's ``Original-Mail-From``, and in the returned original: its ``Return-Path`` and our
delivery header. A non-MIME bounce quotes the original as text, which is searched too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from email.message import Message

from newsletter.inbound import mime
from newsletter.inbound.model import OriginalMessage, TokenCandidate, TokenSource
from newsletter.inbound.verp import DELIVERY_HEADER, is_token, token_in_address

#: Parts that carry the message a report is about (whole, or only its header section)
ORIGINAL_TYPES = ("message/rfc822", "message/global")
ORIGINAL_HEADER_TYPES = ("text/rfc822-headers", "message/global-headers")

_MESSAGE_ID = re.compile(r"<[^<>\s]{1,250}>")
# header lines of an original quoted in a plain-text bounce (qmail, Exim, old Postfix)
_INLINE = re.compile(
    r"^[ \t>]*(message-id|list-id|return-path|x-newsletter-delivery|feedback-id|subject|to)"
    r"[ \t]*:[ \t]*([^\r\n]{1,400})",
    re.IGNORECASE | re.MULTILINE,
)
_DELIVERY = DELIVERY_HEADER.lower()


class Finder:
    """Collects token candidates from a report, most direct source first."""

    def __init__(self) -> None:
        self.found: list[TokenCandidate] = []

    def address(self, value: str | None, source: TokenSource) -> None:
        if value:
            token = token_in_address(value)
            if token is not None:
                self._add(token, source)

    def bare(self, value: str | None, source: TokenSource) -> None:
        """A field that holds the token itself (ENVID, our header), or a VERP address."""
        if not value:
            return
        value = value.strip().strip("<>").strip()
        if is_token(value):
            self._add(value.lower(), source)
        else:
            self.address(value, source)

    def text(self, value: str) -> None:
        self.address(value, TokenSource.BODY)

    def _add(self, token: str, source: TokenSource) -> None:
        candidate = TokenCandidate(token, source)
        if candidate not in self.found:
            self.found.append(candidate)

    def result(self) -> tuple[TokenCandidate, ...]:
        order = list(TokenSource)
        return tuple(sorted(self.found, key=lambda c: order.index(c.source)))


def report_headers(message: Message, envelope_recipient: str | None, finder: Finder) -> None:
    """Tokens in how the report reached us."""
    finder.address(envelope_recipient, TokenSource.ENVELOPE_RECIPIENT)
    for value in mime.header_all(message, "delivered-to"):
        finder.address(value, TokenSource.DELIVERED_TO)
    for value in mime.header_all(message, "x-original-to"):
        finder.address(value, TokenSource.X_ORIGINAL_TO)
    finder.address(mime.header(message, "to"), TokenSource.TO)


def find_original(parts: Sequence[mime.Part]) -> Message | None:
    """The returned message (or its header section) attached to a report, if any."""
    for part in parts:
        if part.depth == 0:
            continue
        if part.content_type in ORIGINAL_TYPES:
            inner = mime.children(part.message)
            if inner:
                return inner[0]
        elif part.content_type in ORIGINAL_HEADER_TYPES:
            # message/global-headers is parsed as an embedded message already
            inner = mime.children(part.message)
            return inner[0] if inner else mime.parse_headers(mime.body_text(part.message))
    return None


def original_message(original: Message, finder: Finder) -> OriginalMessage:
    """What the returned original's headers say, and the tokens in them."""
    return_path = mime.header(original, "return-path")
    delivery = mime.header(original, _DELIVERY)
    finder.address(return_path, TokenSource.RETURN_PATH)
    finder.bare(delivery, TokenSource.DELIVERY_HEADER)
    return OriginalMessage(
        message_id=_message_id(mime.header(original, "message-id")),
        list_id=mime.header(original, "list-id"),
        delivery_token=delivery.lower() if delivery and is_token(delivery) else None,
        return_path=return_path,
        to=mime.decoded_header(original, "to"),
        subject=mime.decoded_header(original, "subject"),
        feedback_id=mime.header(original, "feedback-id"),
    )


def inline_original(text: str, finder: Finder) -> OriginalMessage | None:
    """Headers of an original quoted in the text of a bounce, if any of ours are there."""
    seen: dict[str, str] = {}
    for match in _INLINE.finditer(text):
        seen.setdefault(match.group(1).lower(), mime.clean(match.group(2)))
    finder.text(text)
    if not seen.keys() & {"message-id", "list-id", _DELIVERY}:
        return None
    delivery = seen.get(_DELIVERY)
    if delivery:
        finder.bare(delivery, TokenSource.DELIVERY_HEADER)
    return OriginalMessage(
        message_id=_message_id(seen.get("message-id")),
        list_id=seen.get("list-id"),
        delivery_token=delivery.lower() if delivery and is_token(delivery) else None,
        return_path=seen.get("return-path"),
        to=seen.get("to"),
        subject=seen.get("subject"),
        feedback_id=seen.get("feedback-id"),
    )


def _message_id(value: str | None) -> str | None:
    if not value:
        return None
    match = _MESSAGE_ID.search(value)
    return match.group(0) if match else None
