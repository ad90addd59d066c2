"""One error hierarchy for the whole package, rooted at :class:`NewsletterError`.

Errors carry the fields an operator needs (path, line, key, recipient, SMTP code) and print as
a sentence that says what is wrong and what to do, so the CLI can show them without a traceback.
"""

from __future__ import annotations

import signal
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


class TransportUnavailableError(NewsletterError):
    """The SMTP relay cannot be reached or will not take mail now; the send pauses and resumes.

    Not a :class:`DeliveryError`: no recipient failed, nothing is retried per row or bounced.
    """

    def __init__(self, message: str, *, code: int | None = None) -> None:
        self.message = message
        self.code = code
        super().__init__(f"{code}: {message}" if code is not None else message)


class RelayConnectError(TransportUnavailableError):
    """One connection to the relay failed to open (refused, a 421 greeting, no greeting in time).

    The pool takes that connection out for a while and keeps sending on the others; only when
    no connection opened for ``smtp.unreachable_after`` seconds is the relay unreachable.
    """


class DeliveryInterrupted(NewsletterError):
    """A send stopped on a signal: in-flight messages finished, unsent claims given back."""

    def __init__(self, signum: int, *, sent: int, given_back: int) -> None:
        self.signum = signum
        self.sent = sent
        self.given_back = given_back
        self.name = signal.Signals(signum).name
        super().__init__(
            f"stopped by {self.name}: {sent} sent in this run, {given_back} claimed but unsent "
            "given back to pending"
        )

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process a signal ended (143, 130)."""
        return 128 + self.signum


class QuotaReachedError(TransportUnavailableError):
    """The relay's hourly quota (``smtp.hourly_cap``) is used up; the send pauses until it frees."""


class TlsVerificationError(ConfigError):
    """The relay's TLS certificate does not verify: a setting to fix, not an outage to wait out.

    A private CA belongs in ``smtp.ca_file``; a certificate for another name needs that name in
    ``smtp_url``. ``key`` says which; the message says what to do.
    """

    def __init__(self, message: str, *, key: str) -> None:
        self.key = key
        self.source = None
        self.message = message
        NewsletterError.__init__(self, message)


class SchedulerError(NewsletterError):
    """The scheduler cannot take its database lock (or has no database it can lock)."""


class InboundError(NewsletterError):
    """The inbound receiver cannot start, or a report source cannot be read."""


class SinkError(NewsletterError):
    """The local SMTP sink cannot start (port taken, Maildir not writable)."""


class WebError(NewsletterError):
    """A request to the web app cannot be served as asked; the message is safe to show."""


class FormError(WebError):
    """A form or JSON submission cannot be processed; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class BodyTooLarge(WebError):
    """The request body is over the limit; nothing more of it was read."""

    def __init__(self, message: str = "the request body is too large") -> None:
        super().__init__(message)


class InvalidLink(WebError):
    """A link's token does not verify or names nothing that exists; the page says no more."""

    def __init__(self, message: str = "this link is not valid") -> None:
        super().__init__(message)


class ScaffoldError(NewsletterError):
    """``newsletter new`` cannot create the publication there (the folder is in use)."""

    def __init__(self, message: str, *, path: Path | str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = Path(path)
