"""Every URL the project builds resolves, through the real apps, to the route it is meant for."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from starlette.routing import Match

from newsletter import urls
from newsletter.config import Settings
from newsletter.rendering import archive_url, image_url
from newsletter.web.app import create_app
from newsletter.web.preview import create_preview_app
from tests.conftest import REPO

BASE = "https://news.test.example"
TOKEN = "AbC-_0123456789abcdefghij"


def resolve(app: Any, method: str, path: str) -> tuple[str | None, dict[str, Any]]:
    """The name and parameters of the route ``app`` sends ``method path`` to."""
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
    for route in app.routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return route.name, child.get("path_params", {})
    return None, {}


def relative(url: str) -> str:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == BASE, url
    return parts.path


@pytest.fixture
def app(settings: Settings) -> Any:
    # routing needs no database: the engine is created, never connected
    return create_app(settings)


def test_built_urls_reach_their_routes(app: Any, settings: Settings) -> None:
    issue = type("I", (), {"slug": "river-week"})()
    cases = [
        (urls.unsubscribe_url(BASE, TOKEN), "GET", "unsubscribe", {"token": TOKEN}),
        (urls.unsubscribe_url(BASE, TOKEN), "POST", "unsubscribe_post", {"token": TOKEN}),
        (urls.confirm_url(BASE, TOKEN), "GET", "confirm_page", {"token": TOKEN}),
        (urls.confirm_url(BASE, TOKEN), "POST", "confirm", {"token": TOKEN}),
        (urls.subscribe_url(BASE), "GET", "subscribe_form", {}),
        (urls.subscribe_url(BASE), "POST", "subscribe", {}),
        (urls.archive_url(BASE, "river-week"), "GET", "archive_issue", {"slug": "river-week"}),
        (archive_url(issue, settings), "GET", "archive_issue", {"slug": "river-week"}),  # type: ignore[arg-type]
        (
            BASE + urls.archive_issue_path("weekly", "river-week"),
            "GET",
            "archive_list_issue",
            {"list": "weekly", "slug": "river-week"},
        ),
        (urls.absolute(BASE, urls.ARCHIVE), "GET", "archive", {}),
        (urls.absolute(BASE, urls.ARCHIVE_FEED), "GET", "archive_feed", {}),
        (urls.issue_file_url(BASE, "images/hero.png"), "GET", "images", {}),
        (image_url("images/hero.png", settings), "GET", "images", {}),
        (urls.absolute(BASE, urls.HOME), "GET", "home", {}),
    ]
    for url, method, name, params in cases:
        got, found = resolve(app, method, relative(url))
        assert got == name, (url, method)
        assert {k: found[k] for k in params} == params, url
        # and Starlette builds the very same path back from the route's name
        if name != "images":
            assert app.url_path_for(name, **params) == relative(url)


def test_the_mailto_link_carries_the_token() -> None:
    mailto = urls.unsubscribe_mailto("test.example", TOKEN)
    assert mailto == f"mailto:unsubscribe@test.example?subject=unsubscribe%20{TOKEN}"


def test_the_preview_routes_come_from_urls(settings: Settings) -> None:
    preview = create_preview_app(settings, watch_files=False)
    name = "2026-11-20-flood-barrier-vote"
    for template, route in [
        (urls.PREVIEW_ISSUE, "issue"),
        (urls.PREVIEW_EMAIL, "issue_email"),
        (urls.PREVIEW_EML, "issue_eml"),
    ]:
        path = urls.path(template, name=name)
        assert resolve(preview, "GET", path)[0] == route
        assert preview.url_path_for(route, name=name) == path
    assert resolve(preview, "POST", urls.path(urls.PREVIEW_SEND_TEST, name=name))[0] == "send_test"
    assert resolve(preview, "GET", urls.PREVIEW_RELOAD)[0] == "reload"
    assert resolve(preview, "GET", "/images/hero-river.png")[0] == "image"


# href="/..." and action="/..." written into the templates (a Jinja expression counts as one
# path segment); each must reach a route of the app that renders them
_LINK = re.compile(r'(?:href|action|src)="(/[^"]*)"')
_EXPR = re.compile(r"\{\{.*?\}\}")


def template_paths(folder: str) -> list[tuple[str, str, str]]:
    found = []
    for file in sorted((REPO / "templates" / folder).glob("*.html")):
        text = file.read_text(encoding="utf-8")
        for match in _LINK.finditer(text):
            method = "POST" if text[: match.start()].rstrip().endswith("action=") else "GET"
            if 'method="post"' in text[max(0, match.start() - 40) : match.start()]:
                method = "POST"
            path = _EXPR.sub("x", match.group(1)).split("?", 1)[0]
            found.append((file.name, method, path))
    return found


@pytest.mark.parametrize("folder", ["web", "archive"])
def test_paths_written_in_the_site_templates_resolve(app: Any, folder: str) -> None:
    paths = template_paths(folder)
    assert paths
    for file, method, path in paths:
        assert resolve(app, method, path)[0] is not None, (file, method, path)


def test_paths_written_in_the_preview_templates_resolve(settings: Settings) -> None:
    preview = create_preview_app(settings, watch_files=False)
    paths = template_paths("preview")
    assert paths
    for file, method, path in paths:
        assert resolve(preview, method, path)[0] is not None, (file, method, path)


def test_relative_paths_stay_inside_the_site() -> None:
    assert urls.issue_file_url(BASE, "images/../images/a.png") == f"{BASE}/images/a.png"
    assert urls.issue_file_url(BASE, "https://cdn.example/a.png") == "https://cdn.example/a.png"
    assert urls.path(urls.ARCHIVE_ISSUE, slug="a b/c") == "/archive/a%20b%2Fc"
