"""A local SMTP sink: accepts every message on loopback and files it in a Maildir.

``newsletter sink`` lets a newcomer send for real without a relay; ``newsletter demo`` runs one
in-process. Each stored message gets ``X-Sink-Envelope-From`` and ``X-Sink-Envelope-To``
headers in front, so a reader can see who the message went to.
"""

from __future__ import annotations

import mailbox
import socket
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from newsletter.errors import SinkError


class MaildirHandler:
    """aiosmtpd handler that stores each message once in a Maildir."""

    def __init__(self, maildir: Path) -> None:
        self.path = maildir
        try:
            # Maildir(create=True) makes only the last directory; a fresh clone has no var/
            maildir.parent.mkdir(parents=True, exist_ok=True)
            self.box = mailbox.Maildir(str(maildir), create=True)
        except OSError as exc:
            raise SinkError(f"cannot create the Maildir at {maildir}: {exc}") from exc
        self.lock = threading.Lock()
        self.received = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        # envelope addresses were parsed by aiosmtpd and cannot hold CR/LF
        trace = (
            f"X-Sink-Envelope-From: <{envelope.mail_from}>\r\n"
            f"X-Sink-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode("utf-8", "replace")
        with self.lock:
            self.box.add(trace + content)
            self.received += 1
        return "250 2.0.0 OK stored"


class Sink:
    """The sink server; ``start``/``stop`` run it in a background thread."""

    def __init__(self, maildir: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.handler = MaildirHandler(maildir)
        self.host = host
        self.port = port or free_port(host)
        self.controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    @property
    def maildir(self) -> Path:
        return self.handler.path

    def start(self) -> None:
        # aiosmtpd only notices a taken port after its ready timeout; find out at once
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.host, self.port))
            except OSError as exc:
                raise SinkError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        kwargs: dict[str, Any] = {"hostname": self.host, "port": self.port}
        self.controller = Controller(self.handler, ready_timeout=10, decode_data=False, **kwargs)
        try:
            self.controller.start()
        except (OSError, RuntimeError) as exc:
            self.controller = None
            raise SinkError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def __enter__(self) -> Sink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def count_messages(maildir: Path) -> int:
    """Messages in the Maildir (new and read)."""
    if not maildir.exists():
        return 0
    return len(mailbox.Maildir(str(maildir), create=False))
