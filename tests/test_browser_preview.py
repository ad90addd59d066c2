"""The preview as an editor sees it, in headless Chromium against the real server.

Saving files reloads the open page; at 375 px the email never scrolls sideways and every image
fits; screenshots of every sample issue at both widths land in ``test-output/screenshots``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from newsletter.config import Settings, load_settings
from newsletter.web.preview import create_preview_app
from newsletter.web.reload import ReloadHub
from tests.browser import LiveServer, RecordingPage, browser, open_page, page
from tests.conftest import REPO, TEST_SECRET, write_config
from tests.smtpd import SMTPServer

__all__ = ["browser", "page"]  # fixtures used by name below

pytestmark = pytest.mark.browser

SCREENSHOTS = REPO / "test-output" / "screenshots"
# generous: a reload takes about a third of a second, but CI machines can be busy
RELOAD_TIMEOUT = 10_000
OWN_ISSUE = "2026-11-27-browser-test"
OWN_ISSUE_TEXT = """---
title: "Browser week"
date: 2026-11-27
authors: [Ann Editor]
status: draft
hero:
  src: images/hero-river.png
  alt: The river at the weir
  caption: High water at the weir on Tuesday.
headlines:
  - The river is up
  - The bridge is shut
  - The fair is on
---

Intro paragraph with a [link](https://example.org/a).

## The river

The river rose by a metre on Tuesday, and a very long unbroken word follows:
Donaudampfschifffahrtsgesellschaftskapitänswitwenrentenversicherungsanstalt.
"""
BROKEN_TEXT = """---
title: "Unclosed
date: 2026-12-04
---

## Section
"""
# the sample issues shipped in issues/, plus this module's own
SAMPLES = [*sorted(p.stem for p in (REPO / "issues").glob("*.md")), OWN_ISSUE]


@dataclass
class Preview:
    url: str
    project: Path
    settings: Settings
    smtpd: SMTPServer
    hub: ReloadHub

    def settle(self, version: int) -> None:
        """Wait until the server has seen a file change made after ``version``."""
        deadline = time.monotonic() + RELOAD_TIMEOUT / 1000
        while self.hub.version <= version:
            assert time.monotonic() < deadline, "the preview did not notice the change"
            time.sleep(0.02)

    def issue_url(self, name: str) -> str:
        return f"{self.url}/issues/{name}"


@pytest.fixture
def preview(project: Path, tmp_path: Path, smtpd: SMTPServer) -> Iterator[Preview]:
    """The preview of a project with its own templates (so a test may edit them), served."""
    shutil.copytree(REPO / "templates", project / "templates")
    config = write_config(
        project, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", smtp_url=smtpd.url
    )
    config.write_text(config.read_text().replace(str(REPO / "templates"), "templates"))
    (project / "issues" / f"{OWN_ISSUE}.md").write_text(OWN_ISSUE_TEXT, encoding="utf-8")

    def load() -> Settings:
        return load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})

    settings = load()
    app = create_preview_app(settings, reload_settings=load)
    with LiveServer(app) as server:
        yield Preview(server.url, project, settings, smtpd, app.state.preview.hub)


def mark(p: Any) -> None:
    """Tag the current document so a test can tell when it has been replaced by a reload."""
    p.evaluate("() => { window.__notReloaded = true; }")


def wait_for_reload(p: Any) -> None:
    p.wait_for_function("() => window.__notReloaded === undefined", timeout=RELOAD_TIMEOUT)
    p.wait_for_load_state("load")


def test_saving_the_issue_refreshes_the_page_and_keeps_the_scroll_position(
    preview: Preview, page: RecordingPage
) -> None:
    p = page.page
    p.goto(preview.issue_url(OWN_ISSUE), wait_until="load")
    assert p.inner_text("#title") == "Browser week"
    p.evaluate("() => window.scrollTo(0, 700)")
    p.wait_for_function("() => window.scrollY === 700")

    issue = preview.project / "issues" / f"{OWN_ISSUE}.md"
    issue.write_text(OWN_ISSUE_TEXT.replace("Browser week", "Reloaded week"), encoding="utf-8")

    p.wait_for_function(
        "() => document.getElementById('title') && "
        "document.getElementById('title').textContent === 'Reloaded week'",
        timeout=RELOAD_TIMEOUT,
    )
    p.wait_for_function(
        "() => document.readyState === 'complete' && window.scrollY === 700", timeout=RELOAD_TIMEOUT
    )
    # the emails in the iframes were re-rendered too
    frame = p.query_selector("#desktop").content_frame()
    assert "Reloaded week" in frame.inner_text("body")
    assert page.offsite == []


def test_quick_successive_saves_end_on_the_last_one_at_the_same_position(
    preview: Preview, page: RecordingPage
) -> None:
    p = page.page
    p.goto(preview.issue_url(OWN_ISSUE), wait_until="load")
    p.evaluate("() => window.scrollTo(0, 900)")
    p.wait_for_function("() => window.scrollY === 900")
    issue = preview.project / "issues" / f"{OWN_ISSUE}.md"
    for n in range(3):
        issue.write_text(OWN_ISSUE_TEXT.replace("Browser week", f"Save {n}"), encoding="utf-8")
        p.wait_for_timeout(60)  # inside the reload of the previous save
    p.wait_for_function(
        "() => document.getElementById('title') && "
        "document.getElementById('title').textContent === 'Save 2'",
        timeout=RELOAD_TIMEOUT,
    )
    # a reload for a later batch of file events may still follow; the page must settle at
    # the position the editor had, whichever document ends up on screen
    p.wait_for_function(
        "() => document.readyState === 'complete' && window.scrollY === 900", timeout=RELOAD_TIMEOUT
    )
    assert p.inner_text("#title") == "Save 2"


def test_templates_images_and_config_reload_the_page(preview: Preview, page: RecordingPage) -> None:
    p = page.page
    p.goto(preview.issue_url(OWN_ISSUE), wait_until="load")

    mark(p)
    template = preview.project / "templates" / "email" / "issue.mjml.j2"
    template.write_text(template.read_text() + "\n{# edited #}\n")
    wait_for_reload(p)

    mark(p)
    image = preview.project / "issues" / "images" / "hero-river.png"
    image.write_bytes(image.read_bytes())
    wait_for_reload(p)

    mark(p)
    config = preview.project / "newsletter.toml"
    config.write_text(config.read_text().replace('"The Test Weekly"', '"The Renamed Weekly"', 1))
    wait_for_reload(p)
    assert "The Renamed Weekly" in p.inner_text(".bar")
    assert page.offsite == []


def test_index_shows_every_issue_and_a_broken_one_shows_its_errors(
    preview: Preview, page: RecordingPage
) -> None:
    version = preview.hub.version
    (preview.project / "issues" / "2026-12-04-broken.md").write_text(BROKEN_TEXT)
    preview.settle(version)  # so the page below is not reloaded under the test's feet
    p = page.page
    p.goto(preview.url + "/", wait_until="load")
    names = p.eval_on_selector_all("tr[data-issue]", "rows => rows.map(r => r.dataset.issue)")
    assert set(names) == {*SAMPLES, "2026-12-04-broken"}
    assert "fails" in p.inner_text('tr[data-issue="2026-12-04-broken"]')
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    p.screenshot(path=str(SCREENSHOTS / "index-preview.png"))

    p.click('tr[data-issue="2026-12-04-broken"] a')
    p.wait_for_load_state("load")
    problems = p.inner_text("#problems")
    assert "error" in problems
    assert "line" in problems
    assert "Traceback" not in p.content()
    assert p.query_selector("iframe") is None
    p.screenshot(path=str(SCREENSHOTS / "broken-issue-preview.png"))

    # fixing the file turns the page into a preview without a manual reload
    mark(p)
    (preview.project / "issues" / "2026-12-04-broken.md").write_text(
        OWN_ISSUE_TEXT.replace("2026-11-27", "2026-12-04")
    )
    wait_for_reload(p)
    assert "passes" in p.inner_text("#problems")
    assert p.query_selector("#mobile") is not None


def test_send_me_a_test_button(preview: Preview, page: RecordingPage) -> None:
    p = page.page
    p.goto(preview.issue_url(OWN_ISSUE), wait_until="load")
    p.click("#send-test")
    p.wait_for_selector("#flash")
    assert "Sent a test of" in p.inner_text("#flash")
    messages = preview.smtpd.handler.messages
    assert len(messages) == 1
    assert messages[0].message["Subject"] == "[TEST] The Test Weekly: Browser week"


def email_fits(p: Any) -> dict[str, Any]:
    """Horizontal overflow and images that stick out, measured inside the page ``p``."""
    result: dict[str, Any] = p.evaluate(
        """() => {
          const doc = document.documentElement;
          const width = window.innerWidth;
          const images = Array.from(document.images).map(img => ({
            src: img.getAttribute("src"),
            right: img.getBoundingClientRect().right,
            loaded: img.complete && img.naturalWidth > 0,
          }));
          return {scrollWidth: doc.scrollWidth, clientWidth: doc.clientWidth, width, images};
        }"""
    )
    return result


@pytest.mark.parametrize("name", SAMPLES)
def test_each_issue_fits_a_phone_and_is_screenshotted(
    preview: Preview, browser: Any, page: RecordingPage, name: str
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    email_url = preview.issue_url(name) + "/email"

    phone: RecordingPage = open_page(browser, width=375, height=812)
    try:
        phone.page.goto(email_url, wait_until="load")
        fit = email_fits(phone.page)
        assert fit["scrollWidth"] <= fit["clientWidth"], fit
        if name == OWN_ISSUE:
            assert fit["images"], "this module's issue has a hero image"
        for img in fit["images"]:
            assert img["loaded"], img
            assert img["right"] <= fit["width"] + 0.5, img
        phone.page.screenshot(path=str(SCREENSHOTS / f"{name}-mobile.png"), full_page=True)
        assert phone.offsite == []
    finally:
        phone.page.context.close()

    # the preview page itself: desktop and phone renders side by side
    p = page.page
    p.goto(preview.issue_url(name), wait_until="load")
    mobile = p.query_selector("#mobile").content_frame()
    inner = email_fits(mobile)
    assert inner["width"] == 375
    assert inner["scrollWidth"] <= inner["clientWidth"], inner
    desktop = p.query_selector("#desktop").content_frame()
    outer = email_fits(desktop)
    assert outer["scrollWidth"] <= outer["clientWidth"], outer
    # each frame is as tall as its email, so only the preview page itself scrolls
    heights = p.evaluate(
        """() => Array.from(document.querySelectorAll(".frame iframe")).map(
             f => [f.clientHeight, f.contentDocument.documentElement.scrollHeight])"""
    )
    for client_height, scroll_height in heights:
        assert scroll_height <= client_height + 1, heights
    # desktop and phone side by side, as the editor sees them
    box = p.query_selector("#mobile").bounding_box()
    assert box is not None
    assert box["y"] < 300, "the phone render sits beside the desktop one, not below it"
    p.screenshot(path=str(SCREENSHOTS / f"{name}-preview.png"))
    p.query_selector("#desktop").screenshot(path=str(SCREENSHOTS / f"{name}-desktop.png"))
    assert page.offsite == []
    assert (SCREENSHOTS / f"{name}-desktop.png").stat().st_size > 10_000
