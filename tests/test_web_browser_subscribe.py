"""Subscribe, confirm and unsubscribe as a person does it: headless Chromium, real SMTP."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from newsletter.config import Settings, load_settings
from newsletter.states import SubscriptionStatus
from newsletter.store.database import make_engine, migrate
from newsletter.store.subscribers import find_by_email, list_ids
from newsletter.tokens import TokenPurpose, make_token
from newsletter.web.app import create_app
from tests.browser import LiveServer, RecordingPage, browser, open_page
from tests.conftest import REPO, TEST_SECRET, write_config
from tests.smtpd import SMTPServer

__all__ = ["browser"]

pytestmark = pytest.mark.browser

SCREENSHOTS = REPO / "test-output" / "screenshots"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'web.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def site(project: Path, store: Engine, smtpd: SMTPServer, tmp_path: Path) -> Iterator[str]:
    path = write_config(
        project, database_url=f"sqlite:///{tmp_path / 'web.db'}", smtp_url=smtpd.url
    )
    settings: Settings = load_settings(path, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})

    def app(url: str) -> Any:
        local = dataclasses.replace(
            settings,
            publication=dataclasses.replace(settings.publication, base_url=url),
            brand=dataclasses.replace(settings.brand, logo_url=None),
        )
        return create_app(local, engine=store)

    with LiveServer(app) as server:
        yield server.url


def wait_for_mail(smtpd: SMTPServer, count: int) -> None:
    # the confirmation goes out after the response, so it may trail the page by a moment
    deadline = time.monotonic() + 10
    while len(smtpd.handler.messages) < count:
        assert time.monotonic() < deadline, "no confirmation email arrived"
        time.sleep(0.05)


def test_subscribe_confirm_unsubscribe_in_a_browser(
    browser: Any, site: str, smtpd: SMTPServer, store: Engine
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    view = open_page(browser, width=375, height=740)  # a phone
    page = view.page
    try:
        page.goto(f"{site}/subscribe")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, "the form must fit a phone without sideways scrolling"
        page.fill("#email", "Phone.Reader@Example.org")
        page.fill("#name", "Phone Reader")
        page.check("input[value=business]")
        page.screenshot(path=str(SCREENSHOTS / "subscribe-phone.png"), full_page=True)
        page.click("button[type=submit]")
        assert page.locator("h1").inner_text() == "Check your inbox"

        wait_for_mail(smtpd, 1)
        text = smtpd.handler.messages[0].message.get_body(preferencelist=("plain",))
        assert text is not None
        link = re.search(r"http://127\.0\.0\.1:\d+/confirm/\S+", text.get_content())
        assert link is not None
        page.goto(link.group(0))
        assert page.locator("h1").inner_text() == "Confirm your subscription"
        page.get_by_role("button", name="Confirm my subscription").click()
        assert page.locator("h1").inner_text() == "You're subscribed"
        assert "Millbrook" not in page.content()  # the test publication, not the sample

        with store.begin() as conn:
            reader = find_by_email(conn, "phone.reader@example.org")
            weekly = list_ids(conn)["weekly"]
        assert reader is not None
        assert {s.status for s in reader.subscriptions} == {SubscriptionStatus.CONFIRMED}

        token = make_token(TEST_SECRET.encode(), TokenPurpose.UNSUBSCRIBE, reader.uid, weekly)
        page.goto(f"{site}/unsubscribe/{token}")
        page.screenshot(path=str(SCREENSHOTS / "unsubscribe-phone.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        page.get_by_role("button", name="Unsubscribe", exact=True).click()
        assert page.locator("h1").inner_text() == "You're unsubscribed"
        assert "Business Brief" in page.content()  # still on the other list
    finally:
        page.context.close()
    assert view.offsite == []
    with store.begin() as conn:
        after = find_by_email(conn, "phone.reader@example.org")
    assert after is not None
    assert {s.list_slug: s.status for s in after.subscriptions} == {
        "weekly": SubscriptionStatus.UNSUBSCRIBED,
        "business": SubscriptionStatus.CONFIRMED,
    }


def test_honeypot_is_invisible_and_left_empty(browser: Any, site: str, smtpd: SMTPServer) -> None:
    view: RecordingPage = open_page(browser, width=1024)
    page = view.page
    try:
        page.goto(f"{site}/")
        assert not page.locator("#website").is_visible() or page.evaluate(
            "document.getElementById('website').getBoundingClientRect().right < 0"
        )
        page.fill("#email", "desk@example.org")
        page.click("button[type=submit]")
        assert page.locator("h1").inner_text() == "Check your inbox"
    finally:
        page.context.close()
    wait_for_mail(smtpd, 1)
    assert smtpd.handler.messages[0].rcpt_tos == ["desk@example.org"]
