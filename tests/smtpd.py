"""A real SMTP server on loopback for tests: aiosmtpd with a recording, fault-injecting handler.

Faults are plain data on :class:`Faults`, set per test, so a test reads as "the server says
451 to this recipient twice, then accepts" rather than as mock wiring.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from newsletter.sink import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    # the session was encrypted (STARTTLS or implicit TLS) when the message came in
    tls: bool = False
    # the user the session authenticated as (what the server's authenticator recorded)
    login: str | None = None

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Faults:
    """Per-test server behaviour. Reply lists are consumed one per matching command."""

    # recipient -> replies for successive RCPT TO commands, e.g. ["451 4.3.0 try later"]
    rcpt: dict[str, list[str]] = field(default_factory=dict)
    # replies for successive DATA commands (after the message was received), then "250"
    data: list[str] = field(default_factory=list)
    # replies for successive MAIL FROM commands
    mail: list[str] = field(default_factory=list)
    # seconds to sleep before answering DATA (slow server / timeouts)
    data_delay: float = 0.0
    # drop the connection while the next N messages are in DATA, without replying
    disconnect_in_data: int = 0
    # seconds to stall before answering each of the next DATA commands (one per message)
    data_stalls: list[float] = field(default_factory=list)
    # what each new connection gets before the greeting, one per connection, then "":
    # "" a normal 220, "close" the socket closed at once (a refused connect), "stall" no
    # greeting at all (a greeting timeout), or a reply such as "421 4.7.0 too many connections"
    # after which the server closes the connection
    greetings: list[str] = field(default_factory=list)
    # called with each accepted message; may raise to simulate odd behaviour
    on_message: Callable[[Received], None] | None = None


def encrypted(server: SMTP, session: Session) -> bool:
    """Whether the session runs over TLS, by STARTTLS or implicitly."""
    # aiosmtpd sets session.ssl for STARTTLS only; implicit TLS shows in the transport
    transport = server.transport
    return session.ssl is not None or (
        transport is not None and transport.get_extra_info("sslcontext") is not None
    )


class RecordingHandler:
    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.faults = Faults()
        self.lock = threading.Lock()
        self.connections = 0
        # connections that got a greeting fault (closed by the server right away)
        self.greeting_faults = 0

    def reset(self) -> None:
        with self.lock:
            self.messages.clear()
            self.faults = Faults()

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self.lock:
            reply = self.faults.mail.pop(0) if self.faults.mail else None
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self.lock:
            replies = self.faults.rcpt.get(address.lower())
            reply = replies.pop(0) if replies else None
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    def greeting(self) -> str:
        with self.lock:
            self.connections += 1
            fault = self.faults.greetings.pop(0) if self.faults.greetings else ""
            if fault:
                self.greeting_faults += 1
            return fault

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.faults.data_delay:
            await asyncio.sleep(self.faults.data_delay)
        with self.lock:
            stall = self.faults.data_stalls.pop(0) if self.faults.data_stalls else 0.0
        if stall:
            await asyncio.sleep(stall)
        with self.lock:
            if self.faults.disconnect_in_data > 0:
                self.faults.disconnect_in_data -= 1
                drop = True
            else:
                drop = False
            reply = self.faults.data.pop(0) if self.faults.data else None
        if drop:
            assert server.transport is not None
            server.transport.close()
            return "421 4.4.2 connection dropped"
        if reply:
            return reply
        content = envelope.original_content or envelope.content or b""
        assert isinstance(content, bytes)
        received = Received(
            str(envelope.mail_from),
            list(envelope.rcpt_tos),
            content,
            tls=encrypted(server, session),
            login=session.auth_data if isinstance(session.auth_data, str) else None,
        )
        with self.lock:
            self.messages.append(received)
        if self.faults.on_message:
            self.faults.on_message(received)
        return "250 2.0.0 OK queued"

    def by_recipient(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self.lock:
            for m in self.messages:
                for r in m.rcpt_tos:
                    counts[r.lower()] = counts.get(r.lower(), 0) + 1
        return counts


class FaultySMTP(SMTP):
    """aiosmtpd's server with the greeting faults of :attr:`Faults.greetings`."""

    async def _handle_client(self) -> None:
        handler = self.event_handler
        fault = handler.greeting() if isinstance(handler, RecordingHandler) else ""
        if fault == "close":
            assert self.transport is not None
            self.transport.close()
            return
        if fault == "stall":
            # no greeting until the client gives up and hangs up (this task is cancelled then)
            try:
                while self.transport is not None and not self.transport.is_closing():
                    await asyncio.sleep(0.02)
            finally:
                self._writer.close()
            return
        if fault:
            await self.push(fault)
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()


class FaultyController(Controller):
    def factory(self) -> SMTP:
        return FaultySMTP(self.handler, **self.SMTP_kwargs)


class SMTPServer:
    """Starts and stops the aiosmtpd controller; ``stop``/``start`` simulate a relay outage.

    ``options`` go to aiosmtpd's Controller and SMTP (``tls_context``, ``ssl_context``,
    ``authenticator``...); ``scheme`` is what :attr:`url` says (``smtps`` for implicit TLS).
    """

    def __init__(
        self, handler: RecordingHandler, port: int = 0, *, scheme: str = "smtp", **options: Any
    ) -> None:
        self.handler = handler
        self.port = port
        self.scheme = scheme
        self.options = options
        self.controller: Controller | None = None

    def start(self) -> None:
        self.port = self.port or free_port()
        kwargs: dict[str, Any] = {"hostname": "127.0.0.1", "port": self.port}
        self.controller = FaultyController(
            self.handler, ready_timeout=10, decode_data=False, **kwargs, **self.options
        )
        self.controller.start()
        # the controller's own check that the server is up is not a client's connection
        with self.handler.lock:
            self.handler.connections = 0

    def stop(self) -> None:
        if self.controller is not None:
            if self.handler.greeting_faults:
                # a connection the server just closed needs a loop turn to let its socket go
                # (or it is reported unclosed when the loop stops under it)
                time.sleep(0.05)
            self.controller.stop()
            self.controller = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"
