"""What a reader sees: the rendered email in headless Chromium on a desktop and a 375 px phone."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from newsletter.config import Settings
from newsletter.issues import load_issue
from newsletter.rendering import Renderer
from tests.browser import LiveServer, browser, open_page  # noqa: F401 (fixture)

pytestmark = pytest.mark.browser


@pytest.fixture
def email_url(settings: Settings) -> Iterator[str]:
    """The sample issue rendered against a local server that also serves its images."""
    pages: dict[str, str] = {}

    async def show(request: Any) -> HTMLResponse:
        return HTMLResponse(pages["html"])

    app = Starlette(
        routes=[
            Route("/email", show),
            Mount("/images", StaticFiles(directory=settings.issues_dir / "images")),
        ]
    )
    with LiveServer(app) as server:
        local = dataclasses.replace(
            settings, publication=dataclasses.replace(settings.publication, base_url=server.url)
        )
        issue = load_issue(local.issues_dir / "2026-11-20-flood-barrier-vote.md", local)
        pages["html"] = Renderer(local).render(issue).html
        yield f"{server.url}/email"


def layout(browser: Any, url: str, width: int) -> dict[str, Any]:  # noqa: F811
    view = open_page(browser, width=width)
    try:
        view.page.goto(url, wait_until="load")
        result: dict[str, Any] = view.page.evaluate(
            """() => ({
                scrollWidth: document.documentElement.scrollWidth,
                images: [...document.images].map(i => ({
                    loaded: i.complete && i.naturalWidth > 0, width: i.getBoundingClientRect().width
                })),
                cards: [...document.querySelectorAll('a.card-title')].map(a => {
                    const box = a.closest('td').getBoundingClientRect();
                    return {top: box.top, bottom: box.bottom, left: box.left};
                }),
                preheader: getComputedStyle(document.querySelector('.preheader')).display,
            })"""
        )
        result["offsite"] = view.offsite
        return result
    finally:
        view.page.context.close()


def test_desktop_shows_cards_side_by_side(browser: Any, email_url: str) -> None:  # noqa: F811
    seen = layout(browser, email_url, 800)
    assert seen["offsite"] == []
    assert all(image["loaded"] for image in seen["images"])
    assert seen["preheader"] == "none"
    first, second = seen["cards"][:2]
    assert first["top"] == pytest.approx(second["top"], abs=2)
    assert second["left"] > first["left"] + 200


def test_phone_stacks_everything_in_375_px(browser: Any, email_url: str) -> None:  # noqa: F811
    seen = layout(browser, email_url, 375)
    assert seen["offsite"] == []
    assert seen["scrollWidth"] <= 375  # nothing forces sideways scrolling
    assert all(image["width"] <= 375 for image in seen["images"])
    first, second = seen["cards"][:2]
    assert second["top"] >= first["bottom"] - 1  # the second card sits under the first
