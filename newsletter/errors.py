"""One error hierarchy for the whole package, rooted at :class:`NewsletterError`.

Errors carry the fields an operator needs (path, line, key, recipient, SMTP code) and print as
a sentence that says what is wrong and what to do, so the CLI can show them without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class NewsletterError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(NewsletterError):
    """A setting in ``newsletter.toml`` or the environment is missing or wrong."""

    def __init__(self, key: str, message: str, *, source: str | None = None) -> None:
        self.key = key
        self.source = source
        self.message = message
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {message}")


class IssueError(NewsletterError):
    """An issue file cannot be read or parsed; carries the file and line."""

    def __init__(
        self, message: str, *, path: Path | str | None = None, line: int | None = None
    ) -> None:
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line
        super().__init__(self.location() + message)

    def location(self) -> str:
        if self.path is None:
            return ""
        return f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "


class RenderError(NewsletterError):
    """A template or the MJML compiler failed on an otherwise valid issue."""


class StoreError(NewsletterError):
    """The subscriber store refused an operation or cannot be reached."""


class SuppressedError(StoreError):
    """The address is on the suppression list and must never be re-subscribed silently."""

    def __init__(self, email: str, reason: str) -> None:
        self.email = email
        self.reason = reason
        super().__init__(f"{email} is suppressed ({reason}); it cannot be subscribed again")


class ImportFileError(StoreError):
    """A subscriber import file cannot be read at all (rows with problems are rejects instead)."""

    def __init__(self, message: str, *, path: Path | str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)


class InvalidAddressError(NewsletterError):
    """An email address failed validation (or carries CR/LF or other header-breaking data)."""

    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        self.reason = reason
        super().__init__(f"{address!r}: {reason}")


class TokenError(NewsletterError):
    """A signed token is forged, truncated, tampered with or expired.

    The message is deliberately vague: it is shown to whoever holds the link.
    """

    def __init__(self, message: str = "this link is not valid") -> None:
        super().__init__(message)


class DeliveryError(NewsletterError):
    """Sending a message to one recipient failed."""

    def __init__(
        self, message: str, *, recipient: str | None = None, code: int | None = None
    ) -> None:
        self.message = message
        self.recipient = recipient
        self.code = code
        parts = []
        if recipient:
            parts.append(recipient)
        if code is not None:
            parts.append(str(code))
        prefix = " ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class TemporaryDeliveryError(DeliveryError):
    """A 4xx reply or a dropped connection: try again later."""


class PermanentDeliveryError(DeliveryError):
    """A 5xx reply: the address bounced; suppress it."""


class TransportUnavailableError(DeliveryError):
    """The SMTP relay cannot be reached at all; the send pauses and resumes later."""


class SchedulerError(NewsletterError):
    """A schedule in the configuration is malformed, or the scheduler cannot take its lock."""


class SinkError(NewsletterError):
    """The local SMTP sink cannot start (port taken, Maildir not writable)."""


class QuotaReachedError(TransportUnavailableError):
    """The relay's hourly quota (``smtp.hourly_cap``) is used up; the send pauses until it frees."""


class TlsVerificationError(TransportUnavailableError):
    """The relay's TLS certificate does not verify; a private CA belongs in ``smtp.ca_file``."""
