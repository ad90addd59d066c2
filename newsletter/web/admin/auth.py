"""Signing in and out of the dashboard: ``/admin/login`` and ``/admin/logout``.

The login form carries a token that must match a short-lived cookie (so no other site can
sign a browser into an account of its choosing). Failures count against the account and
the client address (``[admin] login_attempts`` per 15 minutes); past the limit the password
is not even checked. A successful login always starts a new session and ends the one the
browser came with, so a session id planted before login is worth nothing after it.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from newsletter import urls
from newsletter.errors import BodyTooLarge
from newsletter.passwords import hash_password, needs_rehash, verify_password
from newsletter.store.accounts import (
    Editor,
    end_session,
    find_editor,
    set_password_hash,
    start_session,
)
from newsletter.web.admin.context import LOGIN, AdminContext, session_of
from newsletter.web.context import parse_form, read_body
from newsletter.web.subscribe import client_key

LOGIN_COOKIE = "newsletter_admin_login"
LOGOUT = urls.ADMIN + "/logout"
WRONG = "That email address and password do not match an account."
TOO_MANY = "Too many failed attempts. Wait 15 minutes, then try again."


def _next(value: str | None) -> str:
    """Where to go after login: a dashboard path on this site, never elsewhere."""
    if not value or not value.startswith(urls.ADMIN) or value.startswith("//"):
        return urls.ADMIN
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or "\\" in value:
        return urls.ADMIN
    return value


def routes(ctx: AdminContext) -> list[BaseRoute]:
    def login_page(request: Request, *, status: int = 200, error: str | None = None) -> Response:
        token = secrets.token_urlsafe(24)
        response = ctx.page(
            "login.html",
            request,
            status_code=status,
            error=error,
            login_token=token,
            next=_next(request.query_params.get("next")),
        )
        response.set_cookie(
            LOGIN_COOKIE,
            token,
            max_age=3600,
            path=LOGIN,
            secure=ctx.secure,
            httponly=True,
            samesite="strict",
        )
        return response

    async def show(request: Request) -> Response:
        return login_page(request)

    def check(email: str, password: str) -> Editor | None:
        with ctx.engine.connect() as conn:
            editor = find_editor(conn, email) if email else None
        # the hash is checked even for no account, so timing does not say which emails exist
        if not verify_password(editor.password_hash if editor else None, password):
            return None
        return editor

    def sign_in(editor: Editor, old: str) -> str:
        with ctx.engine.begin() as conn:
            if old:
                end_session(conn, old)
            session_id, _ = start_session(conn, editor, now=ctx.now(), lifetime=ctx.lifetime)
        return session_id

    async def login(request: Request) -> Response:
        try:
            form = await parse_form(request, await read_body(request))
        except BodyTooLarge:
            return Response("request too large\n", status_code=413)
        cookie = request.cookies.get(LOGIN_COOKIE, "")
        sent = str(form.get("login_token") or "")
        if (
            not cookie
            or not ctx.origin_ok(request)
            or not hmac.compare_digest(cookie.encode(), sent.encode())
        ):
            return login_page(request, status=403, error="The form expired; please sign in again.")
        email = str(form.get("email") or "").strip().lower()[:320]
        password = str(form.get("password") or "")[:1024]
        ip = client_key(request.client.host if request.client else "unknown")
        if not ctx.per_account.allowed(email) or not ctx.per_ip.allowed(ip):
            return login_page(request, status=429, error=TOO_MANY)
        editor = await run_in_threadpool(check, email, password)
        if editor is None:
            ctx.per_account.hit(email)
            ctx.per_ip.hit(ip)
            return login_page(request, status=401, error=WRONG)
        if needs_rehash(editor.password_hash):
            # stronger parameters since this hash was made: renew it while we have the password
            digest = await run_in_threadpool(hash_password, password)
            await run_in_threadpool(_rehash, ctx, editor.id, digest)
        session_id = await run_in_threadpool(sign_in, editor, request.cookies.get(ctx.cookie, ""))
        response = RedirectResponse(_next(str(form.get("next") or "")), status_code=303)
        response.set_cookie(
            ctx.cookie,
            session_id,
            max_age=int(ctx.lifetime.total_seconds()),
            path=ctx.cookie_path,
            secure=ctx.secure,
            httponly=True,
            samesite="strict",
        )
        response.delete_cookie(LOGIN_COOKIE, path=LOGIN)
        return response

    async def logout(request: Request) -> Response:
        await ctx.form(request)
        session_id = request.cookies.get(ctx.cookie, "")
        session_of(request)

        def end() -> None:
            with ctx.engine.begin() as conn:
                end_session(conn, session_id)

        await run_in_threadpool(end)
        response = RedirectResponse(LOGIN, status_code=303)
        response.delete_cookie(
            ctx.cookie, path=ctx.cookie_path, secure=ctx.secure, httponly=True, samesite="strict"
        )
        return response

    return [
        Route(LOGIN, show, methods=["GET"], name="admin_login_page"),
        Route(LOGIN, login, methods=["POST"], name="admin_login"),
        Route(LOGOUT, logout, methods=["POST"], name="admin_logout"),
    ]


def _rehash(ctx: AdminContext, editor_id: int, digest: str) -> None:
    with ctx.engine.begin() as conn:
        set_password_hash(conn, editor_id, digest)
