"""Editor input in issues: scripting URLs are refused everywhere a link goes; markup is escaped."""

from __future__ import annotations

import pytest

from newsletter.config import Settings
from newsletter.errors import IssueError
from newsletter.issues import load_issue
from newsletter.rendering import Renderer
from tests.test_issues import FRONT, issue_from

BAD_URLS = [
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "vbscript:msgbox(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "file:///etc/passwd",
    "//evil.example/x",
    "https:evil",
]


def _slots(url: str) -> dict[str, tuple[str, str]]:
    """(front matter, body) placing ``url`` in each kind of link an issue can carry."""
    return {
        "paragraph": (FRONT, f"## News\n\nSee [this]({url}).\n"),
        "autolink": (FRONT, f"## News\n\nSee <{url}>.\n"),
        "related": (FRONT, f"## News\n\n::: related More\n- [Story]({url}) — Teaser.\n:::\n"),
        "cta": (FRONT, f"## News\n\nText.\n\n::: cta\nSupport us.\n\n[Give]({url})\n:::\n"),
        "headline": (
            FRONT.replace("status: ready\n", f"status: ready\nheadlines:\n  - 'A [link]({url})'\n"),
            "## News\n\nText.\n",
        ),
    }


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize("slot", list(_slots("x")))
def test_scripting_and_odd_urls_never_load(settings: Settings, url: str, slot: str) -> None:
    front, body = _slots(url)[slot]
    path = issue_from(settings, body, front=front)
    try:
        issue = load_issue(path, settings)
    except IssueError:
        return
    # the only acceptable way to load is with the URL left as inert, escaped text
    html = Renderer(settings).render(issue).html
    assert 'href="' + url not in html
    assert "href='" + url not in html
    for bad in ("javascript:", "vbscript:", "data:text/html", "file:"):
        assert f'href="{bad}' not in html.lower()


def test_raw_html_in_an_issue_is_escaped_in_both_parts(settings: Settings) -> None:
    front = FRONT.replace("title: Test issue", "title: 'A <script>alert(1)</script> title'")
    body = (
        "## Heading <img src=x onerror=alert(1)>\n\n"
        'Text with <b onclick="x">tags</b> and <script>alert(2)</script>.\n\n'
        "::: related More\n- [Story <i>x</i>](https://millbrook.example/a) — <svg onload=y>.\n:::\n"
    )
    issue = load_issue(issue_from(settings, body, front=front), settings)
    rendered = Renderer(settings).render(issue)
    for needle in ("<script>alert", "<img src=x", "<b onclick", "<svg onload", "<i>x</i>"):
        assert needle not in rendered.html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in rendered.html
    assert "<script>alert(2)</script>" in rendered.text  # the text part is not HTML
