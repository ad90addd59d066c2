"""``newsletter serve`` under uvicorn: deadlines for slow requests and a connection limit.

uvicorn closes idle keep-alive connections but sets no limit on how long a client may take to
send a request: a few hundred clients trickling headers a byte at a time would hold every
connection. :class:`DeadlineProtocol` gives each request ``serve.header_timeout`` seconds for
its headers and then ``serve.body_timeout`` for its body; a connection over either is closed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from newsletter.config import Serve

log = logging.getLogger(__name__)


class DeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, with a deadline on receiving each request."""

    header_timeout: ClassVar[float] = 10.0
    body_timeout: ClassVar[float] = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_for: str | None = None
        self._fresh = True

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._arm(None, 0.0)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def handle_events(self) -> None:
        super().handle_events()
        if self._fresh and self.conn.their_state is not h11.IDLE:
            self._fresh = False

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def _watch(self) -> None:
        """Arm the deadline for what the connection is waiting for from the client, if any."""
        if self.transport is None or self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            self._arm("body", self.body_timeout)
        elif state is h11.IDLE and (self._fresh or self.conn.trailing_data[0]):
            # a new connection, or the start of the next request on a kept-alive one (an
            # idle kept-alive connection is uvicorn's keep-alive timeout's)
            self._arm("headers", self.header_timeout)
        else:
            self._arm(None, 0.0)

    def _arm(self, waiting_for: str | None, seconds: float) -> None:
        if waiting_for == self._waiting_for:
            return  # a deadline runs from the start of what it limits, not the last byte
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._waiting_for = waiting_for
        if waiting_for is not None:
            self._deadline = self.loop.call_later(seconds, self._expired)

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.info("closed the connection from %s: request %s too slow", client, self._waiting_for)
        self.transport.close()


def protocol_for(serve: Serve) -> type[DeadlineProtocol]:
    """:class:`DeadlineProtocol` with ``serve``'s timeouts."""
    return type(
        "ServeProtocol",
        (DeadlineProtocol,),
        {"header_timeout": serve.header_timeout, "body_timeout": serve.body_timeout},
    )


def config(app: ASGIApp, serve: Serve, *, host: str, port: int) -> uvicorn.Config:
    """The uvicorn configuration ``newsletter serve`` runs with."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_for(serve),
        # forwarded headers are the app's business (serve.trusted_proxies), not uvicorn's
        proxy_headers=False,
        limit_concurrency=serve.max_connections,
        server_header=False,
        log_level="info",
    )
