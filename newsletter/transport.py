"""SMTP transport over aiosmtplib: the only module that talks to a mail server.

``smtp://user@host:587`` upgrades with STARTTLS when the server offers it; ``smtps://host:465``
is implicit TLS. Certificates are always verified (the system's CAs plus ``smtp.ca_file``). The
password comes from ``NEWSLETTER_SMTP_PASSWORD`` via settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import random
import re
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import unquote, urlsplit

import aiosmtplib
from aiosmtplib.email import extract_recipients, extract_sender
from aiosmtplib.protocol import normalize_message_line_endings

from newsletter.config import Settings
from newsletter.dkim_signers import sign_single
from newsletter.errors import (
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    QuotaReachedError,
    RelayConnectError,
    TemporaryDeliveryError,
    TlsVerificationError,
    TransportUnavailableError,
)


class SMTPStatus(enum.IntEnum):
    """The reply codes this client acts on by name (RFC 5321 section 4.2)."""

    COMPLETED = 250
    WILL_FORWARD = 251
    START_INPUT = 354
    # the server is closing the session: the connection is gone after this reply
    DOMAIN_UNAVAILABLE = 421


def is_permanent(code: int) -> bool:
    """A 5xx reply: the server will not take this, however often it is tried (RFC 5321 4.2.1)."""
    return code // 100 == 5


@dataclass(frozen=True)
class SmtpEndpoint:
    hostname: str
    port: int
    use_tls: bool
    start_tls: bool | None
    username: str | None
    password: str | None
    # None: aiosmtplib's default context (verifying, system CAs); settings give a shared one
    tls_context: ssl.SSLContext | None = field(default=None, compare=False)

    def __repr__(self) -> str:  # never print the password
        return f"SmtpEndpoint({self.hostname}:{self.port}, tls={self.use_tls})"

    @property
    def where(self) -> str:
        return f"{self.hostname}:{self.port}"


@dataclass(frozen=True)
class ServerUrl:
    """A mail server's URL taken apart: host, port, implicit TLS, and the URL's user, if any."""

    hostname: str
    port: int
    implicit_tls: bool
    username: str | None
    path: str


def parse_server_url(
    url: str, *, key: str, scheme: str, ports: tuple[int, int], env_name: str
) -> ServerUrl:
    """``scheme://`` (plain, STARTTLS) or ``schemes://`` (implicit TLS) with the port defaults
    ``ports`` (implicit, plain); errors name ``key``. A password inside the URL is refused: it
    belongs in ``env_name``, in the environment."""
    parts = urlsplit(url)
    if parts.scheme not in (scheme, scheme + "s"):
        raise ConfigError(key, f"scheme must be {scheme}s:// or {scheme}://, got {url!r}")
    if not parts.hostname:
        raise ConfigError(key, f"no host in {url!r}")
    if parts.password:
        raise ConfigError(key, f"do not put the password in the URL; set {env_name}")
    implicit = parts.scheme == scheme + "s"
    try:
        port = parts.port or (ports[0] if implicit else ports[1])
    except ValueError:
        raise ConfigError(key, f"bad port in {url!r}") from None
    username = unquote(parts.username) if parts.username else None
    return ServerUrl(parts.hostname, port, implicit, username, parts.path)


def parse_smtp_url(url: str, *, password: str | None = None) -> SmtpEndpoint:
    """Parse ``smtp_url``; a password inside the URL is refused (it belongs in the env)."""
    parts = parse_server_url(
        url,
        key="smtp_url",
        scheme="smtp",
        ports=(465, 25),
        env_name="NEWSLETTER_SMTP_PASSWORD",
    )
    implicit = parts.implicit_tls
    return SmtpEndpoint(
        hostname=parts.hostname,
        port=parts.port,
        use_tls=implicit,
        # None: STARTTLS if the server offers it (aiosmtplib's default behaviour)
        start_tls=False if implicit else None,
        username=parts.username,
        password=password,
    )


def endpoint_from_settings(settings: Settings) -> SmtpEndpoint:
    endpoint = parse_smtp_url(settings.smtp_url, password=settings.smtp_password)
    return replace(
        endpoint,
        username=endpoint.username or settings.smtp.username,
        tls_context=client_tls_context(settings.smtp.ca_file),
    )


@functools.cache
def client_tls_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """A verifying client context: the system's CAs plus ``ca_file``; built once per process.

    Verification is never turned off: an operator with an internal relay names its CA instead.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=ca_file)
        except OSError as exc:
            # a missing file, or (ssl.SSLError) one without a PEM certificate in it
            raise ConfigError(
                "smtp.ca_file", f"cannot load CA certificates from {ca_file}: {exc}"
            ) from None
    return context


# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH, _EMAIL_MISMATCH and _IP_ADDRESS_MISMATCH: a CA file
# does not help there
_NAME_MISMATCH = (62, 63, 64)


def certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification error behind ``exc``, if any, through causes and contexts."""
    # aiosmtplib wraps the handshake's error (implicit TLS) or lets it through (STARTTLS)
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _unreachable(where: str, exc: BaseException) -> RelayConnectError | ConfigError:
    """``exc`` from connecting as the package's error; a bad certificate says what to do.

    A certificate that does not verify is a configuration error, not an outage: waiting and
    trying again would never get through.
    """
    cert = certificate_error(exc)
    if cert is not None:
        if cert.verify_code in _NAME_MISMATCH:
            key, hint = "smtp_url", "use a host name in smtp_url that the certificate is issued for"
        else:
            key = "smtp.ca_file"
            hint = "if the relay uses a private CA, set smtp.ca_file to that CA's certificate (PEM)"
        return TlsVerificationError(
            f"the TLS certificate of the SMTP server at {where} does not verify "
            f"({cert.verify_message or cert.reason}); {hint}",
            key=key,
        )
    # a 421 greeting ("too many connections") keeps its code: the pool shrinks on it
    code = exc.code if isinstance(exc, aiosmtplib.SMTPResponseException) else None
    return RelayConnectError(f"cannot reach the SMTP server at {where}: {exc}", code=code)


def _login_refused(
    where: str, username: str | None, exc: aiosmtplib.SMTPAuthenticationError
) -> TransportUnavailableError:
    # the reply is the server's text; the password is never part of it or of this message
    return TransportUnavailableError(
        f"the SMTP server at {where} refused the login for {username}: "
        f"{exc.code} {exc.message}; check NEWSLETTER_SMTP_PASSWORD",
        code=exc.code,
    )


async def send_single(settings: Settings, message: EmailMessage) -> None:
    """Send one message on a fresh connection (confirmations, tests, reports).

    Bulk sends go through the delivery engine's connection pool instead.
    """
    endpoint = endpoint_from_settings(settings)
    sender = extract_sender(message)
    recipients = extract_recipients(message)
    if sender is None or not recipients:
        raise PermanentDeliveryError("the message has no From or no recipient")
    # Flatten with the message's own policy: aiosmtplib's would re-fold List-Unsubscribe into
    # RFC 2047 encoded-words (see message.REFERENCE_POLICY).
    raw = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
    # DKIM hook: every message outside a bulk send is signed here when [dkim] is set (in a
    # thread: reading the key the first time takes ~0.1 s, which a web server's loop must not wait)
    if settings.dkim.enabled:
        raw = await asyncio.to_thread(sign_single, settings.dkim, raw)
    smtp = await open_session(endpoint, aiosmtplib.SMTP, timeout=settings.smtp.timeout)
    try:
        await smtp.sendmail(sender, recipients, raw)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        err = exc.recipients[0]
        raise classify(err.code, err.message, recipient=err.recipient) from exc
    except aiosmtplib.SMTPResponseException as exc:
        raise classify(exc.code, exc.message) from exc
    except (aiosmtplib.SMTPServerDisconnected, OSError) as exc:
        raise _unreachable(endpoint.where, exc) from exc
    except aiosmtplib.SMTPException as exc:
        raise TemporaryDeliveryError(str(exc)) from exc
    finally:
        await close_session(smtp)


_Client = TypeVar("_Client", bound=aiosmtplib.SMTP)


async def open_session(
    endpoint: SmtpEndpoint,
    client: type[_Client],
    *,
    timeout: float,
    local_hostname: str | None = None,
) -> _Client:
    """Connect (TLS as the URL says, certificates verified) and log in when a user is set.

    One way in for :func:`send_single` and the pool, so both treat TLS and AUTH alike; every
    failure is a :class:`TransportUnavailableError` that names the server and what to check.
    """
    smtp = client(
        hostname=endpoint.hostname,
        port=endpoint.port,
        use_tls=endpoint.use_tls,
        start_tls=endpoint.start_tls,
        tls_context=endpoint.tls_context,
        timeout=timeout,
        local_hostname=local_hostname,
    )
    problem: str | None = None
    try:
        await smtp.connect()
        if endpoint.username:
            # STARTTLS forgets what the server offered before it; ask again
            if smtp.is_ehlo_or_helo_needed:
                await smtp.ehlo()
            if smtp.get_transport_info("sslcontext") is None:
                # a relay (or someone in between) that drops STARTTLS must not get the password
                problem = (
                    f"offers no STARTTLS, and the password for {endpoint.username} is never sent "
                    "unencrypted; use smtps:// or the relay's submission port (usually 587)"
                )
            elif not smtp.supports_extension("auth"):
                problem = (
                    f"does not offer AUTH for {endpoint.username}; remove the user from smtp_url "
                    "and smtp.username if the relay needs no login"
                )
            else:
                await smtp.login(endpoint.username, endpoint.password or "")
    except aiosmtplib.SMTPAuthenticationError as exc:
        await close_session(smtp)
        raise _login_refused(endpoint.where, endpoint.username, exc) from exc
    except (aiosmtplib.SMTPException, OSError) as exc:
        # no QUIT: the session may be mid-handshake or half gone
        await close_session(smtp, polite=False)
        raise _unreachable(endpoint.where, exc) from exc
    if problem is not None:
        await close_session(smtp)
        raise TransportUnavailableError(f"the SMTP server at {endpoint.where} {problem}")
    return smtp


async def close_session(smtp: aiosmtplib.SMTP, *, polite: bool = True, wait: float = 1.0) -> None:
    """QUIT if ``polite`` (errors are ignored), close, and wait up to ``wait`` s for the socket.

    A TLS connection finishes closing a few loop turns later (close_notify both ways); an event
    loop that ends right after ``close()`` would leave its socket open until garbage collection.
    """
    protocol = smtp.protocol
    if polite and smtp.is_connected:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await smtp.quit()
    smtp.close()
    deadline = time.monotonic() + wait
    # SMTPProtocol drops its transport in connection_lost, once the socket is closed
    while protocol is not None and protocol.transport is not None:
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.005)


# --- bulk sending: a pool of connections with limits ----------------------------------------


@dataclass(frozen=True)
class SendResult:
    """What the relay said about one message: accepted recipients and per-recipient refusals.

    A message counts as delivered to ``accepted`` only after the final DATA reply was 2xx;
    ``refused`` holds a :class:`TemporaryDeliveryError` or :class:`PermanentDeliveryError` for
    each recipient the relay turned down at RCPT (partial acceptance).
    """

    accepted: tuple[str, ...]
    refused: Mapping[str, DeliveryError]
    code: int
    reply: str


class TokenBucket:
    """At most ``rate`` acquisitions per second on average, with bursts up to ``burst``."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        self.tokens = self.capacity
        self.clock = clock
        self.sleep = sleep
        self.updated = clock()

    async def acquire(self) -> None:
        # reserve a token now (the balance may go negative) and sleep until it is ours, so
        # concurrent senders queue fairly without polling
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1
        if self.tokens < 0:
            await self.sleep(-self.tokens / self.rate)


class HourlyCap:
    """At most ``cap`` messages in any rolling hour (relays with quotas)."""

    WINDOW = 3600.0

    def __init__(
        self,
        cap: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.cap = cap
        self.clock = clock
        self.sleep = sleep
        self.sent: deque[float] = deque()

    def seed(self, ages: Iterable[float]) -> None:
        """Count messages sent earlier (``ages`` seconds ago), e.g. by a previous run."""
        now = self.clock()
        for age in sorted(ages, reverse=True):
            if 0 <= age < self.WINDOW:
                self.sent.append(now - age)

    def wait_time(self) -> float:
        now = self.clock()
        while self.sent and self.sent[0] <= now - self.WINDOW + 1e-6:
            self.sent.popleft()
        if len(self.sent) < self.cap:
            return 0.0
        return self.sent[0] + self.WINDOW - now

    async def acquire(self, *, max_wait: float = float("inf")) -> None:
        """Take a slot, sleeping for one up to ``max_wait`` seconds; longer is QuotaReachedError.

        A send should not sit silent for most of an hour: it pauses instead, and ``send`` or
        the worker resumes it when the window has room again.
        """
        while (delay := self.wait_time()) > 0:
            if delay > max_wait:
                raise QuotaReachedError(
                    f"hourly cap of {self.cap} messages reached; the next slot opens in "
                    f"{delay / 60:.0f} min"
                )
            await self.sleep(delay)
        self.sent.append(self.clock())


def wire_form(data: bytes) -> bytes:
    """``data`` as it goes after DATA: CRLF line ends, leading dots doubled, ``.`` line last.

    Messages from :class:`~newsletter.message.MessageTemplate` are CRLF already, so the usual
    case is two ``bytes`` scans and a replace in C; aiosmtplib's regular expressions cost more
    than building the message.
    """
    if data.count(b"\n") != data.count(b"\r\n") or data.count(b"\r") != data.count(b"\r\n"):
        data = normalize_message_line_endings(data)
    elif not data.endswith(b"\r\n"):
        data += b"\r\n"
    data = data.replace(b"\r\n.", b"\r\n..")
    if data.startswith(b"."):
        data = b"." + data
    return data + b".\r\n"


# what may go between <> in MAIL FROM / RCPT TO here: printable ASCII without space and <>
_SMTP_ADDRESS = re.compile(r"[!-;=?-~]+@[!-;=?-~]+")
# an ENVID that needs no xtext encoding (RFC 3461 section 4: no "+", "=", controls or space)
_XTEXT_SAFE = re.compile(r"[!-*,-<>-~]{1,100}")


#: The aiosmtplib internals the bulk path writes through, by class. aiosmtplib is pinned below
#: its next major version (pyproject.toml); tests/test_transport_internals.py fails naming
#: these and the pin if a release drops one, and without them the path falls back to the
#: public API (correct, several times slower: see benchmarks/send.py).
AIOSMTPLIB_INTERNALS: dict[str, tuple[str, ...]] = {
    "SMTPProtocol": ("_command_lock", "_response_pending"),
    "SMTP": ("_ehlo_or_helo_if_needed",),
}


class _BulkSMTP(aiosmtplib.SMTP):
    """aiosmtplib's client with leaner MAIL, RCPT and DATA for the bulk path.

    aiosmtplib re-parses every address with ``email.utils`` and re-encodes every message with
    regular expressions; at a thousand messages a second that costs more than building them.
    Addresses here are checked once against :data:`_SMTP_ADDRESS` and messages arrive in wire
    form, so these send the same commands through aiosmtplib's public ``execute_command`` and
    write DATA under its command lock (:data:`AIOSMTPLIB_INTERNALS`).
    """

    # False takes only aiosmtplib's public API (what happens when the internals are gone)
    use_internals: ClassVar[bool] = True

    def _internals(self) -> bool:
        protocol = self.protocol
        return (
            self.use_internals
            and protocol is not None
            and all(hasattr(protocol, name) for name in AIOSMTPLIB_INTERNALS["SMTPProtocol"])
            and all(hasattr(self, name) for name in AIOSMTPLIB_INTERNALS["SMTP"])
        )

    async def mail_fast(self, sender: str, envid: str | None = None) -> aiosmtplib.SMTPResponse:
        if not _SMTP_ADDRESS.fullmatch(sender):
            raise ValueError(f"envelope sender {sender!r} is not a plain ASCII address")
        if self.is_ehlo_or_helo_needed:
            await self._greet()
        args = [b"FROM:<" + sender.encode("ascii") + b">"]
        if envid is not None and self.supports_extension("dsn") and _XTEXT_SAFE.fullmatch(envid):
            # RFC 3461: a DSN names the delivery even when the relay rewrote the envelope;
            # RET=HDRS has it return the original's headers only
            args += [b"RET=HDRS", b"ENVID=" + envid.encode("ascii")]
        response = await self.execute_command(b"MAIL", *args)
        if response.code != SMTPStatus.COMPLETED:
            raise aiosmtplib.SMTPSenderRefused(response.code, response.message, sender)
        return response

    async def _greet(self) -> None:
        if self._internals():
            await self._ehlo_or_helo_if_needed()
            return
        # what _ehlo_or_helo_if_needed does, in public calls
        try:
            await self.ehlo()
        except aiosmtplib.SMTPHeloError:
            if not self.is_connected:
                raise
            await self.helo()

    async def rcpt_fast(self, recipient: str) -> aiosmtplib.SMTPResponse:
        response = await self.execute_command(b"RCPT", b"TO:<" + recipient.encode("ascii") + b">")
        if response.code not in (SMTPStatus.COMPLETED, SMTPStatus.WILL_FORWARD):
            raise aiosmtplib.SMTPRecipientRefused(response.code, response.message, recipient)
        return response

    async def data_prepared(self, wire: bytes) -> aiosmtplib.SMTPResponse:
        protocol = self.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        lock = getattr(protocol, "_command_lock", None)
        if lock is None or not self._internals():
            # no lock (the connection is gone: data() says so) or no internals: the public way
            return await self.data(_unwire(wire))
        try:
            async with lock:
                # the same steps as aiosmtplib's execute_data_command, minus re-encoding
                protocol._response_pending = True
                protocol.write(b"DATA\r\n")
                start = await protocol.read_response(timeout=self.timeout)
                if start.code != SMTPStatus.START_INPUT:
                    raise aiosmtplib.SMTPDataError(start.code, start.message)
                protocol._response_pending = True
                protocol.write(wire)
                response = await protocol.read_response(timeout=self.timeout)
                if response.code != SMTPStatus.COMPLETED:
                    raise aiosmtplib.SMTPDataError(response.code, response.message)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            self.close()
            raise
        return response


def _unwire(wire: bytes) -> bytes:
    body = wire[: -len(b".\r\n")].replace(b"\r\n..", b"\r\n.")
    return body[1:] if body.startswith(b"..") else body


class _Connection:
    def __init__(self) -> None:
        self.smtp: _BulkSMTP | None = None
        self.sent = 0
        # failed opens in a row: the backoff before this slot tries again
        self.failures = 0

    def drop(self) -> None:
        if self.smtp is not None:
            self.smtp.close()
        self.smtp = None
        self.sent = 0


class SmtpPool:
    """``connections`` SMTP sessions shared by the delivery engine's senders.

    Each connection opens lazily, reconnects after a drop, and is closed and replaced after
    ``recycle_after`` messages (relays limit messages per session). Every command has its own
    ``timeout``. Replies are classified into the package's delivery errors.

    A connection that fails to open (refused, a 421 greeting, no greeting within ``timeout``)
    is taken out with a growing backoff and its message goes to another connection; the relay
    is unreachable (:class:`TransportUnavailableError`) only when no connection opened or
    answered for ``unreachable_after`` seconds. A 421 greeting while other connections are
    open is the relay's connection limit: that slot is retired and the pool stays smaller.
    """

    # seconds before a slot whose connection failed tries again: doubling up to the maximum
    BACKOFF_FIRST = 0.5
    BACKOFF_MAX = 30.0

    def __init__(
        self,
        endpoint: SmtpEndpoint,
        *,
        connections: int = 4,
        timeout: float = 30.0,
        recycle_after: int = 1000,
        rate: float = 0.0,
        hourly_cap: int = 0,
        quota_wait: float = 10.0,
        local_hostname: str | None = None,
        unreachable_after: float = 60.0,
    ) -> None:
        self.endpoint = endpoint
        self.connections = max(1, connections)
        self.unreachable_after = unreachable_after
        # slots in use (retired ones are not): a relay's connection limit shrinks it
        self.active = self.connections
        # when connections began failing to open with none opening since; None: they open
        self._failing_since: float | None = None
        self._last_error: RelayConnectError | None = None
        self._returns: set[asyncio.TimerHandle] = set()
        self.timeout = timeout
        self.recycle_after = recycle_after
        self.bucket = TokenBucket(rate) if rate > 0 else None
        self.hourly = HourlyCap(hourly_cap) if hourly_cap > 0 else None
        # waiting longer than this for the hourly cap pauses the send instead
        self.quota_wait = quota_wait
        self.local_hostname = local_hostname or socket.getfqdn()
        self._idle: asyncio.LifoQueue[_Connection] = asyncio.LifoQueue()
        self._all = [_Connection() for _ in range(self.connections)]
        for conn in self._all:
            self._idle.put_nowait(conn)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> SmtpPool:
        options: dict[str, Any] = {
            "connections": settings.smtp.connections,
            "timeout": settings.smtp.timeout,
            "recycle_after": settings.smtp.recycle_after,
            "rate": settings.smtp.rate,
            "hourly_cap": settings.smtp.hourly_cap,
            "unreachable_after": settings.smtp.unreachable_after,
        }
        options.update(overrides)
        return cls(endpoint_from_settings(settings), **options)

    @property
    def where(self) -> str:
        return self.endpoint.where

    async def send(
        self,
        sender: str,
        recipients: Sequence[str],
        data: bytes,
        *,
        prepared: bool = False,
        envid: str | None = None,
    ) -> SendResult:
        """One transaction; raises for message-level failures, returns per-recipient ones.

        ``prepared`` says ``data`` is CRLF throughout with leading dots doubled already (as
        ``MessageTemplate.render(dot_stuffed=True)`` makes it), which saves scanning it again.
        ``envid`` goes on MAIL FROM as RFC 3461's ENVID when the relay offers DSN.
        """
        wire = data + b".\r\n" if prepared else wire_form(data)
        if self.hourly is not None:
            await self.hourly.acquire(max_wait=self.quota_wait)
        if self.bucket is not None:
            await self.bucket.acquire()
        while True:
            conn = await self._slot()
            try:
                result = await self._send_on(conn, sender, recipients, wire, envid)
            except RelayConnectError as exc:
                # nothing was sent: this slot rests, the message goes on another one
                self._take_out(conn, exc)
                continue
            except DeliveryError:
                self._answered(conn)
                raise
            except BaseException:
                self._idle.put_nowait(conn)
                raise
            self._answered(conn)
            return result

    def _answered(self, conn: _Connection) -> None:
        self._failing_since = None
        conn.failures = 0
        self._idle.put_nowait(conn)

    async def _slot(self) -> _Connection:
        """An idle connection; waits while every slot is busy or resting.

        Every resting slot comes back after its backoff (at most ``BACKOFF_MAX``), and the
        outage is declared where a connection fails (:meth:`_take_out`), so no deadline here.
        """
        if not self._idle.empty():
            # the usual case, without a waiter per message
            return self._idle.get_nowait()
        return await self._idle.get()

    def _unreachable_now(self) -> TransportUnavailableError:
        opened = f"no connection opened for {self.unreachable_after:g} s"
        if self._last_error is None:
            return TransportUnavailableError(f"the SMTP server at {self.where}: {opened}")
        return TransportUnavailableError(
            f"{self._last_error.message} ({opened})", code=self._last_error.code
        )

    def _take_out(self, conn: _Connection, exc: RelayConnectError) -> None:
        conn.drop()
        self._last_error = exc
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if now - self._failing_since >= self.unreachable_after:
            self._idle.put_nowait(conn)
            raise self._unreachable_now() from exc
        others_open = any(
            c is not conn and c.smtp is not None and c.smtp.is_connected for c in self._all
        )
        if exc.code == SMTPStatus.DOMAIN_UNAVAILABLE and others_open and self.active > 1:
            # "421 too many connections" while others are open: the relay's limit, so this
            # slot stays out for the rest of the run
            self.active -= 1
            return
        conn.failures += 1
        delay = min(self.BACKOFF_MAX, self.BACKOFF_FIRST * 2 ** (conn.failures - 1))
        delay *= random.uniform(0.75, 1.25)
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def back() -> None:
            if handle is not None:
                self._returns.discard(handle)
            self._idle.put_nowait(conn)

        handle = loop.call_later(delay, back)
        self._returns.add(handle)

    async def _send_on(
        self,
        conn: _Connection,
        sender: str,
        recipients: Sequence[str],
        wire: bytes,
        envid: str | None = None,
    ) -> SendResult:
        # a reused connection may have been closed by the server while idle; nothing was sent
        # on it yet, so one fresh connection is tried before giving up
        for attempt in (1, 2):
            fresh = conn.smtp is None or not conn.smtp.is_connected
            smtp = await self._connected(conn)
            try:
                await smtp.mail_fast(sender, envid)
            except ValueError as exc:
                raise TransportUnavailableError(
                    f"{exc}; check publication.sender and smtp.return_path"
                ) from None
            except aiosmtplib.SMTPServerDisconnected:
                conn.drop()
                if attempt == 1 and not fresh:
                    continue
                raise TransportUnavailableError(
                    f"the SMTP server at {self.where} closes the connection at MAIL FROM"
                ) from None
            except aiosmtplib.SMTPResponseException as exc:
                await self._reset(conn, exc.code)
                if is_permanent(exc.code):
                    # the sender is refused for every message: stop rather than bounce everyone
                    raise TransportUnavailableError(
                        f"the SMTP server at {self.where} refuses the sender {sender}: "
                        f"{exc.code} {exc.message}",
                        code=exc.code,
                    ) from exc
                raise TemporaryDeliveryError(exc.message, code=exc.code) from exc
            except aiosmtplib.SMTPTimeoutError as exc:
                conn.drop()
                raise TemporaryDeliveryError(f"timed out at MAIL FROM: {exc}") from exc
            return await self._rcpt_and_data(conn, smtp, recipients, wire)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _rcpt_and_data(
        self, conn: _Connection, smtp: _BulkSMTP, recipients: Sequence[str], wire: bytes
    ) -> SendResult:
        accepted: list[str] = []
        refused: dict[str, DeliveryError] = {}
        try:
            for rcpt in recipients:
                if not _SMTP_ADDRESS.fullmatch(rcpt):
                    refused[rcpt] = PermanentDeliveryError(
                        "the address cannot be used in an SMTP envelope", recipient=rcpt
                    )
                    continue
                try:
                    await smtp.rcpt_fast(rcpt)
                    accepted.append(rcpt)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    refused[rcpt] = classify(exc.code, exc.message, recipient=rcpt)
                    if exc.code == SMTPStatus.DOMAIN_UNAVAILABLE:
                        raise
            if not accepted:
                await self._reset(conn, 0)
                return SendResult((), refused, 0, "")
            response = await smtp.data_prepared(wire)
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset(conn, exc.code)
            error = classify(exc.code, exc.message)
            raise error from exc
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
            conn.drop()
            raise TemporaryDeliveryError(f"connection lost during the transaction: {exc}") from exc
        except aiosmtplib.SMTPTimeoutError as exc:
            conn.drop()
            raise TemporaryDeliveryError(f"timed out waiting for the server: {exc}") from exc
        conn.sent += 1
        if conn.sent >= self.recycle_after:
            await self._quit(conn)
        return SendResult(tuple(accepted), refused, response.code, response.message)

    async def _connected(self, conn: _Connection) -> _BulkSMTP:
        if conn.smtp is not None and conn.smtp.is_connected:
            return conn.smtp
        conn.drop()
        smtp = await open_session(
            self.endpoint, _BulkSMTP, timeout=self.timeout, local_hostname=self.local_hostname
        )
        conn.smtp = smtp
        return smtp

    async def _reset(self, conn: _Connection, code: int) -> None:
        # 421 means the server is closing the session; anything else leaves it usable after RSET
        if code == SMTPStatus.DOMAIN_UNAVAILABLE or conn.smtp is None:
            conn.drop()
            return
        try:
            await conn.smtp.rset()
        except (aiosmtplib.SMTPException, OSError):
            conn.drop()

    async def _quit(self, conn: _Connection) -> None:
        if conn.smtp is not None:
            await close_session(conn.smtp)
        conn.drop()

    async def close(self) -> None:
        """QUIT every open connection (politely; errors are ignored)."""
        for handle in self._returns:
            handle.cancel()
        self._returns.clear()
        for conn in self._all:
            await self._quit(conn)


def classify(code: int, message: str, *, recipient: str | None = None) -> DeliveryError:
    """A reply code as the package's error: 5xx permanent, anything else temporary."""
    if is_permanent(code):
        return PermanentDeliveryError(message, recipient=recipient, code=code)
    return TemporaryDeliveryError(message, recipient=recipient, code=code)
