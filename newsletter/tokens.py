"""Opaque, signed tokens for links in email: unsubscribe, preferences, confirmation, joining,
clicks.

A token is ``base64url(purpose | subscriber uid | list id | issued-at | mac)``: the uid is a
random value stored per subscriber, never the address or the row id, and the MAC is an
HMAC-SHA256 (truncated to 128 bits) under the secret from ``NEWSLETTER_SECRET_KEY``, checked in
constant time. Anything forged, truncated or tampered with is a :class:`TokenError`.

Keys rotate: new tokens are always signed with the current key, and a token signed with one of
the earlier keys (``NEWSLETTER_SECRET_KEY_OLD``) still verifies, so the unsubscribe links in
emails already delivered keep working (``Settings.token_keys``).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import secrets
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

from newsletter.errors import TokenError

_MAC_BYTES = 16
_UID_BYTES = 16
# purpose (1) + uid (16) + list id (4) + issued-at seconds (5: good until year 36812)
_LAYOUT = struct.Struct(">B16sI5s")


class TokenPurpose(enum.Enum):
    UNSUBSCRIBE = 1
    CONFIRM = 2
    # "more from us": join the list the token names, signed into one recipient's copy
    JOIN = 3


@dataclass(frozen=True)
class TokenData:
    purpose: TokenPurpose
    subscriber_uid: str
    list_id: int
    issued_at: int


def new_subscriber_uid() -> str:
    """A fresh random subscriber uid (32 hex characters)."""
    return secrets.token_hex(_UID_BYTES)


def make_token(
    secret: bytes,
    purpose: TokenPurpose,
    subscriber_uid: str,
    list_id: int,
    *,
    issued_at: int | None = None,
) -> str:
    """Sign ``(purpose, uid, list)``; the result is URL-safe and carries no personal data."""
    when = int(time.time()) if issued_at is None else issued_at
    payload = _LAYOUT.pack(
        purpose.value, bytes.fromhex(subscriber_uid), list_id, when.to_bytes(5, "big")
    )
    mac = hmac.new(secret, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    return _encode(payload + mac)


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def read_token(
    keys: bytes | Sequence[bytes],
    token: str,
    purpose: TokenPurpose,
    *,
    max_age_seconds: float | None = None,
    now: float | None = None,
) -> TokenData:
    """Verify ``token`` for ``purpose`` and return what it carries, or raise TokenError.

    ``keys`` is the current key, or the current key and the earlier ones still accepted.
    Every key is tried whatever the outcome, each comparison in constant time.
    """
    ring = (keys,) if isinstance(keys, bytes) else tuple(keys)
    if not token or len(token) > 128 or not ring:
        raise TokenError()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise TokenError() from None
    # b64decode skips stray characters and ignores spare bits: only the spelling we sign counts
    if len(raw) != _LAYOUT.size + _MAC_BYTES or _encode(raw) != token:
        raise TokenError()
    payload, mac = raw[: _LAYOUT.size], raw[_LAYOUT.size :]
    valid = False
    for key in ring:
        expected = hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
        valid |= hmac.compare_digest(mac, expected)
    if not valid:
        raise TokenError()
    purpose_value, uid, list_id, issued = _LAYOUT.unpack(payload)
    if purpose_value != purpose.value:
        raise TokenError()
    issued_at = int.from_bytes(issued, "big")
    current = time.time() if now is None else now
    if max_age_seconds is not None and current - issued_at > max_age_seconds:
        raise TokenError("this link has expired")
    return TokenData(purpose, uid.hex(), list_id, issued_at)


# --- click and open links ---------------------------------------------------------------------
#
# A tracked link is ``/r/<link token>`` (``/o/<link token>`` for the open pixel): the token
# signs a kind, the issue row and a position in its stored link table, and carries no URL, so
# the redirect can only go where the issue pointed. With per-subscriber counting a
# ``.<reader token>`` follows, signing the issue and the recipient's uid: one HMAC per
# recipient, however many links the issue has. Each MAC is keyed with a label of its own, so
# no token of one kind (or a subscriber token above) verifies as another.


class LinkKind(enum.Enum):
    CLICK = 1
    OPEN = 2


@dataclass(frozen=True)
class LinkTokenData:
    kind: LinkKind
    issue_id: int
    position: int


_LINK_LAYOUT = struct.Struct(">BIH")
_LINK_MAC_BYTES = 12
_LINK_LABEL = b"newsletter link v1\x00"
_READER_LAYOUT = struct.Struct(">I16s")
_READER_LABEL = b"newsletter reader v1\x00"


def _mac(key: bytes, label: bytes, payload: bytes) -> bytes:
    return hmac.new(key, label + payload, hashlib.sha256).digest()[:_LINK_MAC_BYTES]


def _verify(ring: Sequence[bytes], label: bytes, payload: bytes, mac: bytes) -> bool:
    valid = False
    for key in ring:
        valid |= hmac.compare_digest(mac, _mac(key, label, payload))
    return valid


def _decode(token: str, size: int) -> bytes:
    if not token or len(token) > 64:
        raise TokenError()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise TokenError() from None
    if len(raw) != size or _encode(raw) != token:
        raise TokenError()
    return raw


def make_link_token(secret: bytes, kind: LinkKind, issue_id: int, position: int) -> str:
    """The token of one tracked link (or the open pixel, position 0) of one issue."""
    payload = _LINK_LAYOUT.pack(kind.value, issue_id, position)
    return _encode(payload + _mac(secret, _LINK_LABEL, payload))


def read_link_token(keys: bytes | Sequence[bytes], token: str) -> LinkTokenData:
    """Verify a link token (every key tried, in constant time); TokenError if it is not ours."""
    ring = (keys,) if isinstance(keys, bytes) else tuple(keys)
    raw = _decode(token, _LINK_LAYOUT.size + _LINK_MAC_BYTES)
    payload, mac = raw[: _LINK_LAYOUT.size], raw[_LINK_LAYOUT.size :]
    if not ring or not _verify(ring, _LINK_LABEL, payload, mac):
        raise TokenError()
    kind, issue_id, position = _LINK_LAYOUT.unpack(payload)
    try:
        return LinkTokenData(LinkKind(kind), issue_id, position)
    except ValueError:
        raise TokenError() from None


def make_reader_token(secret: bytes, issue_id: int, subscriber_uid: str) -> str:
    """The per-recipient part of tracked links (per-subscriber counting only)."""
    payload = _READER_LAYOUT.pack(issue_id, bytes.fromhex(subscriber_uid))
    return _encode(payload + _mac(secret, _READER_LABEL, payload))


def read_reader_token(keys: bytes | Sequence[bytes], token: str, issue_id: int) -> str:
    """The subscriber uid a reader token carries for ``issue_id``; TokenError otherwise."""
    ring = (keys,) if isinstance(keys, bytes) else tuple(keys)
    raw = _decode(token, _READER_LAYOUT.size + _LINK_MAC_BYTES)
    payload, mac = raw[: _READER_LAYOUT.size], raw[_READER_LAYOUT.size :]
    if not ring or not _verify(ring, _READER_LABEL, payload, mac):
        raise TokenError()
    issued_for, uid = _READER_LAYOUT.unpack(payload)
    if issued_for != issue_id:
        raise TokenError()
    return str(uid.hex())
