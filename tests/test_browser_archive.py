"""The public archive in headless Chromium: the list and each sent issue fit a phone."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from newsletter.config import Settings
from newsletter.issues import load_issue
from newsletter.rendering import Renderer
from newsletter.states import SendStatus
from newsletter.store import schema
from newsletter.store.database import make_engine, migrate
from newsletter.web.app import create_app
from tests.browser import LiveServer, RecordingPage, browser, open_page
from tests.conftest import REPO

__all__ = ["browser"]

pytestmark = pytest.mark.browser

SCREENSHOTS = REPO / "test-output" / "screenshots"
SAMPLES = sorted((REPO / "issues").glob("*.md"))


@pytest.fixture
def archive_url(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """The public app, with every sample issue sent, serving on loopback."""
    engine: Engine = make_engine(f"sqlite:///{tmp_path / 'archive.db'}")
    migrate(engine)

    def app(url: str) -> Any:
        # the public base URL is this server, so the emails' images load from it
        local = dataclasses.replace(
            settings, publication=dataclasses.replace(settings.publication, base_url=url)
        )
        renderer = Renderer(local)
        with engine.begin() as conn:
            list_id = conn.execute(
                insert(schema.lists).values(
                    slug="weekly", name="The Test Weekly", created_at=datetime.now(UTC)
                )
            ).inserted_primary_key[0]
            for path in SAMPLES:
                issue = load_issue(path, local)
                rendered = renderer.render(issue)
                when = datetime(issue.date.year, issue.date.month, issue.date.day, tzinfo=UTC)
                conn.execute(
                    insert(schema.issues).values(
                        slug=issue.slug,
                        list_id=list_id,
                        title=issue.title,
                        subject=rendered.subject,
                        issue_date=when,
                        status=SendStatus.FINISHED.value,
                        html=rendered.html,
                        text=rendered.text,
                        created_at=when,
                        finished_at=when,
                        authors=list(issue.authors),
                        preheader=rendered.preheader,
                    )
                )
        return create_app(local, engine=engine)

    with LiveServer(app) as server:
        yield server.url
    engine.dispose()


def overflow(p: Any) -> dict[str, Any]:
    result: dict[str, Any] = p.evaluate(
        """() => ({
          scrollWidth: document.documentElement.scrollWidth,
          clientWidth: document.documentElement.clientWidth,
          width: window.innerWidth,
          images: Array.from(document.images).map(img => ({
            src: img.getAttribute("src"),
            right: img.getBoundingClientRect().right,
            loaded: img.complete && img.naturalWidth > 0,
          })),
          unsubscribe: Array.from(document.links).filter(
            a => /unsubscribe|%%/i.test(a.getAttribute("href") || "")).length,
        })"""
    )
    return result


@pytest.mark.skipif(not SAMPLES, reason="no sample issues in issues/")
def test_archive_and_its_issues_fit_a_phone(archive_url: str, browser: Any) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    phone: RecordingPage = open_page(browser, width=375, height=812)
    p = phone.page
    try:
        p.goto(archive_url + "/archive", wait_until="load")
        titles = p.eval_on_selector_all(".issues h2 a", "links => links.map(a => a.textContent)")
        assert len(titles) == len(SAMPLES)
        fit = overflow(p)
        assert fit["scrollWidth"] <= fit["clientWidth"], fit
        p.screenshot(path=str(SCREENSHOTS / "archive-index-mobile.png"), full_page=True)

        hrefs = p.eval_on_selector_all(".issues h2 a", "links => links.map(a => a.href)")
        for href in hrefs:
            p.goto(href, wait_until="load")
            fit = overflow(p)
            assert fit["scrollWidth"] <= fit["clientWidth"], (href, fit)
            assert fit["unsubscribe"] == 0, href
            for img in fit["images"]:
                assert img["loaded"], (href, img)
                assert img["right"] <= fit["width"] + 0.5, (href, img)
            # the bar back to the archive works
            assert p.locator("a[href='/archive']").count() >= 1
        p.screenshot(path=str(SCREENSHOTS / "archive-issue-mobile.png"), full_page=True)
        assert phone.offsite == []
    finally:
        p.context.close()
