"""What a reader sees, measured in headless Chromium: cards, the call to action, dark mode.

Every sample issue is rendered with its image derivatives and served with them; screenshots
at 375 and 640 px, light and dark (emulated ``prefers-color-scheme``), land in
``test-output/screenshots/email-<slug>-<width>-<scheme>.png`` for a person to look at.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from newsletter.config import Settings
from newsletter.images import derive_images
from newsletter.issues import load_issue
from newsletter.palette import palette, rgb
from newsletter.rendering import Renderer
from tests.browser import LiveServer, browser  # noqa: F401 (fixture)
from tests.conftest import REPO

pytestmark = pytest.mark.browser
SCREENSHOTS = REPO / "test-output" / "screenshots"
SNOW = "first-snow"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Settings]]:
    """Every sample issue, rendered against a local server that serves its images too."""
    from tests.conftest import TEST_SECRET, write_config

    root = tmp_path_factory.mktemp("project")
    import shutil

    shutil.copytree(REPO / "issues", root / "issues")
    pages: dict[str, str] = {}

    async def show(request: Request) -> HTMLResponse:
        return HTMLResponse(pages[request.path_params["slug"]])

    from newsletter.config import load_settings

    base = load_settings(
        write_config(root, database_url=f"sqlite:///{root / 'db.sqlite'}"),
        environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET},
    )
    derived = root / "var" / "images"
    derived.mkdir(parents=True)
    app = Starlette(
        routes=[
            Route("/email/{slug}", show),
            Mount("/images/_derived", StaticFiles(directory=derived)),
            Mount("/images", StaticFiles(directory=root / "issues" / "images")),
        ]
    )
    with LiveServer(app) as server:
        settings = dataclasses.replace(
            base,
            publication=dataclasses.replace(base.publication, base_url=server.url),
            brand=dataclasses.replace(base.brand, logo_url=f"{server.url}/images/logo.png"),
            derived_images_dir=derived,
        )
        renderer = Renderer(settings)
        for path in sorted(settings.issues_dir.glob("*.md")):
            issue = load_issue(path, settings)
            pages[issue.slug] = renderer.render(issue, derive_images(issue, settings)).html
        yield server.url, settings


def open_email(browser: Any, url: str, *, width: int, scheme: str = "light") -> Any:  # noqa: F811
    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    offsite: list[str] = []
    page.on(
        "request",
        lambda r: None if r.url.startswith(url.split("/email")[0]) else offsite.append(r.url),
    )
    page.goto(url, wait_until="load")
    page.offsite = offsite
    return page


def test_screenshots_light_and_dark(browser: Any, served: tuple[str, Settings]) -> None:  # noqa: F811
    base, settings = served
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    slugs = [p.stem[len("YYYY-MM-DD-") :] for p in sorted(settings.issues_dir.glob("*.md"))]
    for slug in slugs:
        for width in (375, 640):
            for scheme in ("light", "dark"):
                page = open_email(browser, f"{base}/email/{slug}", width=width, scheme=scheme)
                try:
                    assert page.offsite == []
                    seen = page.evaluate(
                        """() => ({
                            scroll: document.documentElement.scrollWidth,
                            broken: [...document.images]
                                .filter(i => !(i.complete && i.naturalWidth)).length,
                        })"""
                    )
                    assert seen["scroll"] <= width, (slug, width, scheme)
                    assert seen["broken"] == 0, (slug, width, scheme)
                    out = SCREENSHOTS / f"email-{slug}-{width}-{scheme}.png"
                    page.screenshot(path=str(out), full_page=True)
                    assert out.stat().st_size > 10_000
                finally:
                    page.context.close()


CARDS = """() => [...document.querySelectorAll('table.cards')].map(t => [...t.rows]
    .map(r => [...r.cells].filter(c => c.classList.contains('card')).map(c => {
        const b = c.getBoundingClientRect();
        return {top: b.top, height: b.height, left: b.left, width: b.width};
    })).filter(row => row.length))"""


def test_cards_share_a_height_and_the_odd_one_keeps_its_width(
    browser: Any,  # noqa: F811
    served: tuple[str, Settings],
) -> None:
    base, _ = served
    page = open_email(browser, f"{base}/email/{SNOW}", width=640)
    try:
        (rows,) = page.evaluate(CARDS)
    finally:
        page.context.close()
    first, second = rows[0]
    assert first["top"] == pytest.approx(second["top"], abs=0.5)
    assert first["height"] == pytest.approx(second["height"], abs=0.5)
    assert second["left"] > first["left"] + first["width"]
    # three cards: the last sits alone, as wide as the others and in the left column
    (odd,) = rows[1]
    assert odd["width"] == pytest.approx(first["width"], abs=1)
    assert odd["left"] == pytest.approx(first["left"], abs=1)
    # the sample's first two teasers differ in length: the heights are equal by layout
    page = open_email(browser, f"{base}/email/flood-barrier-vote", width=640)
    try:
        (rows,) = page.evaluate(CARDS)
    finally:
        page.context.close()
    assert rows[0][0]["height"] == pytest.approx(rows[0][1]["height"], abs=0.5)


def test_phone_stacks_the_cards(browser: Any, served: tuple[str, Settings]) -> None:  # noqa: F811
    base, _ = served
    page = open_email(browser, f"{base}/email/{SNOW}", width=375)
    try:
        (rows,) = page.evaluate(CARDS)
    finally:
        page.context.close()
    cards = [card for row in rows for card in row]
    assert len(cards) == 3
    for above, below in itertools.pairwise(cards):
        assert below["top"] >= above["top"] + above["height"]
        assert below["left"] == pytest.approx(above["left"], abs=1)
    assert all(c["width"] <= 375 - 2 * 20 for c in cards)


def test_call_to_action_at_375(browser: Any, served: tuple[str, Settings]) -> None:  # noqa: F811
    base, _ = served
    page = open_email(browser, f"{base}/email/{SNOW}", width=375)
    try:
        cta = page.evaluate(
            """() => {
                const band = document.querySelector('div.cta');
                const box = e => { const b = e.getBoundingClientRect();
                    return {top: b.top, bottom: b.bottom, left: b.left, right: b.right}; };
                return {
                    heading: band.querySelector('h2').textContent,
                    paragraphs: [...band.querySelectorAll('p.cta-paragraph')].map(p => ({
                        ...box(p), align: getComputedStyle(p.parentElement).textAlign})),
                    buttons: [...band.querySelectorAll('td.button a')].map(a => ({
                        ...box(a), text: a.textContent})),
                };
            }"""
        )
    finally:
        page.context.close()
    assert cta["heading"] == "Keep local news in local hands"
    first, second = cta["paragraphs"]
    assert second["top"] - first["bottom"] >= 8  # real paragraphs, with space between
    assert {p["align"] for p in cta["paragraphs"]} == {"left"}
    main, gift = cta["buttons"]
    assert (main["text"], gift["text"]) == ("Become a member", "Gift a membership")
    assert gift["top"] >= main["bottom"]  # stacked, the main one first
    for button in cta["buttons"]:
        assert button["left"] >= 0
        assert button["right"] <= 375
        assert button["bottom"] - button["top"] >= 40  # a thumb finds it


def test_dark_mode_repaints_with_the_brand(browser: Any, served: tuple[str, Settings]) -> None:  # noqa: F811
    base, settings = served
    dark = palette(settings.brand).dark
    light = palette(settings.brand).light
    seen = {}
    for scheme in ("light", "dark"):
        page = open_email(browser, f"{base}/email/{SNOW}", width=640, scheme=scheme)
        try:
            seen[scheme] = page.evaluate(
                """() => ({
                    paper: getComputedStyle(document.querySelector('.paper')).backgroundColor,
                    title: getComputedStyle(document.querySelector('h1')).color,
                    heading: getComputedStyle(document.querySelector('h2')).color,
                })"""
            )
        finally:
            page.context.close()

    def css(color: str) -> str:
        return "rgb({}, {}, {})".format(*rgb(color))

    assert seen["light"] == {
        "paper": css(light.surface),
        "title": css(settings.brand.text_color),
        "heading": css(light.heading),
    }
    assert seen["dark"] == {
        "paper": css(dark.surface),
        "title": css(dark.text),
        "heading": css(dark.heading),
    }
