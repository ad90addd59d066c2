"""Click and open counting end to end: a real send, the links in the delivered mail, the
redirect through the app, the totals in the store (both databases)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update
from starlette.testclient import TestClient

from newsletter.config import Settings, load_settings
from newsletter.delivery import Policy
from newsletter.sending import run_send
from newsletter.states import HitKind
from newsletter.store.analytics import Hit, engagement, prune_hits, record_hits
from newsletter.store.issues import find_issue
from newsletter.store.schema import deliveries, hits, issues, link_counts
from newsletter.store.subscribers import add_subscriber, ensure_lists, erase, find_by_email
from newsletter.tokens import LinkKind, make_link_token
from newsletter.web.app import create_app
from tests.conftest import TEST_SECRET, write_config
from tests.smtpd import SMTPServer

ISSUE = "2026-11-20-flood-barrier-vote.md"
FAST = Policy(batch_size=50, flush_interval=0.01)
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126 Safari/537.36"
TRACKED = re.compile(r"https://news\.test\.example/(r|o)/([A-Za-z0-9_\-.]+)")


def settings_with(project: Path, database_url: str, smtpd: SMTPServer, **env: str) -> Settings:
    path = write_config(project, database_url=database_url, smtp_url=smtpd.url)
    return load_settings(path, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET, **env})


def people(engine: Engine, settings: Settings, n: int = 3) -> list[str]:
    emails = [f"reader{i}@example.org" for i in range(n)]
    with engine.begin() as conn:
        ids = ensure_lists(conn, settings)
        for email in emails:
            add_subscriber(conn, email, list_ids=[ids["weekly"]], name=email.split("@")[0])
    return emails


def send(settings: Settings, engine: Engine, project: Path, *, now: datetime) -> None:
    report = run_send(settings, engine, project / "issues" / ISSUE, policy=FAST, now=now)
    assert report.finished


def parts(smtpd: SMTPServer, email: str) -> tuple[str, str]:
    """(html, text) of the copy ``email`` received, transfer encoding undone."""
    for received in smtpd.handler.messages:
        if email in received.rcpt_tos:
            msg = received.message
            html = msg.get_body(("html",))
            text = msg.get_body(("plain",))
            assert html is not None
            assert text is not None
            return html.get_content(), text.get_content()
    raise AssertionError(f"nothing for {email}")


@pytest.fixture
def app_for(engine: Engine) -> Iterator[object]:
    clients: list[TestClient] = []

    def make(settings: Settings) -> TestClient:
        client = TestClient(
            create_app(settings, engine=engine),
            base_url="https://news.test.example",
            follow_redirects=False,
        )
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def flush(client: TestClient) -> None:
    client.app.state.hits.flush(everything=True)  # type: ignore[attr-defined]


def issue_id(engine: Engine) -> int:
    ref = find_issue(engine, "flood-barrier-vote", "weekly")
    assert ref is not None
    return ref.id


def test_clicks_off_by_default_leave_the_mail_untouched(
    engine: Engine, project: Path, smtpd: SMTPServer, database_url: str
) -> None:
    s = settings_with(project, database_url, smtpd)
    emails = people(engine, s, 1)
    send(s, engine, project, now=datetime.now(UTC))
    html, _text = parts(smtpd, emails[0])
    assert "/r/" not in html
    assert "/o/" not in html
    assert "https://millbrook.example/explainers/demountable-barriers" in html
    with engine.connect() as conn:
        assert engagement(conn, issue_id(engine)).tracking.clicks is False


def test_a_click_redirects_to_the_stored_link_and_is_counted_for_nobody(
    engine: Engine,
    project: Path,
    smtpd: SMTPServer,
    database_url: str,
    app_for: object,
) -> None:
    s = settings_with(project, database_url, smtpd, NEWSLETTER_ANALYTICS_CLICKS="true")
    emails = people(engine, s, 2)
    send(s, engine, project, now=datetime.now(UTC) - timedelta(hours=1))
    html, text = parts(smtpd, emails[0])
    other_html, _ = parts(smtpd, emails[1])
    links = [m.group(0) for m in TRACKED.finditer(html) if m.group(1) == "r"]
    assert links, "no tracked links in the HTML part"
    # counted per link, not per person: every recipient's copy has the same links
    assert links == [m.group(0) for m in TRACKED.finditer(other_html) if m.group(1) == "r"]
    assert "." not in links[0].rsplit("/", 1)[1]
    # never rewritten: unsubscribe, view in browser; and the text part by default
    assert "/unsubscribe/" in html
    assert "/archive/flood-barrier-vote" in html
    assert "/r/" not in text
    assert "millbrook.example/explainers/demountable-barriers" in text

    client = app_for(s)  # type: ignore[operator]
    r = client.get(links[0], headers={"user-agent": BROWSER})
    assert r.status_code == 302
    iid = issue_id(engine)
    with engine.connect() as conn:
        first = engagement(conn, iid).links[0]
    assert r.headers["location"] == first.url
    assert r.headers["cache-control"].startswith("no-store")
    client.get(links[0], headers={"user-agent": BROWSER})
    client.head(links[1], headers={"user-agent": BROWSER})
    client.get(links[1], headers={"user-agent": "python-requests/2.32"})
    flush(client)
    with engine.connect() as conn:
        seen = engagement(conn, iid)
        raw = list(conn.execute(select(hits)))
    assert (seen.links[0].clicks, seen.links[0].automated) == (2, 0)
    assert (seen.links[1].clicks, seen.links[1].automated) == (0, 2)
    assert seen.links[0].unique_clicks == 0  # unique needs per-subscriber counting
    assert all(row.subscriber_id is None for row in raw)
    assert sorted(row.reason or "" for row in raw) == ["", "", "head", "scanner"]


def test_the_target_never_comes_from_the_request(
    engine: Engine, project: Path, smtpd: SMTPServer, database_url: str, app_for: object
) -> None:
    s = settings_with(project, database_url, smtpd, NEWSLETTER_ANALYTICS_CLICKS="1")
    people(engine, s, 1)
    send(s, engine, project, now=datetime.now(UTC))
    client = app_for(s)  # type: ignore[operator]
    iid = issue_id(engine)
    key = TEST_SECRET.encode()
    good = make_link_token(key, LinkKind.CLICK, iid, 1)
    for path in (
        f"/r/{good}?url=https://evil.example/",
        f"/r/{good}.evil.example",
    ):
        r = client.get(path, headers={"user-agent": BROWSER})
        assert r.status_code == 302
        assert "evil" not in r.headers["location"]
    r = client.get(f"/r/{good}.https%3A%2F%2Fevil.example", headers={"user-agent": BROWSER})
    assert r.status_code == 404
    # a position the issue has no link at, another issue, a wrong key, an open token: 404
    for bad in (
        make_link_token(key, LinkKind.CLICK, iid, 999),
        make_link_token(key, LinkKind.CLICK, iid + 1000, 1),
        make_link_token(b"x" * 32, LinkKind.CLICK, iid, 1),
        make_link_token(key, LinkKind.OPEN, iid, 1),
        "not-a-token",
    ):
        r = client.get(f"/r/{bad}", headers={"user-agent": BROWSER})
        assert r.status_code == 404
        assert "location" not in r.headers
    flush(client)
    with engine.connect() as conn:
        total = conn.execute(select(func.sum(link_counts.c.clicks))).scalar()
    assert total == 2


def test_per_subscriber_counts_unique_readers_and_early_scanners(
    engine: Engine, project: Path, smtpd: SMTPServer, database_url: str, app_for: object
) -> None:
    s = settings_with(
        project,
        database_url,
        smtpd,
        NEWSLETTER_ANALYTICS_CLICKS="1",
        NEWSLETTER_ANALYTICS_PER_SUBSCRIBER="1",
        NEWSLETTER_ANALYTICS_OPENS="1",
        NEWSLETTER_ANALYTICS_CLICKS_IN_TEXT="1",
    )
    emails = people(engine, s, 3)
    send(s, engine, project, now=datetime.now(UTC) - timedelta(minutes=5))
    iid = issue_id(engine)
    copies = {e: parts(smtpd, e) for e in emails}
    a_links = [m.group(0) for m in TRACKED.finditer(copies[emails[0]][0]) if m.group(1) == "r"]
    b_links = [m.group(0) for m in TRACKED.finditer(copies[emails[1]][0]) if m.group(1) == "r"]
    # per recipient: the same link, another reader part
    assert a_links[0] != b_links[0]
    assert a_links[0].split(".")[0] == b_links[0].split(".")[0]
    # the text part is rewritten too when asked
    assert "/r/" in copies[emails[0]][1]
    pixel = [m.group(0) for m in TRACKED.finditer(copies[emails[0]][0]) if m.group(1) == "o"]
    assert len(pixel) == 1

    client = app_for(s)  # type: ignore[operator]
    for link in (a_links[0], a_links[0], a_links[1]):
        assert client.get(link, headers={"user-agent": BROWSER}).status_code == 302
    client.get(b_links[0], headers={"user-agent": BROWSER})
    r = client.get(pixel[0], headers={"user-agent": BROWSER})
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/gif"
    client.get(pixel[0], headers={"user-agent": BROWSER})
    flush(client)
    with engine.connect() as conn:
        seen = engagement(conn, iid)
    assert (seen.links[0].clicks, seen.links[0].unique_clicks) == (3, 2)
    assert (seen.links[1].clicks, seen.links[1].unique_clicks) == (1, 1)
    assert seen.unique_clickers == 2
    assert (seen.opens, seen.unique_opens) == (2, 1)

    # a gateway fetching reader 2's links as the message arrives: counted apart
    with engine.begin() as conn:
        conn.execute(update(deliveries).values(sent_at=datetime.now(UTC)))
    c_links = [m.group(0) for m in TRACKED.finditer(copies[emails[2]][0]) if m.group(1) == "r"]
    client.get(c_links[0], headers={"user-agent": BROWSER})
    flush(client)
    with engine.connect() as conn:
        seen = engagement(conn, iid)
        reasons = set(conn.execute(select(hits.c.reason).where(hits.c.automated)).scalars())
    assert (seen.links[0].clicks, seen.links[0].automated) == (3, 1)
    assert reasons == {"early"}

    # erasing a reader deletes their raw rows; the totals stay
    with engine.begin() as conn:
        before = conn.execute(select(func.count()).select_from(hits)).scalar_one()
        erase(conn, emails[0])
        after = conn.execute(select(func.count()).select_from(hits)).scalar_one()
    assert after == before - 5
    with engine.connect() as conn:
        assert engagement(conn, iid).links[0].clicks == 3


def test_turning_per_subscriber_off_stops_recording_who(
    engine: Engine, project: Path, smtpd: SMTPServer, database_url: str, app_for: object
) -> None:
    on = settings_with(
        project,
        database_url,
        smtpd,
        NEWSLETTER_ANALYTICS_CLICKS="1",
        NEWSLETTER_ANALYTICS_PER_SUBSCRIBER="1",
    )
    emails = people(engine, on, 1)
    send(on, engine, project, now=datetime.now(UTC) - timedelta(hours=1))
    link = next(m.group(0) for m in TRACKED.finditer(parts(smtpd, emails[0])[0]))
    off = settings_with(project, database_url, smtpd, NEWSLETTER_ANALYTICS_CLICKS="1")
    client = app_for(off)  # type: ignore[operator]
    assert client.get(link, headers={"user-agent": BROWSER}).status_code == 302
    flush(client)
    with engine.connect() as conn:
        assert conn.execute(select(hits.c.subscriber_id)).scalars().all() == [None]
    # clicks turned off altogether: old links still work, nothing is recorded
    none = settings_with(project, database_url, smtpd)
    client = app_for(none)  # type: ignore[operator]
    assert client.get(link, headers={"user-agent": BROWSER}).status_code == 302
    flush(client)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(hits)).scalar_one() == 1


def test_a_burst_from_one_client_is_automated(
    engine: Engine, project: Path, smtpd: SMTPServer, database_url: str, app_for: object
) -> None:
    s = settings_with(project, database_url, smtpd, NEWSLETTER_ANALYTICS_CLICKS="1")
    emails = people(engine, s, 1)
    send(s, engine, project, now=datetime.now(UTC) - timedelta(hours=1))
    links = [m.group(0) for m in TRACKED.finditer(parts(smtpd, emails[0])[0])]
    client = app_for(s)  # type: ignore[operator]
    for link in links[:4]:
        client.get(link, headers={"user-agent": BROWSER})
    flush(client)
    with engine.connect() as conn:
        rows = list(conn.execute(select(hits.c.automated, hits.c.reason)))
    assert len(rows) == 4
    assert all(r.automated and r.reason == "burst" for r in rows)


def test_the_archive_shows_the_links_as_written(
    engine: Engine, project: Path, smtpd: SMTPServer, database_url: str, app_for: object
) -> None:
    s = settings_with(project, database_url, smtpd, NEWSLETTER_ANALYTICS_CLICKS="1")
    people(engine, s, 1)
    send(s, engine, project, now=datetime.now(UTC))
    client = app_for(s)  # type: ignore[operator]
    page = client.get("/archive/flood-barrier-vote")
    assert page.status_code == 200
    assert "/r/" not in page.text
    assert "https://millbrook.example/explainers/demountable-barriers" in page.text
    with engine.connect() as conn:
        stored = conn.execute(select(issues.c.html)).scalar_one()
    assert "/r/" not in stored


def test_retention_deletes_raw_rows_and_keeps_totals(engine: Engine, lists: dict[str, int]) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with engine.begin() as conn:
        iid = conn.execute(
            issues.insert()
            .values(
                slug="x",
                list_id=lists["weekly"],
                title="x",
                subject="x",
                issue_date=now,
                status="finished",
                html="",
                text="",
                created_at=now,
            )
            .returning(issues.c.id)
        ).scalar_one()
    old = [Hit(iid, HitKind.CLICK, 1, now - timedelta(days=100)) for _ in range(3)]
    new = [Hit(iid, HitKind.CLICK, 1, now - timedelta(days=1))]
    record_hits(engine, old + new, scanner_window=timedelta(seconds=10))
    assert prune_hits(engine, now=now, retention_days=90) == 3
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(hits)).scalar_one() == 1
        assert conn.execute(select(link_counts.c.clicks)).scalar_one() == 4


def test_a_resumed_send_tracks_as_it_began(
    engine: Engine, project: Path, smtpd: SMTPServer, database_url: str
) -> None:
    s = settings_with(project, database_url, smtpd, NEWSLETTER_ANALYTICS_CLICKS="1")
    emails = people(engine, s, 2)
    with engine.begin() as conn:
        # one recipient waits: their copy goes out in a second run, after clicks were turned off
        later = find_by_email(conn, emails[1])
        assert later is not None
    from newsletter.sending import prepare_issue

    _ref, _, _ = prepare_issue(s, engine, project / "issues" / ISSUE)
    with engine.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.subscriber_id == later.id)
            .values(next_attempt_at=datetime.now(UTC) + timedelta(days=1))
        )
    run_send(s, engine, project / "issues" / ISSUE, policy=FAST)
    with engine.begin() as conn:
        conn.execute(update(deliveries).values(next_attempt_at=datetime.now(UTC)))
    off = settings_with(project, database_url, smtpd)
    run_send(off, engine, project / "issues" / ISSUE, policy=FAST)
    first, second = parts(smtpd, emails[0]), parts(smtpd, emails[1])
    assert "/r/" in first[0]
    assert "/r/" in second[0]
    assert [m.group(0) for m in TRACKED.finditer(first[0])] == [
        m.group(0) for m in TRACKED.finditer(second[0])
    ]


def test_the_buffer_keeps_hits_while_the_database_is_away_and_stays_bounded(
    engine: Engine, lists: dict[str, int], tmp_path: Path
) -> None:
    from newsletter.store.database import make_engine
    from newsletter.web.redirect import HitBuffer

    now = datetime.now(UTC)
    with engine.begin() as conn:
        iid = conn.execute(
            issues.insert()
            .values(
                slug="b",
                list_id=lists["weekly"],
                title="b",
                subject="b",
                issue_date=now,
                status="finished",
                html="",
                text="",
                created_at=now,
            )
            .returning(issues.c.id)
        ).scalar_one()
    clock = [100.0]
    away = make_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    buffer = HitBuffer(
        away,
        scanner_window=timedelta(seconds=10),
        retention_days=90,
        max_pending=5,
        clock=lambda: clock[0],
    )
    for i in range(7):
        buffer.add(Hit(iid, HitKind.CLICK, 1, now), f"10.0.0.{i}")
    assert (len(buffer), buffer.dropped) == (5, 2)
    # not settled yet: nothing is written before it is a second old
    buffer.engine = engine
    assert buffer.flush() == 0
    clock[0] += 2
    buffer.engine = away
    assert buffer.flush() == 0
    assert len(buffer) == 5  # the failed batch went back, in order
    buffer.engine = engine
    assert buffer.flush() == 5
    with engine.connect() as conn:
        assert conn.execute(select(link_counts.c.clicks)).scalar_one() == 5
    away.dispose()
