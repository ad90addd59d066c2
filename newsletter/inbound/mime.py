"""Reading untrusted MIME within fixed bounds: parsing, walking, header and body text.

Everything here takes what a stranger sent. Work is capped up front (bytes parsed, parts
walked, nesting depth, characters of text and header values kept), so a report costs time
in proportion to the caps, never to what the sender chose; and wrong charsets, broken
encodings and malformed structure give replacement characters or None, never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterator, Sequence
from dataclasses import dataclass
from email import policy
from email.errors import MessageError
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser, Parser

#: Bytes of a message the parser reads; the rest is ignored (a report is a few kilobytes,
#: plus the returned original: an issue's HTML and text are well under this)
MAX_MESSAGE_BYTES = 512 * 1024
#: Parts visited in one message, and how deep into nested multiparts
MAX_PARTS = 64
MAX_DEPTH = 8
#: Content-Type fields in one message: a real report has a handful; past this only the
#: top-level headers are read (the stdlib parser recurses, and slows, per nested part)
MAX_CONTENT_TYPES = 2 * MAX_PARTS
#: Characters kept of one header value (RFC 5322's line limit) and of one part's text
MAX_HEADER_CHARS = 998
MAX_TEXT_CHARS = 64 * 1024
#: Header fields read from one block (a DSN recipient block, an original's header section)
MAX_FIELDS = 200

_FOLD = re.compile(r"\r?\n[ \t]*")
# C0 controls (tab excepted), DEL, C1 controls and Unicode's line separators: never kept in a
# value we hand on, so nothing from a report can start a new line where it is shown or stored
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_WHITESPACE = re.compile(r"[ \t]+")
_UNCLEAN = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]|  ")


def parse_message(data: bytes) -> tuple[Message, list[str]]:
    """The message in the first :data:`MAX_MESSAGE_BYTES` of ``data``, and what was wrong.

    ``compat32`` is the stdlib's fastest policy and parses ``message/delivery-status`` bodies
    into header blocks; values are cleaned by :func:`header` on the way out. The stdlib
    parser recurses once per nested part: past Python's recursion limit only the top-level
    header section is read, as it is for a message with more than :data:`MAX_CONTENT_TYPES`
    parts.
    """
    problems = []
    if len(data) > MAX_MESSAGE_BYTES:
        problems.append(f"only the first {MAX_MESSAGE_BYTES} bytes were read")
    parser = BytesParser(policy=policy.compat32)
    data = data[:MAX_MESSAGE_BYTES]
    if data.lower().count(b"content-type") > MAX_CONTENT_TYPES:
        problems.append(
            f"more than {MAX_CONTENT_TYPES} parts: only the top-level headers were read"
        )
        return parser.parsebytes(data, headersonly=True), problems
    try:
        return parser.parsebytes(data), problems
    except RecursionError:
        problems.append("multiparts nested too deeply: only the top-level headers were read")
        return parser.parsebytes(data, headersonly=True), problems


def parse_headers(text: str) -> Message:
    """A header section given as text (``text/rfc822-headers``, an inline returned message)."""
    return Parser(policy=policy.compat32).parsestr(text[:MAX_TEXT_CHARS], headersonly=True)


def clean(value: str, limit: int = MAX_HEADER_CHARS) -> str:
    """``value`` unfolded, without control characters, spaces collapsed, at most ``limit``."""
    value = value[: limit * 2]
    if not _UNCLEAN.search(value):
        # the common case, a plain one-line value: nothing to rewrite
        return value.strip()[:limit]
    value = _FOLD.sub(" ", value)
    value = _CONTROL.sub("", value)
    return _WHITESPACE.sub(" ", value).strip()[:limit]


def raw_text(value: str) -> str:
    """A raw header value or payload as text: compat32 keeps 8-bit bytes as surrogate escapes."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # surrogate escapes: the bytes as sent, which are UTF-8 more often than anything else
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


def fields(message: Message) -> Iterator[tuple[str, str]]:
    """``(lowercased name, cleaned value)`` of each header field, at most :data:`MAX_FIELDS`."""
    for index, (name, value) in enumerate(message.raw_items()):
        if index >= MAX_FIELDS:
            return
        if isinstance(name, str) and isinstance(value, str):
            yield name.strip().lower(), clean(raw_text(value))


def header(message: Message, name: str) -> str | None:
    """The first ``name`` field, cleaned but not RFC 2047-decoded; None if absent or empty."""
    values = header_all(message, name, first=True)
    return values[0] if values else None


def header_all(message: Message, name: str, *, first: bool = False) -> list[str]:
    """Every non-empty ``name`` field, cleaned (only the first with ``first``)."""
    wanted = name.lower()
    found = []
    for index, (key, value) in enumerate(message.raw_items()):
        if index >= MAX_FIELDS:
            break
        if isinstance(key, str) and key.lower() == wanted and isinstance(value, str):
            text = clean(raw_text(value))
            if text:
                found.append(text)
                if first:
                    break
    return found


def decoded_header(message: Message, name: str) -> str | None:
    """``name`` with RFC 2047 encoded-words decoded (Subject and display names)."""
    value = header(message, name)
    if value is None or "=?" not in value:
        return value
    try:
        return clean(str(make_header(decode_header(value))))
    except (LookupError, UnicodeError, ValueError, AssertionError, MessageError):
        # an unknown charset or a broken encoded-word: the raw value still says something
        return value


def content_type(message: Message) -> str:
    try:
        return message.get_content_type()
    except (TypeError, ValueError, AttributeError):
        return "text/plain"


def param(message: Message, name: str) -> str | None:
    """A Content-Type parameter, lowercased; None if absent or unreadable."""
    try:
        value = message.get_param(name)
    except (TypeError, ValueError, AttributeError, IndexError):
        return None
    if isinstance(value, tuple):  # RFC 2231 (charset, language, value)
        value = value[2]
    return clean(value).lower() if isinstance(value, str) else None


@dataclass(frozen=True)
class Part:
    """One part of a message as :func:`walk` found it."""

    depth: int
    message: Message
    content_type: str


def walk(message: Message) -> list[Part]:
    """Every part, depth first, within :data:`MAX_PARTS` and :data:`MAX_DEPTH`.

    Iterative, unlike ``Message.walk``: a message nested a thousand levels deep costs the
    same as one nested :data:`MAX_DEPTH` levels. Read once per message; the steps of the
    parser look things up in the list.
    """
    found: list[Part] = []
    stack: list[tuple[int, Message]] = [(0, message)]
    while stack and len(found) < MAX_PARTS:
        depth, part = stack.pop()
        found.append(Part(depth, part, content_type(part)))
        if depth < MAX_DEPTH:
            stack.extend((depth + 1, child) for child in reversed(children(part)))
    return found


def first_of(parts: Sequence[Part], types: Container[str]) -> Message | None:
    """The first part of one of ``types``."""
    for part in parts:
        if part.content_type in types:
            return part.message
    return None


def children(part: Message) -> list[Message]:
    """The subparts of a multipart or the message inside a ``message/*`` part."""
    # get_payload() of a leaf decodes 8-bit text with the declared charset, which can raise
    # on a hostile charset name: ask is_multipart() first, it only looks at the type
    if not part.is_multipart():
        return []
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload[:MAX_PARTS] if isinstance(p, Message)]
    return []


def body_bytes(part: Message) -> bytes:
    """The decoded body of a leaf part (base64, quoted-printable), or b"" for a multipart."""
    if part.is_multipart():
        return b""
    try:
        data = part.get_payload(decode=True)
    except (ValueError, TypeError, LookupError, UnicodeError, AssertionError):
        return b""
    return data if isinstance(data, bytes) else b""


def body_text(part: Message, limit: int = MAX_TEXT_CHARS) -> str:
    """The text of a leaf part in its declared charset (UTF-8 if unknown), at most ``limit``."""
    data = body_bytes(part)[: limit * 4]
    charset = param(part, "charset") or "utf-8"
    try:
        text = data.decode(charset, "replace")
    except (LookupError, ValueError):
        text = data.decode("utf-8", "replace")
    return text[:limit]


def defects(parts: Sequence[Part]) -> list[str]:
    """Names of the MIME defects the stdlib parser noted (missing boundary, bad base64 ...)."""
    found: list[str] = []
    for part in parts:
        for defect in getattr(part.message, "defects", ()):
            name = type(defect).__name__
            if name not in found:
                found.append(name)
    return found
