"""The dashboard's pages through the real app: a real send's report with its charts, growth,
the live stream, the two-step actions on a person, and the admin CLI (both databases)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from newsletter import charts
from newsletter.config import Settings, load_settings
from newsletter.delivery import Policy
from newsletter.sending import run_send
from newsletter.states import SubscriptionStatus, SuppressionReason
from newsletter.store.accounts import find_editor
from newsletter.store.subscribers import add_subscriber, ensure_lists, find_by_email
from newsletter.store.subscribers import suppression_reason as reason_of
from newsletter.web.app import create_app
from tests.admin_helpers import PASSWORD, csrf_of, make_editor, sign_in
from tests.conftest import TEST_SECRET, run_cli, write_config
from tests.smtpd import SMTPServer

ISSUE = "2026-11-20-flood-barrier-vote.md"
SVG = "{http://www.w3.org/2000/svg}"


# --- charts (pure) ----------------------------------------------------------------------------


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed XML, or this raises


def test_bars_escape_labels_and_scale_to_the_largest() -> None:
    svg = charts.bars(
        [("<script>alert(1)</script> & more", 40, 10), ("Second", 10, 0)], title="Clicks <b>"
    )
    root = parse(svg)
    assert root.get("role") == "img"
    assert "<script>" not in svg
    texts = [t.text for t in root.iter(SVG + "text")]
    assert "<script>alert(1)</script> & more" in texts
    widths = [float(r.get("width", 0)) for r in root.iter(SVG + "rect")]
    # 40 + 10 apart fill the span; 10 is a fifth of it
    assert widths[0] + widths[1] == pytest.approx(300)
    assert widths[2] == pytest.approx(60)
    assert "Second: 10 clicks" in (root.find(SVG + "desc").text or "")  # type: ignore[union-attr]
    assert "style=" not in svg


def test_columns_and_weeks_and_thresholds_are_well_formed_with_and_without_data() -> None:
    for svg in (
        charts.columns([], title="x"),
        charts.columns([("11:00", 5), ("11:01", 0), ("11:02", 12)], title="Deliveries"),
        charts.weeks([], title="w", losses=("left",)),
        charts.weeks(
            [("1 Nov", 4, [1, 2, 0]), ("8 Nov", 0, [0, 0, 0])], title="w", losses=("a", "b", "c")
        ),
        charts.thresholds([charts.Gauge("Complaints", None, 0.001, 0.003)], title="t"),
    ):
        root = parse(svg)
        assert root.get("viewBox", "").startswith("0 0 360 ")
        assert root.find(SVG + "title") is not None
        assert "style=" not in svg


def test_thresholds_say_the_level_in_words() -> None:
    svg = charts.thresholds(
        [
            charts.Gauge("Complaints", 0.004, 0.001, 0.003),
            charts.Gauge("Hard bounces", 0.01, 0.02),
        ],
        title="Health",
    )
    desc = parse(svg).find(SVG + "desc")
    assert desc is not None
    assert "Complaints 0.40 % (alarm" in (desc.text or "")
    assert "Hard bounces 1.00 % (fine" in (desc.text or "")


# --- pages --------------------------------------------------------------------------------------


@pytest.fixture
def tracked(project: Path, database_url: str, smtpd: SMTPServer) -> Settings:
    path = write_config(project, database_url=database_url, smtp_url=smtpd.url)
    return load_settings(
        path, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET, "NEWSLETTER_ANALYTICS_CLICKS": "1"}
    )


@pytest.fixture
def admin(tracked: Settings, engine: Engine) -> TestClient:
    make_editor(engine)
    client = TestClient(
        create_app(tracked, engine=engine),
        base_url="https://news.test.example",
        follow_redirects=False,
    )
    client.__enter__()
    assert sign_in(client).status_code == 303  # type: ignore[attr-defined]
    yield client  # type: ignore[misc]
    client.__exit__(None, None, None)


def test_issues_report_and_growth_pages_after_a_real_send(
    admin: TestClient, tracked: Settings, engine: Engine, smtpd: SMTPServer, project: Path
) -> None:
    with engine.begin() as conn:
        ids = ensure_lists(conn, tracked)
        for i in range(4):
            add_subscriber(conn, f"r{i}@example.org", list_ids=[ids["weekly"]])
    smtpd.handler.faults.rcpt["r0@example.org"] = ["550 5.1.1 no such user"]
    run_send(tracked, engine, project / "issues" / ISSUE, policy=Policy(flush_interval=0.01))
    listing = admin.get("/admin")
    assert listing.status_code == 200
    assert 'href="/admin/issues/weekly/flood-barrier-vote"' in listing.text
    assert '<progress max="4" value="4"' in listing.text
    # a finished send: nothing live, no stream advertised
    assert "data-events" not in listing.text

    page = admin.get("/admin/issues/weekly/flood-barrier-vote")
    assert page.status_code == 200
    html = page.text
    assert html.count("<svg ") == 3
    assert "Deliveries over time" in html
    assert "Hard bounces" in html
    # one hard bounce in four attempted copies: over the 2 % line
    assert 'class="level-warn"' in html
    assert "warning: 2 % or more" in html
    assert "Clicks per link" in html
    assert "How a demountable barrier works" in html or "millbrook.example" in html
    for svg in re.findall(r"<svg .*?</svg>", html, re.DOTALL):
        parse(svg)
    assert admin.get("/admin/issues/weekly/no-such-issue").status_code == 404

    growth = admin.get("/admin/growth")
    assert growth.status_code == 200
    assert "Week of" in growth.text
    assert "<svg " in growth.text

    events = admin.get("/admin/events")
    assert events.headers["content-type"].startswith("text/event-stream")
    assert "event: done" in events.text


def test_unsubscribe_suppress_erase_take_two_steps(
    admin: TestClient, engine: Engine, lists: dict[str, int]
) -> None:
    with engine.begin() as conn:
        person = add_subscriber(
            conn, "reader@example.org", list_ids=[lists["weekly"], lists["business"]], name="Rea"
        )
    found = admin.get("/admin/subscribers", params={"q": "READER@"})
    assert f'href="/admin/subscribers/{person.uid}"' in found.text
    page = admin.get(f"/admin/subscribers/{person.uid}")
    assert page.status_code == 200
    token = csrf_of(page.text)
    # the first step changes nothing and says what will happen
    confirm = admin.get(f"/admin/subscribers/{person.uid}/unsubscribe", params={"list": "weekly"})
    assert "They will stop getting The Test Weekly" in confirm.text
    # a post that skipped the confirmation page is sent there
    r = admin.post(
        f"/admin/subscribers/{person.uid}/unsubscribe", data={"csrf": token, "list": "weekly"}
    )
    assert r.status_code == 303
    assert r.headers["location"].endswith(
        f"/admin/subscribers/{person.uid}/unsubscribe?list=weekly"
    )

    def statuses() -> dict[str, SubscriptionStatus]:
        with engine.connect() as conn:
            found = find_by_email(conn, "reader@example.org")
        assert found is not None
        return {s.list_slug: s.status for s in found.subscriptions}

    assert statuses()["weekly"] is SubscriptionStatus.CONFIRMED
    r = admin.post(
        f"/admin/subscribers/{person.uid}/unsubscribe",
        data={"csrf": token, "list": "weekly", "confirm": "yes"},
    )
    assert r.status_code == 303
    assert statuses() == {
        "weekly": SubscriptionStatus.UNSUBSCRIBED,
        "business": SubscriptionStatus.CONFIRMED,
    }
    r = admin.post(
        f"/admin/subscribers/{person.uid}/suppress", data={"csrf": token, "confirm": "yes"}
    )
    assert r.status_code == 303
    with engine.connect() as conn:
        assert reason_of(conn, "reader@example.org") is SuppressionReason.UNSUBSCRIBED
    r = admin.post(f"/admin/subscribers/{person.uid}/erase", data={"csrf": token, "confirm": "yes"})
    assert r.status_code == 303
    assert r.headers["location"] == "/admin/subscribers?done=erased"
    with engine.connect() as conn:
        assert find_by_email(conn, "reader@example.org") is None
        assert reason_of(conn, "reader@example.org") is SuppressionReason.UNSUBSCRIBED
    assert admin.get(f"/admin/subscribers/{person.uid}").status_code == 404


# --- the CLI ------------------------------------------------------------------------------------


def test_admin_add_user_from_the_environment_or_a_prompt(
    settings: Settings, engine: Engine, project: Path, database_url: str
) -> None:
    config = write_config(project, database_url=database_url)
    run_cli(config, "init")
    short = run_cli(
        config, "admin", "add-user", "ed@test.example", env={"NEWSLETTER_ADMIN_PASSWORD": "short"}
    )
    assert short.exit_code == 1
    assert "at least 12 characters" in short.output
    ok = run_cli(
        config, "admin", "add-user", "Ed@Test.Example", env={"NEWSLETTER_ADMIN_PASSWORD": PASSWORD}
    )
    assert ok.exit_code == 0, ok.output
    assert PASSWORD not in ok.output
    again = run_cli(
        config, "admin", "add-user", "ed@test.example", env={"NEWSLETTER_ADMIN_PASSWORD": PASSWORD}
    )
    assert again.exit_code == 1
    assert "--reset" in again.output
    from click.testing import CliRunner

    from newsletter.cli import main

    prompted = CliRunner().invoke(
        main,
        ["--config", str(config), "admin", "add-user", "scoped@test.example", "--list", "business"],
        input="tiny\ntiny\n" + PASSWORD + "\n" + PASSWORD + "\n",
        env={"NEWSLETTER_SECRET_KEY": TEST_SECRET, "NEWSLETTER_ADMIN_PASSWORD": None},
    )
    assert prompted.exit_code == 0, prompted.output
    assert "at least 12 characters" in prompted.output
    listed = run_cli(config, "admin", "list-users")
    assert "ed@test.example" in listed.output
    assert "scoped@test.example  (business" in listed.output
    with engine.connect() as conn:
        scoped = find_editor(conn, "scoped@test.example")
    assert scoped is not None
    assert scoped.lists == ("business",)
    assert scoped.password_hash.startswith("$argon2id$")
    assert run_cli(config, "admin", "remove-user", "ed@test.example").exit_code == 0
    assert run_cli(config, "admin", "remove-user", "ed@test.example").exit_code == 1
    unknown = run_cli(
        config,
        "admin",
        "add-user",
        "x@test.example",
        "--list",
        "nope",
        env={"NEWSLETTER_ADMIN_PASSWORD": PASSWORD},
    )
    assert unknown.exit_code == 1
    assert "no list named 'nope'" in unknown.output
