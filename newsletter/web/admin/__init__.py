"""The editors' dashboard at ``/admin`` (docs/analytics.md): sends, reports, growth, people.

:func:`routes` gives the routes and the context :class:`~newsletter.web.admin.context.AdminGate`
needs; :mod:`newsletter.web.app` mounts both. Accounts come from ``newsletter admin add-user``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from newsletter.config import Settings
from newsletter.web.admin import auth, pages
from newsletter.web.admin.context import STATIC, AdminContext, AdminGate, admin_context

__all__ = ["AdminContext", "AdminGate", "routes"]

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def routes(
    settings: Settings, engine: Engine, *, clock: Callable[[], float]
) -> tuple[list[BaseRoute], AdminContext]:
    ctx = admin_context(settings, engine, clock=clock)
    found: list[BaseRoute] = [
        *auth.routes(ctx),
        *pages.routes(ctx),
        Mount(STATIC, app=StaticFiles(directory=STATIC_DIR), name="admin_static"),
    ]
    return found, ctx
