"""Unsubscribe requests that arrive by email: the ``mailto:`` half of ``List-Unsubscribe``.

Every message carries ``mailto:unsubscribe@<domain>?subject=unsubscribe <token>`` beside the
one-click URL. A request is honoured on the signed token in its subject, never on its From
address (which anyone can forge); like the one-click POST, it leaves the list the token names
and repeating it is harmless.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage

from sqlalchemy import Connection

from newsletter.errors import TokenError
from newsletter.inbound.reports import unsubscribe_token
from newsletter.store.analytics import attribute_unsubscribe
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


def token_from_message(message: EmailMessage) -> str | None:
    """The token in the Subject (``unsubscribe <token>``), or None."""
    return unsubscribe_token(str(message.get("Subject", "")))


def handle_unsubscribe_mail(
    conn: Connection, keys: bytes | Sequence[bytes], message: EmailMessage
) -> MailOutcome:
    """Act on one inbound message; the caller owns the transaction.

    ``keys`` are the signing keys that verify a token (``Settings.token_keys``).
    """
    token = token_from_message(message)
    if token is None:
        return MailOutcome(MailRequest.NOT_A_REQUEST)
    try:
        data = read_token(keys, token, TokenPurpose.UNSUBSCRIBE)
    except TokenError:
        return MailOutcome(MailRequest.INVALID)
    slugs = {lid: slug for slug, lid in list_ids(conn).items()}
    if data.list_id not in slugs:
        return MailOutcome(MailRequest.INVALID)
    subscriber = find_by_uid(conn, data.subscriber_uid)
    slug = slugs[data.list_id]
    if subscriber is None or not unsubscribe(conn, subscriber.id, data.list_id):
        return MailOutcome(MailRequest.ALREADY, slug)
    attribute_unsubscribe(
        conn,
        subscriber_id=subscriber.id,
        subscriber_uid=subscriber.uid,
        list_id=data.list_id,
        issued_at=data.issued_at,
        now=datetime.now(UTC),
    )
    return MailOutcome(MailRequest.UNSUBSCRIBED, slug)
