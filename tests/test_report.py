"""``newsletter report``: a real send with bounces, clicks and an unsubscribe, read back."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from starlette.testclient import TestClient

from newsletter.config import Settings, load_settings
from newsletter.delivery import Policy
from newsletter.report import (
    Level,
    bounce_level,
    complaint_level,
    issue_report,
    list_growth,
    time_buckets,
)
from newsletter.sending import run_send
from newsletter.store.issues import find_issue
from newsletter.store.schema import deliveries
from newsletter.store.subscribers import add_subscriber, ensure_lists
from newsletter.tokens import TokenPurpose, make_token
from newsletter.web.app import create_app
from tests.conftest import TEST_SECRET, run_cli, write_config
from tests.smtpd import SMTPServer

ISSUE = "2026-11-20-flood-barrier-vote.md"
SLUG = "flood-barrier-vote"
FAST = Policy(batch_size=50, flush_interval=0.01, max_attempts=3)
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15"


@pytest.mark.parametrize(
    ("rate", "level"),
    [
        (None, Level.OK),
        (0.0, Level.OK),
        (0.00099, Level.OK),
        (0.001, Level.WARN),
        (0.003, Level.ALARM),
    ],
)
def test_complaint_thresholds(rate: float | None, level: Level) -> None:
    assert complaint_level(rate) is level


def test_bounce_threshold() -> None:
    assert bounce_level(0.0199) is Level.OK
    assert bounce_level(0.02) is Level.WARN


def test_time_buckets_are_whole_steps_and_count_everything() -> None:
    t0 = datetime(2026, 11, 20, 11, 0, tzinfo=UTC)
    times = [t0 + timedelta(seconds=s) for s in (0, 1, 2, 59, 60, 61, 300, 599)]
    buckets = time_buckets(times, 24)
    assert sum(n for _, n in buckets) == len(times)
    steps = {(b[0] - a[0]).total_seconds() for a, b in itertools.pairwise(buckets)}
    assert steps == {30.0}
    assert time_buckets([], 10) == []
    assert time_buckets([t0, t0], 10) == [(t0, 2)]


@pytest.fixture
def tracked(project: Path, database_url: str, smtpd: SMTPServer) -> Settings:
    path = write_config(project, database_url=database_url, smtp_url=smtpd.url)
    return load_settings(
        path,
        environ={
            "NEWSLETTER_SECRET_KEY": TEST_SECRET,
            "NEWSLETTER_ANALYTICS_CLICKS": "1",
            "NEWSLETTER_ANALYTICS_PER_SUBSCRIBER": "1",
        },
    )


def test_report_of_a_send_with_bounces_clicks_and_an_unsubscribe(
    engine: Engine, tracked: Settings, smtpd: SMTPServer, project: Path
) -> None:
    emails = [f"reader{i}@example.org" for i in range(10)]
    with engine.begin() as conn:
        ids = ensure_lists(conn, tracked)
        for email in emails:
            add_subscriber(conn, email, list_ids=[ids["weekly"]])
    smtpd.handler.faults.rcpt[emails[0]] = ["550 5.1.1 no such user"]
    smtpd.handler.faults.rcpt[emails[1]] = ["452 4.2.2 mailbox full"]
    past = datetime.now(UTC) - timedelta(hours=2)
    run_send(tracked, engine, project / "issues" / ISSUE, policy=FAST, now=past)
    ref = find_issue(engine, SLUG, "weekly")
    assert ref is not None
    with engine.begin() as conn:
        # the copies went out when the (past) send ran, not just now
        conn.execute(
            update(deliveries).where(deliveries.c.sent_at.is_not(None)).values(sent_at=past)
        )

    copies = {}
    for received in smtpd.handler.messages:
        body = received.message.get_body(("html",))
        assert body is not None
        copies[received.rcpt_tos[0]] = body.get_content()
    links = {
        e: re.findall(r"https://news\.test\.example/r/[A-Za-z0-9_\-.]+", html)
        for e, html in copies.items()
    }
    unsub = re.search(
        r"https://news\.test\.example(/unsubscribe/[A-Za-z0-9_\-]+)", copies[emails[2]]
    )
    assert unsub is not None
    with TestClient(
        create_app(tracked, engine=engine),
        base_url="https://news.test.example",
        follow_redirects=False,
    ) as client:
        for reader in emails[2:5]:
            client.get(links[reader][0], headers={"user-agent": BROWSER})
        client.get(links[emails[2]][0], headers={"user-agent": BROWSER})
        client.get(links[emails[3]][1], headers={"user-agent": BROWSER})
        client.head(links[emails[4]][1])
        r = client.post(unsub.group(1), data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200
        # the same person again, and a link that came from no send (a confirmation-like one)
        client.post(unsub.group(1), data={"List-Unsubscribe": "One-Click"})
        with engine.connect() as conn:
            from newsletter.store.subscribers import find_by_email

            other = find_by_email(conn, emails[5])
        assert other is not None
        stray = make_token(TEST_SECRET.encode(), TokenPurpose.UNSUBSCRIBE, other.uid, ids["weekly"])
        client.post(f"/unsubscribe/{stray}", data={"List-Unsubscribe": "One-Click"})
        client.app.state.hits.flush(everything=True)  # type: ignore[attr-defined]

    report = issue_report(engine, ref)
    assert report.recipients == 10
    assert report.delivered == 8
    assert (report.events.hard_bounces, report.events.soft_bounces) == (1, 1)
    assert report.engagement.unsubscribes == 1
    assert report.clicks == 5
    assert report.clicks_automated == 1
    assert report.unique_clickers == 3
    assert report.click_through_rate == pytest.approx(3 / 8)
    assert report.links[0].clicks == 4
    assert report.links[0].unique == 3
    assert report.hard_bounce_rate == pytest.approx(1 / 9)
    assert bounce_level(report.hard_bounce_rate) is Level.WARN

    config = project / "newsletter.toml"
    env = {"NEWSLETTER_ANALYTICS_CLICKS": "1"}
    result = run_cli(config, "report", SLUG, "--json", env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)["reports"][0]
    assert data["recipients"] == 10
    assert data["delivered"] == 8
    assert data["hard_bounces"] == 1
    assert data["soft_bounces"] == 1
    assert data["unsubscribes"] == 1
    assert data["hard_bounce_level"] == "warn"
    assert data["complaint_level"] == "ok"
    assert data["clicks"] == {
        "total": 5,
        "unique_recipients": 3,
        "automated": 1,
        "click_through_rate": 0.375,
        "click_through_basis": "unique_recipients",
    }
    first = data["links"][0]
    assert set(first) == {"position", "text", "url", "part", "clicks", "unique", "automated"}
    assert first["url"].startswith("https://millbrook.example/")
    assert first["text"]
    assert data["opens"]["total"] is None
    assert data["opens"]["estimate"] is True

    text = run_cli(config, "report", str(project / "issues" / ISSUE), env=env)
    assert text.exit_code == 0, text.output
    assert "hard bounces" in text.output
    assert "warning: 2 % or more" in text.output
    assert first["text"] in text.output
    assert "within 7 days" in text.output


def test_report_of_an_unsent_issue(tracked: Settings, engine: Engine, project: Path) -> None:
    result = run_cli(project / "newsletter.toml", "report", "no-such-issue")
    assert result.exit_code == 1
    assert "not sent yet" in result.output
    data = json.loads(run_cli(project / "newsletter.toml", "report", "x", "--json").output)
    assert data == {"reports": []}


def test_an_unsubscribe_after_the_window_is_not_the_issue_s(
    engine: Engine, tracked: Settings, smtpd: SMTPServer, project: Path
) -> None:
    with engine.begin() as conn:
        ids = ensure_lists(conn, tracked)
        add_subscriber(conn, "late@example.org", list_ids=[ids["weekly"]])
    long_ago = datetime.now(UTC) - timedelta(days=10)
    run_send(tracked, engine, project / "issues" / ISSUE, policy=FAST, now=long_ago)
    html = smtpd.handler.messages[0].message.get_body(("html",))
    assert html is not None
    path = re.search(
        r"https://news\.test\.example(/unsubscribe/[A-Za-z0-9_\-]+)", html.get_content()
    )
    assert path is not None
    with TestClient(create_app(tracked, engine=engine), base_url="https://news.test.example") as c:
        assert c.post(path.group(1), data={"List-Unsubscribe": "One-Click"}).status_code == 200
    ref = find_issue(engine, SLUG, "weekly")
    assert ref is not None
    assert issue_report(engine, ref).engagement.unsubscribes == 0


def test_list_growth_week_by_week(engine: Engine, settings: Settings) -> None:
    today = datetime(2026, 11, 25, tzinfo=UTC).date()  # a Wednesday
    with engine.begin() as conn:
        ids = ensure_lists(conn, settings)
        for i, days_ago in enumerate((0, 1, 8, 9, 30)):
            when = datetime(2026, 11, 25, 12, tzinfo=UTC) - timedelta(days=days_ago)
            add_subscriber(conn, f"p{i}@example.org", list_ids=[ids["weekly"]], now=when)
    weeks = list_growth(engine, ids["weekly"], weeks=3, today=today, timezone="Europe/Kyiv")
    assert [w.start.isoformat() for w in weeks] == ["2026-11-09", "2026-11-16", "2026-11-23"]
    assert [w.counts["joined"] for w in weeks] == [0, 2, 2]
    assert [w.counts["confirmed"] for w in weeks] == [0, 2, 2]


def test_an_unsubscribe_by_mail_is_attributed_too(
    engine: Engine, tracked: Settings, smtpd: SMTPServer, project: Path
) -> None:
    from email.message import EmailMessage

    from newsletter.inbound.mailto import MailRequest, handle_unsubscribe_mail

    with engine.begin() as conn:
        ids = ensure_lists(conn, tracked)
        add_subscriber(conn, "bymail@example.org", list_ids=[ids["weekly"]])
    run_send(tracked, engine, project / "issues" / ISSUE, policy=FAST)
    header = str(smtpd.handler.messages[0].message["List-Unsubscribe"])
    mailto = re.search(r"<(mailto:[^>]+)>", header)
    assert mailto is not None
    token = mailto.group(1).split("%20", 1)[1]
    request = EmailMessage()
    request["From"] = "bymail@example.org"
    request["To"] = "unsubscribe@test.example"
    request["Subject"] = f"unsubscribe {token}"
    with engine.begin() as conn:
        outcome = handle_unsubscribe_mail(conn, tracked.token_keys, request)
    assert outcome.result is MailRequest.UNSUBSCRIBED
    ref = find_issue(engine, SLUG, "weekly")
    assert ref is not None
    assert issue_report(engine, ref).engagement.unsubscribes == 1
