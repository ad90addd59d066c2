"""The public archive through the real app: listing, issue pages without recipient data, Atom."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import lxml.html
import pytest
from sqlalchemy import Engine, insert, select
from starlette.testclient import TestClient

from newsletter.config import Settings
from newsletter.model import UNSUBSCRIBE_URL_PLACEHOLDER
from newsletter.states import SendStatus
from newsletter.store import schema
from newsletter.web.archive import public_html

A = "{http://www.w3.org/2005/Atom}"
T0 = datetime(2026, 11, 6, 11, 0, tzinfo=UTC)

EMAIL = f"""<!doctype html><html lang="en"><head><title>x</title></head>
<body style="margin:0"><div>{{body}}</div>
<p class="footer"><a href="https://news.test.example/archive/weekly/{{slug}}">View in browser</a> |
<a href="{UNSUBSCRIBE_URL_PLACEHOLDER}" style="color:#999">Unsubscribe</a></p></body></html>"""


def add_list(engine: Engine, slug: str, name: str) -> int:
    with engine.begin() as conn:
        result = conn.execute(insert(schema.lists).values(slug=slug, name=name, created_at=T0))
        return int(result.inserted_primary_key[0])


def add_issue(engine: Engine, list_id: int, slug: str, title: str, day: int, **kw: Any) -> None:
    values: dict[str, Any] = {
        "slug": slug,
        "list_id": list_id,
        "title": title,
        "subject": f"The Test Weekly: {title}",
        "issue_date": T0 + timedelta(days=day),
        "status": SendStatus.FINISHED.value,
        "html": EMAIL.replace("{body}", f"<h1>{title}</h1>").replace("{slug}", slug),
        "text": title,
        "created_at": T0 + timedelta(days=day),
        "finished_at": T0 + timedelta(days=day, hours=1),
    }
    values.update(kw)
    with engine.begin() as conn:
        conn.execute(insert(schema.issues).values(**values))


@pytest.fixture
def weekly(engine: Engine) -> int:
    return add_list(engine, "weekly", "The Test Weekly")


def test_index_lists_sent_issues_newest_first(
    client: TestClient, engine: Engine, weekly: int
) -> None:
    business = add_list(engine, "business", "Business Brief")
    add_issue(engine, weekly, "2026-11-06-first", "First issue", 0)
    add_issue(engine, weekly, "2026-11-20-third", "Third issue", 14)
    add_issue(engine, business, "2026-11-13-second", "Second issue", 7)

    page = client.get("/archive")
    assert page.status_code == 200
    body = page.text
    positions = [body.index(t) for t in ("Third issue", "Second issue", "First issue")]
    assert positions == sorted(positions)
    assert 'href="/archive/weekly/2026-11-20-third"' in body
    assert "Business Brief" in body

    only_business = client.get("/archive", params={"list": "business"}).text
    assert "Second issue" in only_business
    assert "First issue" not in only_business


def test_empty_archive_says_so(client: TestClient) -> None:
    page = client.get("/archive")
    assert page.status_code == 200
    assert "No issues have been sent yet" in page.text


def test_issue_page_drops_the_unsubscribe_link(
    client: TestClient, engine: Engine, weekly: int
) -> None:
    add_issue(engine, weekly, "2026-11-06-first", "First issue", 0)
    for url in ("/archive/weekly/2026-11-06-first", "/archive/2026-11-06-first"):
        page = client.get(url)
        assert page.status_code == 200, url
        assert "<h1>First issue</h1>" in page.text
        assert UNSUBSCRIBE_URL_PLACEHOLDER not in page.text
        assert "Unsubscribe" not in page.text
        assert "View in browser" in page.text
        assert 'href="/archive"' in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_missing_issue_is_a_404_page(client: TestClient, weekly: int) -> None:
    page = client.get("/archive/weekly/no-such-issue")
    assert page.status_code == 404
    assert "No such issue" in page.text
    assert client.get("/archive/nope").status_code == 404


def test_titles_are_escaped_on_the_index(client: TestClient, engine: Engine, weekly: int) -> None:
    add_issue(engine, weekly, "2026-11-06-x", "Fish & <script>alert(1)</script>", 0)
    body = client.get("/archive").text
    assert "<script>alert(1)</script>" not in body
    assert "Fish &amp; &lt;script&gt;" in body


def test_placeholder_outside_a_link_becomes_the_subscribe_page() -> None:
    html = (
        f"<p>Manage: {UNSUBSCRIBE_URL_PLACEHOLDER}</p>"
        f"<a class='u' href='{UNSUBSCRIBE_URL_PLACEHOLDER}'>Leave <b>us</b></a>"
        "<a href='/x'>keep</a>"
    )
    out = public_html(html, subscribe_url="https://news.test.example/subscribe")
    assert out == "<p>Manage: https://news.test.example/subscribe</p><a href='/x'>keep</a>"


def test_atom_feed_is_valid(client: TestClient, engine: Engine, weekly: int) -> None:
    add_issue(engine, weekly, "2026-11-06-first", "First & best", 0)
    add_issue(engine, weekly, "2026-11-13-second", "Second <issue>", 7)
    response = client.get("/archive/feed.xml")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/atom+xml")
    feed = ET.fromstring(response.content)  # well-formed, or this raises

    assert feed.tag == f"{A}feed"
    # RFC 4287 4.1.1: a feed has exactly one id, title and updated, and (with entries that
    # have no author) an author; entries have id, title, updated, and a link or content
    for tag in ("id", "title", "updated", "author"):
        assert len(feed.findall(f"{A}{tag}")) == 1, tag
    assert feed.find(f"{A}author/{A}name") is not None
    self_link = feed.find(f"{A}link[@rel='self']")
    assert self_link is not None
    assert self_link.get("href") == "https://news.test.example/archive/feed.xml"
    entries = feed.findall(f"{A}entry")
    assert [e.findtext(f"{A}title") for e in entries] == ["Second <issue>", "First & best"]
    for entry in entries:
        for tag in ("id", "title", "updated"):
            assert len(entry.findall(f"{A}{tag}")) == 1, tag
        link = entry.find(f"{A}link[@rel='alternate']")
        assert link is not None
        assert link.get("href", "").startswith("https://news.test.example/archive/weekly/")
        assert entry.findtext(f"{A}id") == link.get("href")
        content = entry.findtext(f"{A}content") or ""
        assert UNSUBSCRIBE_URL_PLACEHOLDER not in content
        assert "<h1>" in content
    # the feed's updated is the newest entry's
    assert feed.findtext(f"{A}updated") == entries[0].findtext(f"{A}updated")
    updated = feed.findtext(f"{A}updated") or ""
    assert datetime.fromisoformat(updated.replace("Z", "+00:00")).tzinfo is not None


def test_empty_feed_is_still_valid(client: TestClient) -> None:
    feed = ET.fromstring(client.get("/archive/feed.xml").content)
    assert feed.findtext(f"{A}title") == "The Test Weekly"
    assert feed.findall(f"{A}entry") == []


def test_issue_rows_in_the_store_are_read_not_changed(
    client: TestClient, engine: Engine, weekly: int
) -> None:
    add_issue(engine, weekly, "2026-11-06-first", "First issue", 0)
    client.get("/archive/weekly/2026-11-06-first")
    with engine.connect() as conn:
        stored = conn.execute(select(schema.issues.c.html)).scalar_one()
    assert UNSUBSCRIBE_URL_PLACEHOLDER in stored


def test_the_public_app_serves_the_archive(settings: Settings, engine: Engine, weekly: int) -> None:
    from newsletter.web.app import create_app

    add_issue(engine, weekly, "first", "First issue", 0)
    client = TestClient(create_app(settings, engine=engine), base_url=settings.publication.base_url)
    assert "First issue" in client.get("/archive").text
    # the "view in browser" link the renderer puts in every email: /archive/<slug>
    page = client.get("/archive/first")
    assert page.status_code == 200
    assert "<h1>First issue</h1>" in page.text
    assert client.get("/archive/feed.xml").status_code == 200


def test_issue_page_has_no_inbox_only_parts(
    client: TestClient, engine: Engine, weekly: int, settings: Settings
) -> None:
    """The real template's "view in your browser" bar and unsubscribe line are taken out whole:
    no link to the page itself, no separator left where the unsubscribe link was."""
    from newsletter.issues import load_issue
    from newsletter.rendering import Renderer

    issue = load_issue(settings.issues_dir / "2026-11-20-flood-barrier-vote.md", settings)
    html = Renderer(settings).render(issue).html
    assert "View this issue in your browser" in html  # the email has them
    add_issue(engine, weekly, "flood-barrier-vote", issue.title, 0, html=html)
    page = client.get("/archive/weekly/flood-barrier-vote")
    assert page.status_code == 200
    doc = lxml.html.fromstring(page.text)
    text = " ".join(doc.body.text_content().split())
    assert "View this issue in your browser" not in text
    assert "View in your browser" not in text
    assert "Unsubscribe" not in text
    assert "because you subscribed" not in text
    assert not doc.find_class("email-only")
    footer = " ".join(doc.find_class("footer")[-1].text_content().split())
    assert footer == "1 Test Street, Testville"  # the address alone: no stray "·"
    assert UNSUBSCRIBE_URL_PLACEHOLDER not in page.text
    assert page.text.lower().startswith("<!doctype html>")
    # everything else of the email is there
    assert "Council backs the flood barrier" in text
    assert "Become a supporter" in text


def test_index_entries_show_date_summary_and_authors(
    client: TestClient, engine: Engine, weekly: int
) -> None:
    add_issue(
        engine,
        weekly,
        "2026-11-20-barrier",
        "The flood barrier vote",
        14,
        authors=["Ana Brook", "Tomasz Vale"],
        preheader="Council backs the barrier 7–4, and the footbridge opens.",
    )
    add_issue(engine, weekly, "2026-11-06-old", "Recorded before authors were kept", 0)
    doc = lxml.html.fromstring(client.get("/archive").text)
    first, second = doc.xpath("//ol[@class='issues']/li")
    assert first.xpath(".//time/text()") == ["Friday, November 20, 2026"]
    assert first.xpath(".//time/@datetime") == ["2026-11-20"]
    assert first.find_class("summary")[0].text_content() == (
        "Council backs the barrier 7–4, and the footbridge opens."
    )
    assert first.find_class("byline")[0].text_content() == "By Ana Brook and Tomasz Vale"
    # an issue recorded before migration 0003 shows without them, nothing empty left behind
    assert not second.find_class("summary")
    assert not second.find_class("byline")
    assert second.xpath(".//h2/a/text()") == ["Recorded before authors were kept"]
    feed = ET.fromstring(client.get("/archive/feed.xml").content)
    summaries = [e.findtext(f"{A}summary") for e in feed.iter(f"{A}entry")]
    assert summaries[0] == "Council backs the barrier 7–4, and the footbridge opens."
    assert summaries[1] == "The Test Weekly: Recorded before authors were kept"


def test_a_sent_issue_records_its_authors_and_preheader(settings: Settings, engine: Engine) -> None:
    from newsletter.sending import prepare_issue
    from newsletter.store.issues import sent_issues

    prepare_issue(settings, engine, settings.issues_dir / "2026-11-20-flood-barrier-vote.md")
    (sent,) = sent_issues(engine)
    assert sent.authors == ("Ana Brook", "Tomasz Vale")
    assert sent.preheader.startswith("Council backs the Weir Meadow barrier 7–4")
