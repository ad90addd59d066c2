"""What the dashboard's handlers share, and the gate every ``/admin`` request goes through.

:class:`AdminGate` is an ASGI middleware on the whole app that acts on ``/admin`` paths only:
it sets the dashboard's security headers on every answer, and anything but the login page and
the static files needs a live session, so a page added later cannot be left open by
forgetting a decorator. State-changing forms carry the session's CSRF token
(:meth:`AdminContext.form`), checked in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from jinja2 import Environment
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter import urls
from newsletter.config import Settings
from newsletter.errors import BodyTooLarge
from newsletter.store.accounts import Session, load_session
from newsletter.templating import Templates, environment
from newsletter.web.context import parse_form, read_body
from newsletter.web.ratelimit import RateLimiter

LOGIN = urls.ADMIN + "/login"
STATIC = urls.ADMIN + "/static"
# a login failure counts against the account and the client address for this long
LOGIN_WINDOW = 15 * 60.0
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}
SESSION_KEY = "admin_session"


@dataclass
class AdminContext:
    settings: Settings
    engine: Engine
    pages: Environment
    per_account: RateLimiter
    per_ip: RateLimiter
    now: Callable[[], datetime]

    @property
    def secure(self) -> bool:
        return self.settings.publication.base_url.lower().startswith("https://")

    @property
    def cookie(self) -> str:
        # __Host- binds the cookie to this exact host over HTTPS, path /, no Domain
        return "__Host-newsletter_admin" if self.secure else "newsletter_admin"

    @property
    def cookie_path(self) -> str:
        return "/" if self.secure else urls.ADMIN

    @property
    def lifetime(self) -> timedelta:
        return timedelta(hours=self.settings.admin.session_hours)

    @property
    def idle(self) -> timedelta:
        return timedelta(minutes=self.settings.admin.idle_minutes)

    def page(self, name: str, request: Request, *, status_code: int = 200, **ctx: Any) -> Response:
        session = request.scope.get("state", {}).get(SESSION_KEY)
        html = self.pages.get_template(name).render(
            session=session,
            editor=session.editor if session else None,
            csrf=session.csrf_token if session else "",
            admin=urls.ADMIN,
            path=request.url.path,
            **ctx,
        )
        return HTMLResponse(html, status_code=status_code)

    def origin_ok(self, request: Request) -> bool:
        """A browser's Origin (or Referer) on a form post must be this site's."""
        own = urlsplit(self.settings.publication.base_url)
        claimed = request.headers.get("origin") or request.headers.get("referer")
        if not claimed:
            return True  # not a browser's cross-site post (those always say where from)
        other = urlsplit(claimed)
        return (other.scheme, other.netloc) == (own.scheme, own.netloc)

    async def form(self, request: Request) -> FormData:
        """The posted form, refused (403) without this session's CSRF token or from elsewhere."""
        session = session_of(request)
        try:
            form = await parse_form(request, await read_body(request))
        except BodyTooLarge:
            raise HTTPException(413, "request too large") from None
        token = str(form.get("csrf") or "")
        if not self.origin_ok(request) or not hmac.compare_digest(
            token.encode(), session.csrf_token.encode()
        ):
            raise HTTPException(403, "this form has expired or did not come from this site")
        return form


def session_of(request: Request) -> Session:
    session = request.scope.get("state", {}).get(SESSION_KEY)
    if session is None:  # the gate lets nothing through without one
        raise HTTPException(403, "not signed in")
    assert isinstance(session, Session)
    return session


def admin_context(
    settings: Settings, engine: Engine, *, clock: Callable[[], float]
) -> AdminContext:
    limit = settings.admin.login_attempts
    return AdminContext(
        settings=settings,
        engine=engine,
        pages=environment(settings, Templates.ADMIN, filters={"pct": _pct, "when": _when}),
        per_account=RateLimiter(limit, LOGIN_WINDOW, clock=clock),
        per_ip=RateLimiter(4 * limit, LOGIN_WINDOW, clock=clock),
        now=lambda: datetime.now(UTC),
    )


def _pct(rate: float | None, digits: int = 2) -> str:
    return "–" if rate is None else f"{rate * 100:.{digits}f} %"


def _when(value: datetime | None) -> str:
    return "–" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _public(path: str) -> bool:
    return path == LOGIN or path.startswith(STATIC + "/")


class AdminGate:
    """Headers on every ``/admin`` answer; a live session for everything but login and static."""

    def __init__(self, app: ASGIApp, *, context: AdminContext) -> None:
        self.app = app
        self.ctx = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == urls.ADMIN or path.startswith(urls.ADMIN + "/")):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name in HEADERS}
                kept = [
                    (k, v) for k, v in message.get("headers", []) if k.decode().lower() not in names
                ]
                message["headers"] = kept + [(k.encode(), v.encode()) for k, v in HEADERS.items()]
            await send(message)

        if not _public(path):
            request = Request(scope)
            session_id = request.cookies.get(self.ctx.cookie, "")
            session = None
            if session_id:
                session = await run_in_threadpool(self._load, session_id)
            if session is None:
                response: Response
                if scope.get("method") in ("GET", "HEAD"):
                    target = LOGIN + "?next=" + quote(path, safe="/")
                    response = RedirectResponse(target, status_code=303)
                else:
                    response = PlainTextResponse("not signed in\n", status_code=403)
                await response(scope, receive, with_headers)
                return
            scope.setdefault("state", {})[SESSION_KEY] = session
        await self.app(scope, receive, with_headers)

    def _load(self, session_id: str) -> Session | None:
        with self.ctx.engine.begin() as conn:
            return load_session(conn, session_id, now=self.ctx.now(), idle=self.ctx.idle)
