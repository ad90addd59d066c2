"""The editors' preview (``newsletter preview``): every issue as subscribers will see it, live.

A local Starlette app, separate from the public one: an index of ``issues/`` with each file's
date, status and ``check`` verdict, and per issue the email at desktop width and at 375 px side
by side, the plain text, the headers and the raw ``.eml``, with every ``check`` problem beside
it. Saving an issue, a template, an image or ``newsletter.toml`` reloads the open page
(:mod:`newsletter.web.reload`). A broken issue shows its problems, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import re
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from jinja2 import Environment
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from newsletter import urls
from newsletter.checks import inspect_issue
from newsletter.config import Settings
from newsletter.diagnostics import Problem, Severity
from newsletter.emails import PREVIEW_TOKEN, preview_copy, test_copy
from newsletter.errors import NewsletterError
from newsletter.images import DERIVED_URL_PATH, derive_images
from newsletter.model import (
    JOIN_URL_PLACEHOLDER,
    UNSUBSCRIBE_URL_PLACEHOLDER,
    Issue,
    RenderedIssue,
)
from newsletter.rendering import Renderer
from newsletter.templating import Templates, environment
from newsletter.transport import send_single
from newsletter.urls import unsubscribe_url
from newsletter.web.reload import ReloadHub, events_endpoint, reload_script, watch
from newsletter.web.security import SecurityHeaders

log = logging.getLogger(__name__)

DEFAULT_PORT = 8001
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


def allowed_hosts_for(bind: str) -> tuple[str, ...]:
    """The ``Host`` names to answer when listening on ``bind``; ``("*",)`` beyond loopback.

    Any loopback interface (``::1``, ``127.0.0.2``) keeps the DNS-rebinding guard; only an
    interface others can reach, chosen on purpose, takes names we cannot know.
    """
    if bind == "localhost":
        return LOOPBACK_HOSTS
    try:
        ip = ipaddress.ip_address(bind.removeprefix("[").removesuffix("]"))
    except ValueError:
        return ("*",)
    if not ip.is_loopback:
        return ("*",)
    literal = f"[{ip}]" if ip.version == 6 else str(ip)
    return tuple(dict.fromkeys((*LOOPBACK_HOSTS, literal)))


DESKTOP_WIDTH = 640
MOBILE_WIDTH = 375
# the editor's own pages, on loopback: what still makes sense without a CSP
PREVIEW_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DATE_PREFIX = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")


@dataclass(frozen=True)
class IssuePreview:
    """One issue file as the preview shows it; ``rendered`` is None when it cannot render."""

    name: str
    path: Path
    problems: tuple[Problem, ...]
    issue: Issue | None = None
    rendered: RenderedIssue | None = None
    message: EmailMessage | None = None
    # why rendering stopped, when that is not already one of the problems
    failure: str | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity is Severity.WARNING]

    @property
    def passes(self) -> bool:
        return not self.errors and self.failure is None

    @property
    def date(self) -> date | None:
        if self.issue is not None:
            return self.issue.date
        match = _DATE_PREFIX.match(self.name)
        if match is None:
            return None
        try:
            return date(*map(int, match.groups()))
        except ValueError:
            return None

    @property
    def title(self) -> str:
        return self.issue.title if self.issue is not None else self.name

    @property
    def status(self) -> str:
        return self.issue.status.value if self.issue is not None else "unreadable"


def display_html(html: str, settings: Settings) -> str:
    """The email HTML as the preview serves it: images from the local ``issues/images``.

    The sent email points at ``{base_url}/images/...``, which is not up yet while an issue is
    being written; the preview serves the same files itself. The unsubscribe placeholder gets
    a stand-in link so the footer looks as it will.
    """
    public_images = urls.absolute(settings.publication.base_url, urls.IMAGES + "/")
    html = html.replace(public_images, urls.IMAGES + "/")
    # a join link looks as it will, and leads nowhere: the stand-in token is no token
    html = JOIN_URL_PLACEHOLDER.sub(
        urls.join_url(settings.publication.base_url, PREVIEW_TOKEN), html
    )
    return html.replace(
        UNSUBSCRIBE_URL_PLACEHOLDER, unsubscribe_url(settings.publication.base_url, PREVIEW_TOKEN)
    )


def preview_recipient(settings: Settings) -> str:
    return settings.publication.editor_email or "reader@example.com"


class PreviewRenderer(Renderer):
    """A renderer that remembers its last HTML.

    ``inspect_issue`` renders an issue to measure its size and the preview renders the same
    issue right after; the second MJML and inlining pass would only repeat the first. The
    context is a function of the issue and the settings, so an equal issue gives equal HTML.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._last: tuple[Issue, object, str] | None = None

    def render_html(self, issue: Issue, context: dict[str, Any] | None = None) -> str:
        # the images are part of the key: a replaced picture gets a new derivative name
        images = context.get("images") if context is not None else None
        last = self._last
        if last is not None and last[0] == issue and last[1] == images:
            return last[2]
        html = super().render_html(issue, context)
        self._last = (issue, images, html)
        return html


class PreviewState:
    """Settings, renderer and cached previews; swapped or dropped when watched files change.

    Renders run in worker threads (they are CPU-bound); the lock keeps the page and its two
    iframes, which ask at the same moment, from rendering the same issue three times.
    """

    def __init__(self, settings: Settings, reload_settings: Callable[[], Settings] | None) -> None:
        self.settings = settings
        self.reload_settings = reload_settings
        self.config_error: str | None = None
        self.generation = 0
        self._renderer: PreviewRenderer | None = None
        self._pages: Environment | None = None
        self._cache: dict[Path, tuple[tuple[int, int, int], IssuePreview]] = {}
        self._lock = threading.Lock()

    @property
    def renderer(self) -> PreviewRenderer:
        if self._renderer is None:
            self._renderer = PreviewRenderer(self.settings)
        return self._renderer

    @property
    def pages(self) -> Environment:
        if self._pages is None:
            self._pages = environment(
                self.settings,
                Templates.PREVIEW,
                globals={"desktop_width": DESKTOP_WIDTH, "mobile_width": MOBILE_WIDTH},
            )
        return self._pages

    @property
    def images_dir(self) -> Path:
        return self.settings.issues_dir / "images"

    def files_changed(self, paths: set[Path]) -> None:
        """Forget what the changed files invalidate; reload settings if the config changed."""
        with self._lock:
            self.generation += 1
            self._cache.clear()
            source = self.settings.source.resolve() if self.settings.source else None
            templates = self.settings.templates_dir.resolve()
            if source is not None and source in paths and self.reload_settings is not None:
                try:
                    self.settings = self.reload_settings()
                    self.config_error = None
                except NewsletterError as exc:
                    # keep previewing with the last good settings, and say why on every page
                    self.config_error = str(exc)
                self._renderer = None
                self._pages = None
            elif any(p.is_relative_to(templates) for p in paths):
                self._renderer = None
                self._pages = None

    def issue_paths(self) -> dict[str, Path]:
        """Issue files by URL name (the file name without ``.md``), newest name first."""
        directory = self.settings.issues_dir
        if not directory.is_dir():
            return {}
        # not only regular files: a pipe or a device named *.md is listed with its error
        found = {
            p.stem: p
            for p in directory.glob("*.md")
            if _NAME.match(p.stem) and not p.name.startswith(".") and not p.is_dir()
        }
        return dict(sorted(found.items(), reverse=True))

    def preview(self, name: str, path: Path) -> IssuePreview:
        try:
            stat = path.stat()
            key = (stat.st_mtime_ns, stat.st_size, self.generation)
        except OSError:
            key = (0, 0, self.generation)
        with self._lock:
            cached = self._cache.get(path)
            if cached is not None and cached[0] == key:
                return cached[1]
            try:
                result = self._build(name, path)
            except Exception as exc:
                # one hostile file must not take the index (and every other issue) down with it
                log.exception("previewing %s failed", path)
                problem = Problem(path, 1, Severity.ERROR, f"cannot preview: {_describe(exc)}")
                result = IssuePreview(name, path, (problem,))
            self._cache[path] = (key, result)
            return result

    def _build(self, name: str, path: Path) -> IssuePreview:
        settings = self.settings
        renderer: Renderer | None = None
        with contextlib.suppress(NewsletterError):
            # a template that does not compile shows up as a problem from inspect_issue
            renderer = self.renderer
        # the file is read and parsed once: what is rendered is what was checked
        inspection = inspect_issue(path, settings, renderer=renderer)
        problems, issue = inspection.problems, inspection.issue
        if inspection.errors or issue is None:
            return IssuePreview(name, path, problems, issue=issue)
        try:
            rendered = self.renderer.render(issue, derive_images(issue, settings))
            message = preview_copy(rendered, settings, to=preview_recipient(settings))
        except NewsletterError as exc:
            return IssuePreview(name, path, problems, failure=str(exc))
        except Exception as exc:
            # a bug in a template or the renderer: the editor sees one line, the console more
            log.exception("rendering %s failed", path)
            return IssuePreview(name, path, problems, failure=f"rendering failed: {_describe(exc)}")
        return IssuePreview(name, path, problems, issue=issue, rendered=rendered, message=message)

    def previews(self) -> list[IssuePreview]:
        return [self.preview(name, path) for name, path in self.issue_paths().items()]


@dataclass
class PreviewApp:
    """What the handlers share; one per running preview."""

    state: PreviewState
    hub: ReloadHub
    # guards the "send me a test" form against cross-site posts from other pages in the browser
    form_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    flashes: dict[str, tuple[str, str]] = field(default_factory=dict)

    def page(self, template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        html = self.state.pages.get_template(f"preview/{template}").render(
            nonce=nonce,
            reload_script=reload_script(self.hub),
            config_error=self.state.config_error,
            **context,
        )
        csp = (
            f"default-src 'self'; script-src 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; frame-src 'self'; connect-src 'self'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'self'"
        )
        return HTMLResponse(
            _encode(html),
            status_code=status_code,
            headers={
                "Content-Security-Policy": csp,
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    def flash(self, kind: str, text: str) -> str:
        key = secrets.token_urlsafe(8)
        # a handful is plenty for one editor; old ones are dropped
        while len(self.flashes) >= 20:
            self.flashes.pop(next(iter(self.flashes)))
        self.flashes[key] = (kind, text)
        return key

    def find(self, name: str) -> Path | None:
        if not _NAME.match(name):
            return None
        return self.state.issue_paths().get(name)


EMAIL_CSP = (
    "default-src 'none'; img-src 'self' data: http: https:; style-src 'unsafe-inline'; "
    "font-src 'self' data:; base-uri 'none'; form-action 'none'"
)


async def index(request: Request) -> Response:
    app: PreviewApp = request.app.state.preview
    previews = await run_in_threadpool(app.state.previews)
    return app.page(
        "index.html",
        previews=previews,
        issues_dir=app.state.settings.issues_dir,
    )


async def issue_page(request: Request) -> Response:
    app: PreviewApp = request.app.state.preview
    name = request.path_params["name"]
    path = app.find(name)
    if path is None:
        return app.page("missing.html", status_code=404, name=name)
    preview = await run_in_threadpool(app.state.preview, name, path)
    flash = app.flashes.pop(request.query_params.get("flash", ""), None)
    message = preview.message
    eml = ""
    headers: list[tuple[str, str]] = []
    if message is not None:
        headers = [(k, str(v)) for k, v in message.items()]
        eml = message.as_bytes().decode("utf-8", errors="replace")
    return app.page(
        "issue.html",
        preview=preview,
        headers=headers,
        eml=eml,
        flash=flash,
        form_token=app.form_token,
        editor_email=app.state.settings.publication.editor_email,
        version=app.hub.tag,
    )


async def issue_email(request: Request) -> Response:
    """The email HTML alone, for the desktop and mobile iframes (and a direct look)."""
    app: PreviewApp = request.app.state.preview
    path = app.find(request.path_params["name"])
    if path is None:
        return HTMLResponse("<p>No such issue.</p>", status_code=404)
    preview = await run_in_threadpool(app.state.preview, request.path_params["name"], path)
    headers = {"Content-Security-Policy": EMAIL_CSP, "Cache-Control": "no-store"}
    if preview.rendered is None:
        return HTMLResponse(
            '<p style="font-family:sans-serif;color:#900">This issue does not render yet; '
            "see the problems listed beside it.</p>",
            headers=headers,
        )
    html = display_html(preview.rendered.html, app.state.settings)
    return HTMLResponse(_encode(html), headers=headers)


async def issue_eml(request: Request) -> Response:
    app: PreviewApp = request.app.state.preview
    name = request.path_params["name"]
    path = app.find(name)
    if path is None:
        return Response("no such issue\n", status_code=404, media_type="text/plain")
    preview = await run_in_threadpool(app.state.preview, name, path)
    if preview.message is None:
        return Response(
            "this issue does not render yet\n", status_code=409, media_type="text/plain"
        )
    return Response(
        preview.message.as_bytes(),
        media_type="message/rfc822",
        headers={"Content-Disposition": f'attachment; filename="{name}.eml"'},
    )


async def send_test(request: Request) -> Response:
    """Send the current render, marked as a test, to ``publication.editor_email``."""
    app: PreviewApp = request.app.state.preview
    name = request.path_params["name"]
    path = app.find(name)
    if path is None:
        return app.page("missing.html", status_code=404, name=name)
    form = await request.form()
    token = form.get("form_token")
    if not isinstance(token, str) or not hmac.compare_digest(token, app.form_token):
        return Response("stale or forged form; reload the page\n", status_code=403)
    settings = app.state.settings
    preview = await run_in_threadpool(app.state.preview, name, path)
    recipient = settings.publication.editor_email
    if recipient is None:
        kind, text = "error", "Set publication.editor_email in newsletter.toml to send tests."
    elif preview.rendered is None:
        kind, text = "error", "This issue has errors; fix them before sending a test."
    else:
        try:
            mailing_list = settings.mailing_list(preview.rendered.issue.list)
            message = test_copy(preview.rendered, settings, mailing_list, to=recipient)
            await send_single(settings, message)
        except NewsletterError as exc:
            kind, text = "error", f"The test was not sent: {exc}"
        else:
            kind, text = (
                "ok",
                f"Sent a test of \u201c{preview.rendered.subject}\u201d to {recipient}.",
            )
    key = app.flash(kind, text)
    page = request.app.url_path_for("issue", name=name)
    return RedirectResponse(f"{page}?flash={key}", status_code=303)


async def image(request: Request) -> Response:
    """Files from ``issues/images`` and their derivatives; nothing outside is reachable."""
    app: PreviewApp = request.app.state.preview
    path = request.path_params["path"]
    derived = DERIVED_URL_PATH.removeprefix("images/") + "/"
    if path.startswith(derived):
        base = app.state.settings.derived_images_dir.resolve()
        path = path.removeprefix(derived)
    else:
        base = app.state.images_dir.resolve()
    try:
        target = (base / path).resolve()
        found = target.is_relative_to(base) and target.is_file()
    except (OSError, ValueError):  # a NUL in the path, a name too long for the file system
        found = False
    if not found:
        return Response("not found\n", status_code=404, media_type="text/plain")
    # revalidate every time: an image the editor just replaced must show on the next reload
    return FileResponse(target, headers={"Cache-Control": "no-cache"})


def _encode(html: str) -> bytes:
    """UTF-8 for the browser; a lone surrogate that got this far becomes ``?``, not a 500."""
    return html.encode("utf-8", errors="replace")


def _describe(exc: Exception) -> str:
    # repr-like escapes keep an odd character in the message from breaking the page again
    text = str(exc).encode("utf-8", errors="backslashreplace").decode("utf-8")
    return f"{type(exc).__name__}: {text}"


def create_preview_app(
    settings: Settings,
    *,
    reload_settings: Callable[[], Settings] | None = None,
    watch_files: bool = True,
    allowed_hosts: Sequence[str] = LOOPBACK_HOSTS,
) -> Starlette:
    """The preview app. ``reload_settings`` re-reads ``newsletter.toml`` when it changes.

    Requests naming any other ``Host`` are refused: a web page the editor has open elsewhere
    could otherwise point a host name of its own at 127.0.0.1 (DNS rebinding) and read the
    unsent issues or send tests.
    """
    state = PreviewState(settings, reload_settings)
    hub = ReloadHub()
    preview = PreviewApp(state, hub)

    async def on_change(paths: set[Path]) -> None:
        await run_in_threadpool(state.files_changed, paths)
        hub.bump()

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task: asyncio.Task[None] | None = None
        if watch_files:
            dirs = [settings.issues_dir, settings.templates_dir]
            files = [settings.source] if settings.source is not None else []
            task = asyncio.create_task(watch(dirs, files, on_change, stop_event=stop))
        try:
            yield
        finally:
            hub.close()
            stop.set()
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, 5)

    app = Starlette(
        routes=[
            Route(urls.PREVIEW_INDEX, index, name="index"),
            Route(urls.PREVIEW_RELOAD, events_endpoint(hub), name="reload"),
            Route(urls.PREVIEW_ISSUE, issue_page, name="issue"),
            Route(urls.PREVIEW_EMAIL, issue_email, name="issue_email"),
            Route(urls.PREVIEW_EML, issue_eml, name="issue_eml"),
            Route(urls.PREVIEW_SEND_TEST, send_test, methods=["POST"], name="send_test"),
            Route(urls.PREVIEW_IMAGE, image, name="image"),
        ],
        lifespan=lifespan,
        middleware=[
            Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)),
            # no CSP: the live-reload script and the email's own styles; SAMEORIGIN, since the
            # page frames its own /issues/<name>/email
            Middleware(SecurityHeaders, headers=PREVIEW_HEADERS),
        ],
    )
    app.state.preview = preview
    return app
