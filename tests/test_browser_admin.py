"""The dashboard in headless Chromium: sign in, watch a send progress live, read a chart at
phone width, and a forged form from another page refused."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from newsletter.config import Settings
from newsletter.sending import prepare_issue
from newsletter.states import DeliveryStatus
from newsletter.store.database import make_engine, migrate
from newsletter.store.ledger import SqlLedger
from newsletter.store.schema import deliveries
from newsletter.store.subscribers import add_subscriber, ensure_lists, find_by_email
from newsletter.web.app import create_app
from tests.admin_helpers import EDITOR, PASSWORD, make_editor
from tests.browser import LiveServer, browser, open_page, page  # noqa: F401

pytestmark = pytest.mark.browser
ISSUE = "2026-11-20-flood-barrier-vote.md"


@pytest.fixture
def store(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.database_url)
    migrate(engine)
    make_editor(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def server(settings: Settings, store: Engine) -> Iterator[LiveServer]:
    def app(url: str) -> Starlette:
        here = dataclasses.replace(
            settings, publication=dataclasses.replace(settings.publication, base_url=url)
        )
        return create_app(here, engine=store)

    with LiveServer(app) as live:
        yield live


def sign_in(p: Any, server: LiveServer) -> None:
    p.goto(server.url + "/admin")
    assert "/admin/login" in p.url
    p.fill("input[name=email]", EDITOR)
    p.fill("input[name=password]", PASSWORD)
    p.click("button[type=submit]")
    p.wait_for_url(server.url + "/admin")


def watch_console(p: Any) -> list[str]:
    problems: list[str] = []
    p.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    return problems


def test_sign_in_and_watch_a_send_progress(
    page: Any,  # noqa: F811
    server: LiveServer,
    settings: Settings,
    store: Engine,
    project: Path,
) -> None:
    with store.begin() as conn:
        ids = ensure_lists(conn, settings)
        for i in range(5):
            add_subscriber(conn, f"r{i}@example.org", list_ids=[ids["weekly"]])
    ref, _, _ = prepare_issue(settings, store, project / "issues" / ISSUE)
    p = page.page
    problems = watch_console(p)
    sign_in(p, server)
    row = p.locator(f'tr[data-send="{ref.id}"]')
    assert row.locator('[data-field="done"]').inner_text() == "0"
    assert row.locator('[data-field="recipients"]').inner_text() == "5"

    with store.connect() as conn:
        pending = list(conn.execute(select(deliveries.c.subscriber_id)).scalars())
    # the sender at work: rows become sent while the page is open
    with store.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.subscriber_id.in_(pending[:3]))
            .values(status=DeliveryStatus.SENT.value)
        )
    row.locator('[data-field="done"]', has_text="3").wait_for(timeout=10_000)
    assert row.locator('[data-field="sent"]').inner_text() == "3"
    assert p.locator("progress").first.get_attribute("value") is not None
    with store.begin() as conn:
        conn.execute(update(deliveries).values(status=DeliveryStatus.SENT.value))
    SqlLedger(store).finish_if_done(ref, now=datetime.now(UTC))
    row.locator('[data-field="status"]', has_text="finished").wait_for(timeout=10_000)
    p.locator("#live-note", has_text="All sends are finished.").wait_for(timeout=10_000)
    assert row.locator('[data-field="done"]').inner_text() == "5"
    assert page.offsite == []
    assert not [m for m in problems if "Content Security Policy" in m], problems


def test_read_a_chart_at_phone_width(
    browser: Any,  # noqa: F811
    server: LiveServer,
    settings: Settings,
    store: Engine,
    project: Path,
) -> None:
    with store.begin() as conn:
        ids = ensure_lists(conn, settings)
        add_subscriber(conn, "reader@example.org", list_ids=[ids["weekly"]])
    ref, _, _ = prepare_issue(settings, store, project / "issues" / ISSUE)
    with store.begin() as conn:
        conn.execute(
            update(deliveries).values(status=DeliveryStatus.SENT.value, sent_at=datetime.now(UTC))
        )
    SqlLedger(store).finish_if_done(ref, now=datetime.now(UTC))
    phone = open_page(browser, width=375, height=800)
    try:
        p = phone.page
        problems = watch_console(p)
        sign_in(p, server)
        p.goto(server.url + "/admin/issues/weekly/flood-barrier-vote")
        chart = p.locator("svg.chart-columns")
        chart.wait_for()
        box = chart.bounding_box()
        assert box is not None
        assert box["width"] <= 375
        assert box["width"] > 300
        # the chart says what it shows, to a screen reader and in the table beside it
        assert "Deliveries over time" in (chart.locator("title").text_content() or "")
        label = chart.locator("text").first
        size = label.evaluate("e => e.getBoundingClientRect().height")
        assert size >= 10, f"chart text is {size}px high at 375 px"
        gauges = p.locator("svg.chart-thresholds")
        assert "Complaints" in (gauges.locator("desc").text_content() or "")
        # nothing wider than the screen
        assert p.evaluate("document.documentElement.scrollWidth") <= 375
        assert phone.offsite == []
        assert not [m for m in problems if "Content Security Policy" in m], problems
    finally:
        phone.page.context.close()


def test_a_forged_form_on_another_page_is_refused(
    page: Any,  # noqa: F811
    server: LiveServer,
    settings: Settings,
    store: Engine,
) -> None:
    with store.begin() as conn:
        ids = ensure_lists(conn, settings)
        person = add_subscriber(conn, "victim@example.org", list_ids=[ids["weekly"]])
    p = page.page
    sign_in(p, server)

    async def lure(request: Any) -> HTMLResponse:
        return HTMLResponse(
            f'<form method="post" action="{server.url}/admin/subscribers/{person.uid}/erase">'
            '<input type="hidden" name="confirm" value="yes"><button id="go">Win a prize</button>'
            "</form>"
        )

    with LiveServer(Starlette(routes=[Route("/", lure)])) as evil:
        p.goto(evil.url + "/")
        with p.expect_response(lambda r: "/erase" in r.url) as answer:
            p.click("#go")
        assert answer.value.status == 403
    with store.connect() as conn:
        assert find_by_email(conn, "victim@example.org") is not None
