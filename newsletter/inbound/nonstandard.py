"""Bounces that are not RFC 3464 DSNs, through ``flufl.bounce`` (GNU Mailman's detectors).

Exchange and old Outlook NDRs, Yahoo, qmail (QSBMF), Exim (``X-Failed-Recipients``), old
Postfix, Sendmail's and a few dozen others' plain-text notices: ``flufl.bounce.all_failures``
runs its detectors, most specific first, and returns the temporary and the permanent failures
apart. Its heuristics are line-based regular expressions, some of which take time quadratic in
the length of a line; so the detectors see a copy of the message made for them: leaf bodies
decoded, lines cut at :data:`MAX_LINE`, :data:`MAX_CHARS` of text in all. A bounce says what
it has to say in its first screenful; nothing useful is lost.
"""

from __future__ import annotations

from email.message import Message
from email.utils import getaddresses

from flufl.bounce import all_failures

from newsletter.inbound import mime

MAX_LINE = 200
MAX_CHARS = 16 * 1024
_MAX_HEADERS = 60
# what the detectors read from headers besides the body (Exim, Yahoo, Postfix's parts)
_KEPT_HEADERS = frozenset(
    {
        "from",
        "to",
        "subject",
        "date",
        "content-type",
        "content-description",
        "x-failed-recipients",
        "x-uidl",
        "message-id",
    }
)


def failures(message: Message) -> tuple[frozenset[str], frozenset[str]]:
    """``(temporary, permanent)`` failed addresses that flufl.bounce finds, lowercased.

    Never raises: a detector that trips over a malformed message counts as finding nothing.
    """
    try:
        temporary, permanent = all_failures(detector_view(message))
    except Exception:
        # any detector's error on hostile input means "no finding"
        return frozenset(), frozenset()
    return _addresses(temporary), _addresses(permanent)


def _addresses(found: frozenset[bytes]) -> frozenset[str]:
    result = set()
    for raw in found:
        address = mime.clean(raw.decode("ascii", "replace")).strip("<>").strip()
        if "@" in address and len(address) <= 320 and " " not in address:
            result.add(address)
    return frozenset(result)


def detector_view(message: Message) -> Message:
    """What the detectors see of ``message``: selected headers, decoded text, short lines.

    At most :data:`MAX_CHARS` characters of body text and ``mime.MAX_PARTS`` parts in all,
    no line longer than :data:`MAX_LINE`, nothing deeper than ``mime.MAX_DEPTH``.
    """
    return _copy(message, _Budget(), 0)


class _Budget:
    def __init__(self) -> None:
        self.chars = MAX_CHARS
        self.parts = mime.MAX_PARTS


def _copy(part: Message, budget: _Budget, depth: int) -> Message:
    budget.parts -= 1
    copy = Message()
    count = 0
    for name, value in mime.fields(part):
        if name in _KEPT_HEADERS and count < _MAX_HEADERS:
            copy[name] = value
            count += 1
    if depth == 0 and not getaddresses([copy.get("from", "")]):
        # detectors index the first From address; a message without one must still pass
        del copy["from"]
        copy["from"] = "<>"
    subparts = mime.children(part)
    kind = mime.content_type(part)
    if subparts and depth < mime.MAX_DEPTH and kind.startswith(("multipart/", "message/")):
        kept: list[Message | str] = []
        for subpart in subparts:
            if budget.parts <= 0:
                break
            kept.append(_copy(subpart, budget, depth + 1))
        copy.set_payload(kept)
        return copy
    if subparts:
        copy.set_payload("")
        return copy
    text = mime.body_text(part, limit=max(budget.chars, 0))
    body = "\n".join(line[:MAX_LINE] for line in text.splitlines())[: max(budget.chars, 0)]
    budget.chars -= len(body)
    # the copy is plain text now: no transfer encoding left to undo
    del copy["content-transfer-encoding"]
    copy.set_payload(body)
    return copy
