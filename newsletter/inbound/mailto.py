"""Unsubscribe requests that arrive by email: the ``mailto:`` half of ``List-Unsubscribe``.

Every message carries ``mailto:unsubscribe@<domain>?subject=unsubscribe <token>`` beside the
one-click URL. A request is honoured on the signed token in its subject, never on its From
address (which anyone can forge); like the one-click POST, it leaves the list the token names
and repeating it is harmless. The intake (:mod:`newsletter.inbound.intake`) sends every
``unsubscribe`` report here, whichever way it came in, and the request is kept as an event.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage

from sqlalchemy import Connection

from newsletter.errors import TokenError
from newsletter.inbound.model import Report, ReportKind
from newsletter.inbound.reports import parse_report, unsubscribe_token
from newsletter.states import EventSource
from newsletter.store.analytics import attribute_unsubscribe
from newsletter.store.events import record_unsubscribe
from newsletter.store.subscribers import find_by_uid, list_ids, unsubscribe
from newsletter.tokens import TokenPurpose, read_token


class MailRequest(enum.Enum):
    UNSUBSCRIBED = "unsubscribed"
    ALREADY = "already unsubscribed"
    NOT_A_REQUEST = "no unsubscribe token in the subject"
    INVALID = "token not valid"


@dataclass(frozen=True)
class MailOutcome:
    result: MailRequest
    list_slug: str | None = None
    email: str | None = None


def token_from_message(message: EmailMessage) -> str | None:
    """The token in the Subject (``unsubscribe <token>``), or None."""
    return unsubscribe_token(str(message.get("Subject", "")))


def unsubscribe_request(
    conn: Connection,
    keys: bytes | Sequence[bytes],
    report: Report,
    *,
    source: EventSource,
    now: datetime | None = None,
    raw: bytes | None = None,
) -> MailOutcome:
    """Act on an ``unsubscribe`` report and keep it as an event; the caller owns the transaction.

    ``keys`` are the signing keys that verify a token (``Settings.token_keys``).
    """
    now = now or datetime.now(UTC)
    if report.kind is not ReportKind.UNSUBSCRIBE or report.unsubscribe_token is None:
        return MailOutcome(MailRequest.NOT_A_REQUEST)
    outcome, subscriber_id, list_id, changed, issue_id = _act(
        conn, keys, report.unsubscribe_token, now
    )
    record_unsubscribe(
        conn,
        report,
        subscriber_id=subscriber_id,
        list_id=list_id,
        issue_id=issue_id,
        changed=changed,
        source=source,
        now=now,
        raw=raw,
    )
    return outcome


def _act(
    conn: Connection, keys: bytes | Sequence[bytes], token: str, now: datetime
) -> tuple[MailOutcome, int | None, int | None, bool, int | None]:
    try:
        data = read_token(keys, token, TokenPurpose.UNSUBSCRIBE)
    except TokenError:
        return MailOutcome(MailRequest.INVALID), None, None, False, None
    slugs = {lid: slug for slug, lid in list_ids(conn).items()}
    if data.list_id not in slugs:
        return MailOutcome(MailRequest.INVALID), None, None, False, None
    subscriber = find_by_uid(conn, data.subscriber_uid)
    slug = slugs[data.list_id]
    if subscriber is None:
        return MailOutcome(MailRequest.ALREADY, slug), None, None, False, None
    changed = unsubscribe(conn, subscriber.id, data.list_id, now=now)
    issue_id: int | None = None
    if changed:
        # counted against the issue whose copy carried the link (analytics)
        issue_id = attribute_unsubscribe(
            conn,
            subscriber_id=subscriber.id,
            subscriber_uid=subscriber.uid,
            list_id=data.list_id,
            issued_at=data.issued_at,
            now=now,
        )
    result = MailRequest.UNSUBSCRIBED if changed else MailRequest.ALREADY
    outcome = MailOutcome(result, slug, subscriber.email)
    return outcome, subscriber.id, data.list_id, changed, issue_id


def handle_unsubscribe_mail(
    conn: Connection,
    keys: bytes | Sequence[bytes],
    message: EmailMessage,
    *,
    source: EventSource = EventSource.IMPORT,
) -> MailOutcome:
    """Act on one inbound message that may be an unsubscribe request (see the intake)."""
    data = bytes(message)
    return unsubscribe_request(conn, keys, parse_report(data), source=source, raw=data)
