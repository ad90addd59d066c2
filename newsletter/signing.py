"""DKIM signing of outgoing messages (dkimpy); optional, configured under ``[dkim]``."""

from __future__ import annotations

from pathlib import Path

import dkim

from newsletter.config import Dkim
from newsletter.errors import ConfigError

# Both List-Unsubscribe headers are signed: Gmail and Yahoo honour one-click unsubscribe only
# when a valid DKIM signature covers them (RFC 8058 section 4).
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"mime-version",
    b"content-type",
    # what a feedback loop or a returned message names the delivery by: a forged copy of
    # either must break the signature
    b"feedback-id",
    b"x-newsletter-delivery",
)


class DkimSigner:
    """Signs finished message bytes with one key; built once per send."""

    def __init__(self, *, private_key: bytes, selector: str, domain: str) -> None:
        self.private_key = private_key
        self.selector = selector.encode("ascii")
        self.domain = domain.encode("ascii")

    @classmethod
    def from_config(cls, config: Dkim) -> DkimSigner | None:
        if not config.enabled or config.key_path is None:
            return None
        assert config.selector is not None
        assert config.domain is not None
        try:
            key = Path(config.key_path).read_bytes()
        except OSError as exc:
            raise ConfigError("dkim.key_path", f"cannot read {config.key_path}: {exc}") from None
        return cls(private_key=key, selector=config.selector, domain=config.domain)

    def sign(self, message: bytes) -> bytes:
        """``message`` with a ``DKIM-Signature`` header in front (relaxed/relaxed, rsa-sha256)."""
        try:
            header = dkim.sign(
                message,
                self.selector,
                self.domain,
                self.private_key,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=list(SIGNED_HEADERS),
                linesep=b"\r\n",
            )
        except dkim.DKIMException as exc:
            raise ConfigError("dkim", f"cannot sign with the configured key: {exc}") from None
        return bytes(header) + message
