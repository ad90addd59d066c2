"""SMTP transport over aiosmtplib: the only module that talks to a mail server.

``smtp://user@host:587`` upgrades with STARTTLS when the server offers it; ``smtps://host:465``
is implicit TLS. The password comes from ``NEWSLETTER_SMTP_PASSWORD`` via settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib

from newsletter.config import Settings
from newsletter.errors import (
    ConfigError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    TransportUnavailableError,
)


@dataclass(frozen=True)
class SmtpEndpoint:
    hostname: str
    port: int
    use_tls: bool
    start_tls: bool | None
    username: str | None
    password: str | None

    def __repr__(self) -> str:  # never print the password
        return f"SmtpEndpoint({self.hostname}:{self.port}, tls={self.use_tls})"


def parse_smtp_url(url: str, *, password: str | None = None) -> SmtpEndpoint:
    """Parse ``smtp_url``; a password inside the URL is refused (it belongs in the env)."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ConfigError("smtp_url", f"scheme must be smtp:// or smtps://, got {url!r}")
    if not parts.hostname:
        raise ConfigError("smtp_url", f"no host in {url!r}")
    if parts.password:
        raise ConfigError(
            "smtp_url", "do not put the password in the URL; set NEWSLETTER_SMTP_PASSWORD"
        )
    implicit = parts.scheme == "smtps"
    try:
        port = parts.port or (465 if implicit else 25)
    except ValueError:
        raise ConfigError("smtp_url", f"bad port in {url!r}") from None
    return SmtpEndpoint(
        hostname=parts.hostname,
        port=port,
        use_tls=implicit,
        # None: STARTTLS if the server offers it (aiosmtplib's default behaviour)
        start_tls=False if implicit else None,
        username=unquote(parts.username) if parts.username else None,
        password=password,
    )


def endpoint_from_settings(settings: Settings) -> SmtpEndpoint:
    endpoint = parse_smtp_url(settings.smtp_url, password=settings.smtp_password)
    if endpoint.username is None and settings.smtp.username:
        return SmtpEndpoint(
            endpoint.hostname,
            endpoint.port,
            endpoint.use_tls,
            endpoint.start_tls,
            settings.smtp.username,
            endpoint.password,
        )
    return endpoint


async def send_single(settings: Settings, message: EmailMessage) -> None:
    """Send one message on a fresh connection (confirmations, tests, reports).

    Bulk sends go through the delivery engine's connection pool instead.
    """
    endpoint = endpoint_from_settings(settings)
    try:
        await aiosmtplib.send(
            message,
            hostname=endpoint.hostname,
            port=endpoint.port,
            use_tls=endpoint.use_tls,
            start_tls=endpoint.start_tls,
            username=endpoint.username,
            password=endpoint.password,
            timeout=settings.smtp.timeout,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        err = exc.recipients[0]
        cls = PermanentDeliveryError if err.code >= 500 else TemporaryDeliveryError
        raise cls(err.message, recipient=err.recipient, code=err.code) from exc
    except aiosmtplib.SMTPResponseException as exc:
        cls = PermanentDeliveryError if exc.code >= 500 else TemporaryDeliveryError
        raise cls(exc.message, code=exc.code) from exc
    except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
        raise TransportUnavailableError(
            f"cannot reach the SMTP server at {endpoint.hostname}:{endpoint.port}: {exc}"
        ) from exc
    except aiosmtplib.SMTPException as exc:
        raise TemporaryDeliveryError(str(exc)) from exc
