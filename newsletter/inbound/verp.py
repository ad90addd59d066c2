"""VERP delivery tokens: the envelope sender ``bounces+<token>@<domain>`` names one ledger row.

A token is 32 characters of lowercase base32 (``a-z``, ``2-7``, no padding) encoding 20 bytes::

    tag (11 bytes) | (version | issue id | subscriber id) XOR pad (9 bytes)

``tag`` is HMAC-SHA256 of the 9-byte plaintext under a key derived from the publication's
secret, truncated to 88 bits; ``pad`` is HMAC-SHA256 of the tag under a second derived key.
This is the SIV construction (the tag doubles as the IV of a PRF stream cipher): the token is
deterministic, so every retry of one delivery carries the same envelope sender, it shows no
row id, no address and nothing countable, and any change to it fails the tag check, which is
constant time. Base32 in one case survives MTAs that fold the local part's case, and 20 bytes
are exactly 32 characters, so there is one spelling per token and no spare bits to malleate.

``bounces+`` plus 32 characters is 40 octets: well inside RFC 5321's 64 for a local part, with
room for a longer prefix. Keys are tried current first, then old ones (key rotation); a token
that verifies under none matches nobody.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from newsletter.errors import ConfigError

#: Header of ours on every issue message, carrying the same token as the envelope sender; it
#: comes back inside complaint reports and returned messages when the envelope is gone.
DELIVERY_HEADER = "X-Newsletter-Delivery"
DEFAULT_PREFIX = "bounces"
TOKEN_LENGTH = 32

_VERSION = 1
_TAG_BYTES = 11
_LAYOUT = struct.Struct(">BII")  # version, issue id, subscriber id: 9 bytes
_MAX_LOCAL_PART = 64
_MIN_KEY_BYTES = 16
_TOKEN = re.compile(r"[a-z2-7]{32}")
# a VERP address anywhere in a header or text: <anything>+<token>@; the token is then verified
_IN_ADDRESS = re.compile(r"\+([A-Za-z2-7]{32})@")
_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


@dataclass(frozen=True, order=True)
class DeliveryRef:
    """One ledger row: an issue sent to one subscriber (``deliveries`` primary key)."""

    issue_id: int
    subscriber_id: int


class DeliveryTokens:
    """Makes and verifies delivery tokens under ``keys``: the current key first, then old ones.

    Built once per process (the derived keys are computed here, not per token).
    """

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ConfigError("secret_key", "no key to sign delivery tokens with")
        for key in keys:
            if len(key) < _MIN_KEY_BYTES:
                raise ConfigError("secret_key", "too short; use at least 32 random characters")
        self._keys = [(_derive(key, b"tag"), _derive(key, b"pad")) for key in keys]

    def make(self, ref: DeliveryRef) -> str:
        """The token for ``ref`` under the current key (the same token every time)."""
        if not (0 <= ref.issue_id < 2**32 and 0 <= ref.subscriber_id < 2**32):
            raise ValueError(f"row ids out of range for a delivery token: {ref}")
        tag_key, pad_key = self._keys[0]
        plain = _LAYOUT.pack(_VERSION, ref.issue_id, ref.subscriber_id)
        tag = hmac.new(tag_key, plain, hashlib.sha256).digest()[:_TAG_BYTES]
        pad = hmac.new(pad_key, tag, hashlib.sha256).digest()[: _LAYOUT.size]
        sealed = bytes(a ^ b for a, b in zip(plain, pad, strict=True))
        return base64.b32encode(tag + sealed).decode("ascii").lower()

    def read(self, token: str) -> DeliveryRef | None:
        """The row ``token`` names, or None if it verifies under none of the keys.

        Case-insensitive. Every key is tried even after a match, so the time taken does not
        tell which key (or whether an old one) signed the token.
        """
        token = token.strip().lower()
        if not _TOKEN.fullmatch(token):
            return None
        raw = base64.b32decode(token.upper())
        tag, sealed = raw[:_TAG_BYTES], raw[_TAG_BYTES:]
        found: DeliveryRef | None = None
        for tag_key, pad_key in self._keys:
            pad = hmac.new(pad_key, tag, hashlib.sha256).digest()[: _LAYOUT.size]
            plain = bytes(a ^ b for a, b in zip(sealed, pad, strict=True))
            expected = hmac.new(tag_key, plain, hashlib.sha256).digest()[:_TAG_BYTES]
            if hmac.compare_digest(tag, expected) and found is None:
                version, issue_id, subscriber_id = _LAYOUT.unpack(plain)
                if version == _VERSION:
                    found = DeliveryRef(issue_id, subscriber_id)
        return found

    def address(self, ref: DeliveryRef, domain: str, *, prefix: str = DEFAULT_PREFIX) -> str:
        """The envelope sender for ``ref``: ``<prefix>+<token>@<domain>``."""
        return verp_address(self.make(ref), domain, prefix=prefix)


def verp_address(token: str, domain: str, *, prefix: str = DEFAULT_PREFIX) -> str:
    """``<prefix>+<token>@<domain>``, refusing anything that could break an address or header."""
    if not _TOKEN.fullmatch(token):
        raise ValueError("not a delivery token")
    if not _PREFIX.fullmatch(prefix) or len(prefix) + 1 + TOKEN_LENGTH > _MAX_LOCAL_PART:
        raise ConfigError(
            "bounces.prefix",
            f"{prefix!r} must be letters, digits, '.', '_' or '-' and at most "
            f"{_MAX_LOCAL_PART - 1 - TOKEN_LENGTH} characters",
        )
    if not _DOMAIN.fullmatch(domain) or ".." in domain:
        raise ConfigError("bounces.domain", f"{domain!r} is not a domain name (use IDNA form)")
    return f"{prefix}+{token}@{domain}"


def token_in_address(text: str) -> str | None:
    """The token of the first VERP-shaped address (``...+<token>@``) in ``text``, lowercased.

    Only the shape is checked here; :meth:`DeliveryTokens.read` decides whether it is ours.
    """
    match = _IN_ADDRESS.search(text)
    return match.group(1).lower() if match else None


def is_token(text: str) -> bool:
    """Whether ``text`` (stripped, any case) has the shape of a delivery token."""
    return _TOKEN.fullmatch(text.strip().lower()) is not None


def _derive(key: bytes, purpose: bytes) -> bytes:
    # separate keys per use, so no other HMAC made with the secret can pass as a tag or pad
    return hmac.new(key, b"newsletter delivery token v1: " + purpose, hashlib.sha256).digest()
