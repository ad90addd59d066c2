"""Editor input in issues: scripting URLs are refused everywhere a link goes; markup is escaped.

Characters no email can carry and dates the calendar code cannot take are reported at their
line, never a render failure or a traceback.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter.checks import Severity, check_issue
from newsletter.config import Settings
from newsletter.errors import IssueError
from newsletter.issues import load_issue
from newsletter.rendering import Renderer
from tests.conftest import run_cli
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


# -- characters no email can carry -----------------------------------------------------------

# YAML escapes make characters the file's own bytes cannot hold: the check on the raw text
# never sees them, and MJML failed on them with "unable to parse next template", no line.
CONTROL_TITLES = {
    "escape": r'"Red \e[31m alert"',
    "noncharacter": r'"Odd \uffff one"',
    "nul": r'"Nul \0 and bell \a"',
    "unit-separator": r'"A \x1f B"',
}


@pytest.mark.parametrize("title", CONTROL_TITLES.values(), ids=list(CONTROL_TITLES))
def test_control_characters_in_front_matter_are_removed_with_a_warning(
    settings: Settings, title: str
) -> None:
    front = FRONT.replace("title: Test issue", f"title: {title}")
    path = issue_from(settings, "## News\n\nText.\n", front=front)
    problems = check_issue(path, settings)
    assert [(p.severity, p.line) for p in problems] == [(Severity.WARNING, 2)], problems
    assert "control characters were removed from title" in problems[0].message
    html = Renderer(settings).render(load_issue(path, settings)).html
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\uffff]", html)


@pytest.mark.parametrize(
    ("front_line", "line", "key"),
    [
        (r'title: "Half \ud800 a pair"', 2, "title"),
        (r'authors: ["Ana", "\udcff"]', 4, "authors.1"),
        ('hero:\n  src: images/market.png\n  alt: "\\udfff"', 8, "hero.alt"),
        (r'headlines: ["One \ud83d", "Two", "Three"]', 6, "headlines.0"),
    ],
)
def test_a_lone_surrogate_is_an_error_at_its_line_not_a_render_failure(
    settings: Settings, front_line: str, line: int, key: str
) -> None:
    if front_line.startswith(("title", "authors")):
        name = front_line.split(":", 1)[0]
        old = next(row for row in FRONT.splitlines() if row.startswith(name + ":"))
        front = FRONT.replace(old, front_line)
    else:
        front = FRONT.replace("status: ready\n", f"status: ready\n{front_line}\n")
    path = issue_from(settings, "## News\n\nText.\n", front=front)
    errors = [p for p in check_issue(path, settings) if p.is_error]
    assert [p.line for p in errors] == [line], errors
    assert f"{key} holds \\u" in errors[0].message
    assert "MJML" not in errors[0].message
    str(errors[0]).encode("utf-8")  # the message itself prints anywhere
    with pytest.raises(IssueError, match="half of a UTF-16 pair"):
        load_issue(path, settings)


@pytest.mark.parametrize("char", ["\x1b", "\uffff", "\x00", "\x7f"])
def test_control_characters_in_the_body_are_removed_with_a_warning(
    settings: Settings, char: str
) -> None:
    path = issue_from(settings, f"## News\n\nText {char}[31m here.\n")
    problems = check_issue(path, settings)
    assert [(p.severity, p.line) for p in problems] == [(Severity.WARNING, 9)], problems
    assert char not in Renderer(settings).render(load_issue(path, settings)).html


# -- dates outside what the calendar code takes ----------------------------------------------

_FIRST, _LAST = "0001-01-01 00:00", "9999-12-31 23:59"


@pytest.mark.parametrize(
    ("replace", "line", "key"),
    [
        (("date: 2026-11-20", "date: 0001-01-01"), 3, "date 0001-01-01"),
        (("date: 2026-11-20", "date: 9999-12-31"), 3, "date 9999-12-31"),
        (("date: 2026-11-20", "date: 1969-12-31"), 3, "date 1969-12-31"),
        (("status: ready", f"status: ready\nsend_at: {_FIRST}"), 6, f"send_at {_FIRST}"),
        (("status: ready", f"status: ready\nsend_at: {_LAST}"), 6, f"send_at {_LAST}"),
    ],
)
def test_out_of_range_dates_are_reported_by_check_and_refused_by_build(
    settings: Settings, tmp_path: Path, replace: tuple[str, str], line: int, key: str
) -> None:
    path = issue_from(settings, "## News\n\nText.\n", front=FRONT.replace(*replace))
    errors = [p for p in check_issue(path, settings) if p.is_error]
    assert [p.line for p in errors] == [line], errors
    assert errors[0].message.startswith(f"{key} is out of range")
    # build said nothing wrong and died in the sample message: "year 0 is out of range"
    result = run_cli(settings.source, "build", str(path), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert f"{path}:{line}: error: {key} is out of range" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_the_ends_of_the_date_range_are_fine(settings: Settings, tmp_path: Path) -> None:
    for day in ("1970-01-01", "9998-12-31"):
        front = FRONT.replace("date: 2026-11-20", f"date: {day}")
        path = issue_from(settings, "## News\n\nText.\n", front=front, name=f"{day}-edge.md")
        assert check_issue(path, settings) == [], day
        result = run_cli(settings.source, "build", str(path), "-o", str(tmp_path / "out"))
        assert result.exit_code == 0, result.stderr


def test_a_surrogate_in_a_key_still_gives_messages_that_print(settings: Settings) -> None:
    front = FRONT.replace("status: ready\n", 'status: ready\nhero:\n  "src\\ud800": x\n')
    path = issue_from(settings, "## News\n\nText.\n", front=front)
    errors = [p for p in check_issue(path, settings) if p.is_error]
    assert any("half of a UTF-16 pair" in p.message for p in errors), errors
    for problem in errors:
        str(problem).encode("utf-8")
    result = run_cli(settings.source, "check", str(path))
    assert result.exit_code == 1
    assert "Traceback" not in result.stdout + result.stderr


def _escaped(text: str) -> str:
    """``text`` as a YAML double-quoted scalar of escapes: any code point, surrogates too."""
    return '"' + "".join(f"\\U{ord(c):08x}" for c in text) + '"'


_ANY_CHARS = st.text(
    st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=None), min_size=1, max_size=12
)


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(title=_ANY_CHARS, author=_ANY_CHARS)
def test_any_character_in_front_matter_is_reported_before_rendering(
    settings: Settings, title: str, author: str
) -> None:
    front = FRONT.replace("title: Test issue", f"title: {_escaped(title)}").replace(
        "authors: [Ana Brook]", f"authors: [{_escaped(author)}]"
    )
    path = issue_from(settings, "## News\n\nText.\n", front=front)
    problems = check_issue(path, settings)
    for problem in problems:
        str(problem).encode("utf-8")  # prints anywhere
        assert "cannot render" not in problem.message, problem
    if not any(p.is_error for p in problems):
        html = Renderer(settings).render(load_issue(path, settings)).html
        html.encode("utf-8")
        assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]", html)
