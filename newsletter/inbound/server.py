"""``newsletter inbound``: the SMTP receiver for the bounce domain (aiosmtpd).

It runs behind Postfix (a transport map sends the bounce domain here) or as that domain's MX,
bound to 127.0.0.1 unless told otherwise. It accepts mail only for the addresses reports come
to: ``<prefix>+<token>@<bounce domain>`` (VERP), ``<prefix>@`` and the feedback-loop address
``<feedback_local>@`` at the bounce domain, and ``unsubscribe@`` at the bounce and the sender's
domain. Anything else gets ``550``: it is never a relay. Messages over
``[bounces] max_message_bytes`` get ``552``. Every accepted message goes through the intake
before the ``250``; one the intake cannot match is stored for review, never dropped, and when
the store is down the answer is ``451`` so the sending MTA keeps it and tries again.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from newsletter.addresses import sender_domain
from newsletter.config import Settings
from newsletter.errors import InboundError, NewsletterError, StoreError
from newsletter.inbound.intake import Intake
from newsletter.inbound.verp import TOKEN_LENGTH
from newsletter.logfmt import log_event
from newsletter.states import EventSource
from newsletter.store.events import Applied

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Addresses:
    """Which envelope recipients the receiver takes mail for."""

    bounce_domain: str
    prefix: str
    feedback_local: str
    #: domains ``unsubscribe@`` is accepted at
    unsubscribe_domains: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_settings(cls, settings: Settings) -> Addresses:
        domain = settings.bounce_domain or sender_domain(settings.publication.sender)
        return cls(
            bounce_domain=domain.lower(),
            prefix=settings.bounce_prefix.lower(),
            feedback_local=settings.bounces.feedback_local.lower(),
            unsubscribe_domains=frozenset(
                {domain.lower(), sender_domain(settings.publication.sender).lower()}
            ),
        )

    def accepts(self, address: str) -> bool:
        local, at, domain = address.strip().strip("<>").rpartition("@")
        if not at:
            return False
        local, domain = local.lower(), domain.lower().rstrip(".")
        if local == "unsubscribe" and domain in self.unsubscribe_domains:
            return True
        if domain != self.bounce_domain:
            return False
        if local in (self.prefix, self.feedback_local):
            return True
        head, plus, token = local.partition("+")
        # the token is checked by the intake; here only its shape, so forged ones are kept
        return bool(plus) and head == self.prefix and _TOKEN_SHAPE.fullmatch(token) is not None


_TOKEN_SHAPE = re.compile(rf"[a-z2-7]{{{TOKEN_LENGTH}}}")


class InboundHandler:
    """aiosmtpd handler: RCPT by :class:`Addresses`, DATA through the intake."""

    def __init__(
        self,
        intake: Intake,
        addresses: Addresses,
        *,
        on_taken: Callable[[Applied], None] | None = None,
    ) -> None:
        self.intake = intake
        self.addresses = addresses
        self.on_taken = on_taken
        self.received = 0

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if not self.addresses.accepts(address):
            return "550 5.1.1 no such mailbox here (this server takes bounces and reports only)"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        data = bytes(content)
        try:
            for recipient in envelope.rcpt_tos:
                # as a delivery agent records it: the stored report shows whom it came for, and
                # one message to two VERP addresses is two reports, not one and a repeat
                # (aiosmtpd parsed the address: no CR/LF can be in it)
                stamped = b"Delivered-To: " + recipient.encode("utf-8", "replace") + b"\r\n" + data
                applied = await asyncio.to_thread(
                    self.intake.take, stamped, EventSource.SMTP, envelope_recipient=recipient
                )
                self._log(applied, recipient)
        except StoreError as exc:
            log_event("inbound_store_error", {}, level=logging.ERROR, error=str(exc))
            return "451 4.3.0 cannot store the report now; try again later"
        except NewsletterError as exc:
            log_event("inbound_error", {}, level=logging.ERROR, error=str(exc))
            return "451 4.3.0 cannot take the report now; try again later"
        except Exception:
            # a bug must not lose the report either: the sending MTA keeps it and retries
            log_event("inbound_crashed", {}, level=logging.ERROR, exc_info=True)
            return "451 4.3.0 cannot take the report now; try again later"
        self.received += 1
        return "250 2.0.0 OK taken"

    def _log(self, applied: Applied, recipient: str) -> None:
        outcome = "duplicate" if applied.duplicate else applied.outcome.value  # type: ignore[union-attr]
        log_event(
            "inbound_report",
            {},
            outcome=outcome,
            effect=applied.effect.value if applied.effect else None,
            suppressed=applied.suppressed or None,
        )
        if self.on_taken is not None:
            self.on_taken(applied)


class InboundServer:
    """The receiver in a background thread (aiosmtpd's Controller); ``start``/``stop``."""

    def __init__(
        self,
        settings: Settings,
        intake: Intake,
        *,
        host: str | None = None,
        port: int | None = None,
        on_taken: Callable[[Applied], None] | None = None,
    ) -> None:
        self.host = host or settings.bounces.listen_host
        self.port = port if port is not None else settings.bounces.listen_port
        self.handler = InboundHandler(intake, Addresses.from_settings(settings), on_taken=on_taken)
        self.controller = Controller(
            self.handler,
            hostname=self.host,
            port=self.port,
            ready_timeout=10,
            decode_data=False,
            server_hostname=Addresses.from_settings(settings).bounce_domain,
            data_size_limit=settings.bounces.max_message_bytes,
        )

    def start(self) -> None:
        try:
            self.controller.start()
        except (OSError, RuntimeError) as exc:
            raise InboundError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> InboundServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
