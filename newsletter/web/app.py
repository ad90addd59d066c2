"""The Starlette application: subscribe, confirm, unsubscribe, images, the archive, tracked
links (``/r``, ``/o``).

:func:`create_app` is the only entry point; ``newsletter serve`` runs it under uvicorn and
tests drive it through ``TestClient``. Everything it needs comes in as arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from newsletter import urls
from newsletter.config import Settings
from newsletter.inbound.sns import SnsVerifier
from newsletter.store.database import make_engine
from newsletter.web import admin, archive, join, redirect, subscribe, unsubscribe, webhooks
from newsletter.web.context import Mailer, SmtpMailer, WebContext, page_environment
from newsletter.web.ratelimit import Clock, RateLimiter

__all__ = ["Mailer", "SmtpMailer", "create_app"]

# A person may ask for a confirmation a few times (typo, lost email) but not flood a mailbox;
# one address behind a NAT may serve a whole office, so the IP limit is looser.
PER_ADDRESS_LIMIT = (3, 3600.0)
PER_IP_LIMIT = (20, 600.0)

logger = logging.getLogger(__name__)


class ImmutableFiles(StaticFiles):
    """Static files that never change under their name: cached for a year, never revalidated."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


def healthz_route(engine: Engine) -> Route:
    """``GET /healthz`` for the proxy, the load balancer and ``newsletter doctor``.

    200 ``{"status": "ok"}`` when the database answers ``SELECT 1``, else 503; the body never
    says why (no URL, no driver message): the reason goes to the server's log.
    """

    def database_answers() -> bool:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            logger.warning("healthz: the database does not answer: %s", type(exc).__name__)
            return False
        return True

    async def healthz(request: Request) -> Response:
        ok = await run_in_threadpool(database_answers)
        return JSONResponse(
            {"status": "ok" if ok else "unavailable"},
            status_code=200 if ok else 503,
            headers={"Cache-Control": "no-store"},
        )

    return Route("/healthz", healthz, methods=["GET", "HEAD"], name="healthz")


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    mailer: Mailer | None = None,
    clock: Clock | None = None,
    sns_verifier: SnsVerifier | None = None,
    webhook_clock: Clock | None = None,
) -> Starlette:
    """The whole public site; ``clock`` (monotonic seconds) drives the rate limits in tests.

    ``sns_verifier`` checks SES's SNS messages (tests hand in one that trusts their own CA and
    fetches nothing); ``webhook_clock`` (Unix seconds) is what webhook timestamps are held to.
    """
    engine = engine if engine is not None else make_engine(settings.database_url)
    now = clock if clock is not None else time.monotonic
    ctx = WebContext(
        settings=settings,
        engine=engine,
        mailer=mailer if mailer is not None else SmtpMailer(settings),
        pages=page_environment(settings),
        per_address=RateLimiter(*PER_ADDRESS_LIMIT, clock=now),
        per_ip=RateLimiter(*PER_IP_LIMIT, clock=now),
    )
    hits = redirect.HitBuffer(
        engine,
        scanner_window=timedelta(seconds=settings.analytics.scanner_window_seconds),
        retention_days=settings.analytics.retention_days,
    )
    routes: list[BaseRoute] = [
        # first: the redirect is the one hot path, and routes are matched in order
        *redirect.routes(
            settings,
            engine,
            hits,
            not_found=lambda: ctx.page("not_found.html", status_code=404, private=True),
        ),
        *subscribe.routes(ctx),
        *unsubscribe.routes(ctx),
        *join.routes(ctx),
        *archive.routes(settings, engine),
        *webhooks.routes(ctx, sns_verifier=sns_verifier, clock=webhook_clock or time.time),
        healthz_route(engine),
    ]
    # the resized copies first: their names carry a digest of what they were made from, so
    # a cache may keep them for good
    routes.append(
        Mount(
            urls.DERIVED_IMAGES,
            app=ImmutableFiles(directory=settings.derived_images_dir, check_dir=False),
            name="derived_images",
        )
    )
    admin_routes, admin_ctx = admin.routes(settings, engine, clock=now)
    routes += admin_routes
    routes.append(
        Mount(
            urls.IMAGES,
            app=StaticFiles(directory=settings.issues_dir / "images", check_dir=False),
            name="images",
        )
    )

    async def not_found(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        in_admin = request.url.path.startswith(urls.ADMIN)
        if exc.status_code == 404:
            if in_admin:
                return admin_ctx.page("not_found.html", request, status_code=404)
            return ctx.page("not_found.html", status_code=404)
        if in_admin and exc.status_code in (403, 413):
            return admin_ctx.page(
                "error.html", request, status_code=exc.status_code, message=exc.detail
            )
        return Response(exc.detail, status_code=exc.status_code, headers=exc.headers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        flusher = asyncio.create_task(hits.run())
        try:
            yield
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            # what is still in memory is written before the process goes
            await asyncio.to_thread(hits.flush, everything=True)

    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: not_found},
        lifespan=lifespan,
        # the dashboard's headers and session check, for every /admin path
        middleware=[Middleware(admin.AdminGate, context=admin_ctx)],
    )
    app.state.context = ctx
    app.state.hits = hits
    return app
