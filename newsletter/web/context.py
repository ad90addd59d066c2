"""What the web handlers share: settings, the engine, the mailer, page templates, rate limits."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol

from jinja2 import Environment
from sqlalchemy import Engine
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.types import Message

from newsletter.config import Settings
from newsletter.errors import BodyTooLarge
from newsletter.i18n import translations
from newsletter.store.subscribers import ensure_lists
from newsletter.templating import Templates, environment
from newsletter.transport import send_single
from newsletter.web.ratelimit import RateLimiter

log = logging.getLogger(__name__)

# Every page: no MIME sniffing, never framed by another site (clickjacking the buttons).
PAGE_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}
# Pages with a token in their URL: the token must not leak through Referer to the brand's
# logo host, nor sit in a shared cache. "same-origin", not "no-referrer": under no-referrer a
# browser says "Origin: null" when the page posts its own form, and the form check
# (newsletter.web.security) could not tell the page's button from another site's.
PRIVATE_HEADERS = {**PAGE_HEADERS, "Cache-Control": "no-store", "Referrer-Policy": "same-origin"}
# Forms here are a few fields; uvicorn sets no limit and Starlette reads bodies into memory.
MAX_BODY_BYTES = 16 * 1024


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, refused as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_form(request: Request, body: bytes) -> FormData:
    """``body`` (read already, bounded) parsed as the form ``request`` carries."""

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return await Request(request.scope, replay).form()


class Mailer(Protocol):
    """Sends one ready-made message (confirmation emails)."""

    async def send(self, message: EmailMessage) -> None: ...


class SmtpMailer:
    """The real mailer: one message per connection through the configured relay."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, message: EmailMessage) -> None:
        await send_single(self.settings, message)


def page_environment(settings: Settings) -> Environment:
    """Jinja for the web pages and confirmation email: autoescaped, strict about typos."""
    return environment(settings, Templates.PAGES)


@dataclass
class WebContext:
    settings: Settings
    engine: Engine
    mailer: Mailer
    pages: Environment
    per_address: RateLimiter
    per_ip: RateLimiter
    _list_ids: dict[str, int] | None = field(default=None, repr=False)

    def list_ids(self) -> dict[str, int]:
        """slug -> id, creating rows for configured lists on first use (blocking: thread)."""
        if self._list_ids is None:
            with self.engine.begin() as conn:
                self._list_ids = ensure_lists(conn, self.settings)
        return self._list_ids

    def gettext(self, message: str) -> str:
        """``message`` in the publication's language (messages marked ``N_`` where made)."""
        return translations(self.settings.publication.lang).gettext(message)

    def page(
        self,
        name: str,
        *,
        status_code: int = 200,
        private: bool = False,
        **context: Any,
    ) -> HTMLResponse:
        html = self.pages.get_template(f"web/{name}").render(**context)
        headers = dict(PRIVATE_HEADERS if private else PAGE_HEADERS)
        return HTMLResponse(html, status_code=status_code, headers=headers)
