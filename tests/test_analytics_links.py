"""Which links a send counts, the bodies rewritten to match, and the link tokens (pure)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.errors import TokenError
from newsletter.links import HTML, TEXT, Link, track_html, track_text, trackable, tracked_links
from newsletter.scanners import BurstDetector, automated
from newsletter.tokens import (
    LinkKind,
    TokenPurpose,
    make_link_token,
    make_reader_token,
    make_token,
    read_link_token,
    read_reader_token,
)

BASE = "https://news.example.org"
KEY = b"k" * 32
OTHER = b"o" * 32

HTML_BODY = f"""<!doctype html><html><body>
<a href="{BASE}/archive/issue-1">View this issue in your browser</a>
<h1><a class="card-title" href="https://millbrook.example/explainers/barriers?a=1&amp;b=2">How a
 <b>barrier</b> works</a></h1>
<a href="https://millbrook.example/support"><img src="x.png" alt="Support us"></a>
<a href="mailto:editors@millbrook.example">Write to us</a>
<a href="#section-2">Jump</a>
<a href="%%JOIN_URL_BUSINESS%%">Join the Business Brief</a>
<a href='https://millbrook.example/explainers/barriers?a=1&amp;b=2'>again</a>
<p><a href="%%UNSUBSCRIBE_URL%%">Unsubscribe</a> <a href="{BASE}/subscribe">Subscribe</a></p>
</body></html>"""
TEXT_BODY = (
    "How a barrier works <https://millbrook.example/explainers/barriers?a=1&b=2>.\n"
    f"View in your browser: {BASE}/archive/issue-1\n"
    "Support: https://millbrook.example/support.\n"
    "Unsubscribe: %%UNSUBSCRIBE_URL%%\n"
)


def test_only_outside_http_links_are_counted_in_order() -> None:
    links = tracked_links(HTML_BODY, TEXT_BODY, base_url=BASE)
    assert [(link.position, link.part, link.url) for link in links] == [
        (1, HTML, "https://millbrook.example/explainers/barriers?a=1&b=2"),
        (2, HTML, "https://millbrook.example/support"),
        (3, HTML, "https://millbrook.example/explainers/barriers?a=1&b=2"),
    ]
    # the words of the link, tags gone and space collapsed; an image link says its alt text
    assert [link.label for link in links] == ["How a barrier works", "Support us", "again"]


def test_text_links_only_when_asked_and_with_the_html_words() -> None:
    links = tracked_links(HTML_BODY, TEXT_BODY, base_url=BASE, in_text=True)
    text = [link for link in links if link.part == TEXT]
    assert [(link.position, link.url, link.label) for link in text] == [
        (4, "https://millbrook.example/explainers/barriers?a=1&b=2", "How a barrier works"),
        (5, "https://millbrook.example/support", "Support us"),
    ]


@pytest.mark.parametrize(
    ("url", "counted"),
    [
        ("https://millbrook.example/a", True),
        ("http://millbrook.example/a", True),
        (f"{BASE}/unsubscribe/abc", False),
        (f"{BASE}/confirm/abc", False),
        (f"{BASE}/join/abc", False),
        (f"{BASE}/archive/x", False),
        (f"{BASE}/", False),
        (BASE, False),
        ("%%UNSUBSCRIBE_URL%%", False),
        ("https://x.example/?u=%%READER%%", False),
        ("mailto:a@b.example", False),
        ("javascript:alert(1)", False),
        ("ftp://x.example/file", False),
        ("#anchor", False),
        ("//x.example/a", False),
    ],
)
def test_trackable(url: str, counted: bool) -> None:
    assert trackable(url, BASE) is counted


def test_a_base_url_with_a_path_keeps_its_own_pages_and_counts_the_rest_of_the_site() -> None:
    base = "https://example.org/newsletter"
    assert not trackable("https://example.org/newsletter/archive/x", base)
    assert trackable("https://example.org/news/story", base)


def test_rewriting_matches_the_table_and_leaves_the_rest_as_written() -> None:
    links = tracked_links(HTML_BODY, TEXT_BODY, base_url=BASE, in_text=True)
    html = track_html(
        HTML_BODY, links, lambda link: f"{BASE}/r/T{link.position}", base_url=BASE, pixel="P&Q"
    )
    assert html.count(f'href="{BASE}/r/T1"') == 1
    assert f'href="{BASE}/r/T2"' in html
    assert "href='" + f"{BASE}/r/T3'" in html
    for kept in (
        f'href="{BASE}/archive/issue-1"',
        'href="mailto:editors@millbrook.example"',
        'href="#section-2"',
        'href="%%JOIN_URL_BUSINESS%%"',
        'href="%%UNSUBSCRIBE_URL%%"',
        f'href="{BASE}/subscribe"',
    ):
        assert kept in html
    assert "millbrook.example/explainers" not in html
    # the pixel goes last in the body, its URL escaped
    assert html.index('<img src="P&amp;Q"') < html.index("</body>")
    text = track_text(TEXT_BODY, links, lambda link: f"{BASE}/r/T{link.position}", base_url=BASE)
    assert f"<{BASE}/r/T4>." in text
    assert f"Support: {BASE}/r/T5." in text
    assert "%%UNSUBSCRIBE_URL%%" in text
    assert f"{BASE}/archive/issue-1" in text


def test_a_body_that_changed_since_the_table_keeps_its_own_links() -> None:
    links = [Link(1, HTML, "https://elsewhere.example/", "x")]
    html = track_html(HTML_BODY, links, lambda link: "https://evil.example/", base_url=BASE)
    assert "evil.example" not in html


@given(st.text(max_size=300))
def test_any_html_round_trips_through_the_walk(body: str) -> None:
    links = tracked_links(body, "", base_url=BASE)
    html = track_html(body, links, lambda link: "https://t.example/r", base_url=BASE)
    # every counted link was replaced, nothing else moved
    assert len(tracked_links(html, "", base_url=BASE)) == len(links)
    if not links:
        assert html == body


# --- tokens -----------------------------------------------------------------------------------


def test_link_tokens_round_trip_and_carry_no_url() -> None:
    token = make_link_token(KEY, LinkKind.CLICK, 42, 7)
    assert read_link_token(KEY, token) == read_link_token([OTHER, KEY], token)
    data = read_link_token(KEY, token)
    assert (data.kind, data.issue_id, data.position) == (LinkKind.CLICK, 42, 7)
    assert len(token) < 30
    assert "http" not in base64.urlsafe_b64decode(token + "==").decode("latin-1")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1],
        lambda t: t + "A",
        lambda t: ("B" if t[0] != "B" else "C") + t[1:],
        lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"),
        lambda t: "",
        lambda t: "a" * 200,
        lambda t: t.replace("-", "+"),
    ],
)
def test_forged_link_tokens_are_refused(mangle: object) -> None:
    token = make_link_token(KEY, LinkKind.CLICK, 1, 1)
    bad = mangle(token)  # type: ignore[operator]
    if bad == token:
        return
    with pytest.raises(TokenError):
        read_link_token(KEY, bad)


def test_tokens_of_one_kind_never_verify_as_another() -> None:
    click = make_link_token(KEY, LinkKind.CLICK, 1, 1)
    assert read_link_token(KEY, click).kind is LinkKind.CLICK
    with pytest.raises(TokenError):
        read_link_token(OTHER, click)
    reader = make_reader_token(KEY, 1, "ab" * 16)
    with pytest.raises(TokenError):
        read_link_token(KEY, reader)
    with pytest.raises(TokenError):
        read_reader_token(KEY, click, 1)
    with pytest.raises(TokenError):
        read_reader_token(KEY, make_token(KEY, TokenPurpose.UNSUBSCRIBE, "ab" * 16, 1), 1)
    assert read_reader_token(KEY, reader, 1) == "ab" * 16
    # a reader token is bound to its issue: it cannot be moved onto another issue's links
    with pytest.raises(TokenError):
        read_reader_token(KEY, reader, 2)


# --- scanners ---------------------------------------------------------------------------------

BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile"


@pytest.mark.parametrize(
    ("method", "agent", "reason"),
    [
        ("GET", BROWSER, None),
        ("HEAD", BROWSER, "head"),
        ("GET", "", "scanner"),
        ("GET", None, "scanner"),
        ("GET", "Mozilla/5.0 (compatible; Barracuda Sentinel)", "scanner"),
        ("GET", "python-requests/2.31", "scanner"),
        ("GET", "Mozilla/5.0 (compatible; bingbot/2.0)", "scanner"),
        ("GET", "Slackbot-LinkExpanding 1.0", "scanner"),
    ],
)
def test_automated_requests(method: str, agent: str | None, reason: str | None) -> None:
    assert automated(method, agent) == reason


def test_a_burst_of_different_links_from_one_client() -> None:
    bursts = BurstDetector(window=1.0, links=3)
    assert not bursts.hit("1.2.3.4", 1, 1, 10.0)
    assert not bursts.hit("1.2.3.4", 1, 1, 10.1)  # the same link twice is a reader
    assert not bursts.hit("5.6.7.8", 1, 2, 10.2)  # another client
    assert not bursts.hit("1.2.3.4", 2, 2, 10.2)  # another issue
    assert not bursts.hit("1.2.3.4", 1, 2, 10.3)
    assert bursts.hit("1.2.3.4", 1, 3, 10.4)
    # a reader reading slowly never bursts
    assert not bursts.hit("9.9.9.9", 1, 1, 20.0)
    assert not bursts.hit("9.9.9.9", 1, 2, 22.0)
    assert not bursts.hit("9.9.9.9", 1, 3, 24.0)


def test_the_burst_table_stays_bounded() -> None:
    bursts = BurstDetector(max_clients=100)
    for i in range(1000):
        bursts.hit(f"10.0.{i // 256}.{i % 256}", 1, 1, float(i))
    assert len(bursts._recent) <= 100
