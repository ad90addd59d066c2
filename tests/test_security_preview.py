"""The preview listens on loopback and answers only to loopback names, IPv6 included.

One hostile or unreadable issue file (a lone surrogate, a year-1 date, a pipe) never takes a
page down: the index lists every issue and the broken one with its error; odd paths are 404s.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from newsletter.checks import Inspection
from newsletter.config import Settings
from newsletter.diagnostics import Problem, Severity
from newsletter.web import preview as preview_module
from newsletter.web.preview import allowed_hosts_for, create_preview_app
from tests.test_preview import issue_file  # noqa: F401  (fixture)
from tests.test_security_files import _get

LOCAL = "http://127.0.0.1:8001"
HOST = b"127.0.0.1:8001"


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        ("127.0.0.1", {"127.0.0.1", "localhost"}),
        ("localhost", {"127.0.0.1", "localhost"}),
        ("127.0.0.2", {"127.0.0.1", "localhost", "127.0.0.2"}),
        ("::1", {"127.0.0.1", "localhost", "[::1]"}),
        ("[::1]", {"127.0.0.1", "localhost", "[::1]"}),
        ("0.0.0.0", {"*"}),
        ("::", {"*"}),
        ("192.0.2.7", {"*"}),
        ("editor-laptop.example", {"*"}),
    ],
)
def test_host_check_follows_the_interface(bind: str, expected: set[str]) -> None:
    assert set(allowed_hosts_for(bind)) == expected


def test_ipv6_loopback_keeps_the_rebinding_guard(
    settings: Settings,
    issue_file: Path,  # noqa: F811
) -> None:
    app = create_preview_app(settings, watch_files=False, allowed_hosts=allowed_hosts_for("::1"))
    assert TestClient(app, base_url="http://[::1]:8001").get("/").status_code == 200
    refused = TestClient(app, base_url="http://rebound.attacker.example:8001").get("/")
    assert refused.status_code == 400


# -- hostile issue files --------------------------------------------------------------------

GOOD = "2026-11-27-preview-test"
FRONT = "---\ntitle: {title}\ndate: {date}\nauthors: [Ann]\nstatus: ready\n---\n\n## A\n\nText.\n"
# file name -> (its bytes, words its error must contain)
HOSTILE: dict[str, tuple[bytes, str]] = {
    "2026-11-20-surrogate": (
        FRONT.format(title=r'"Half \ud800 a pair"', date="2026-11-20").encode(),
        "half of a UTF-16 pair",
    ),
    "2026-11-21-year-one": (
        FRONT.format(title="Old", date="0001-01-01").encode(),
        "date 0001-01-01 is out of range",
    ),
    "2026-11-22-not-utf8": (
        FRONT.format(title="T", date="2026-11-22").encode() + b"\xed\xa0\x80\xff\n",
        "not UTF-8 text",
    ),
}


def _rows(html: str) -> dict[str, str]:
    return {
        m.group(1): m.group(2)
        for m in re.finditer(r'<tr data-issue="([^"]+)">(.*?)</tr>', html, re.DOTALL)
    }


@pytest.fixture
def hostile(settings: Settings, issue_file: Path) -> Iterator[Settings]:  # noqa: F811
    for name, (data, _words) in HOSTILE.items():
        (settings.issues_dir / f"{name}.md").write_bytes(data)
    pipe = settings.issues_dir / "2026-11-23-pipe.md"
    os.mkfifo(pipe)
    (settings.issues_dir / "2026-11-24-zero.md").symlink_to("/dev/zero")
    yield settings
    with contextlib.suppress(OSError):  # a reader blocked in open() (the bug) is let go
        os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))


def test_the_index_lists_every_issue_and_each_broken_one_with_its_error(
    hostile: Settings,
) -> None:
    client = TestClient(create_preview_app(hostile, watch_files=False), base_url=LOCAL)
    page = client.get("/")
    assert page.status_code == 200
    rows = _rows(page.text)
    assert set(rows) == {p.stem for p in hostile.issues_dir.glob("*.md")}
    assert "passes" in rows[GOOD]
    for name, (_data, words) in HOSTILE.items():
        assert "fails" in rows[name], name
        assert words in rows[name], (name, rows[name])
    for name in ("2026-11-23-pipe", "2026-11-24-zero"):
        assert "is not a regular file" in rows[name]


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_issue_shows_its_problems_not_a_500(hostile: Settings, name: str) -> None:
    client = TestClient(create_preview_app(hostile, watch_files=False), base_url=LOCAL)
    page = client.get(f"/issues/{name}")
    assert page.status_code == 200
    assert HOSTILE[name][1] in page.text
    assert client.get(f"/issues/{name}/email").status_code == 200
    assert client.get(f"/issues/{name}/message.eml").status_code == 409


def test_a_crash_on_one_file_leaves_the_others_listed(
    settings: Settings,
    issue_file: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bad = settings.issues_dir / "2026-11-20-crash.md"
    bad.write_text(FRONT.format(title="Crash", date="2026-11-20"), encoding="utf-8")
    real = preview_module.inspect_issue

    def check(path: Path, *args: Any, **kwargs: Any) -> Inspection:
        if path == bad:
            raise RuntimeError("a bug \ud800 in check")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(preview_module, "inspect_issue", check)
    client = TestClient(create_preview_app(settings, watch_files=False), base_url=LOCAL)
    page = client.get("/")
    assert page.status_code == 200
    rows = _rows(page.text)
    assert "passes" in rows[GOOD]
    assert "cannot preview: RuntimeError: a bug \\ud800 in check" in rows["2026-11-20-crash"]
    assert client.get("/issues/2026-11-20-crash").status_code == 200


def test_a_lone_surrogate_that_reaches_a_page_is_replaced_not_a_500(
    settings: Settings,
    issue_file: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # whatever the parser lets through, the page is still sent (UnicodeEncodeError was a 500)
    def check(path: Path, *args: Any, **kwargs: Any) -> Inspection:
        return Inspection((Problem(path, 1, Severity.ERROR, "odd \udcff here"),))

    monkeypatch.setattr(preview_module, "inspect_issue", check)
    client = TestClient(create_preview_app(settings, watch_files=False), base_url=LOCAL)
    for url in ("/", f"/issues/{GOOD}"):
        page = client.get(url)
        assert page.status_code == 200, url
        assert "odd ? here" in page.text


@pytest.mark.parametrize(
    "raw_path", ["/images/%00", "/images/a%00.png", "/images/_derived/%00", "/images/" + "a" * 300]
)
def test_odd_image_paths_are_not_found_not_a_500(settings: Settings, raw_path: str) -> None:
    status, _body = _get(create_preview_app(settings, watch_files=False), raw_path, HOST)
    assert status == 404


def test_every_preview_page_carries_the_headers_a_local_tool_can(
    settings: Settings,
    issue_file: Path,  # noqa: F811
) -> None:
    name = issue_file.stem
    with TestClient(create_preview_app(settings, watch_files=False), base_url=LOCAL) as client:
        for url in ("/", f"/issues/{name}", f"/issues/{name}/email", f"/issues/{name}/message.eml"):
            answer = client.get(url)
            assert answer.status_code == 200, url
            for header, value in preview_module.PREVIEW_HEADERS.items():
                assert answer.headers[header] == value, (url, header)
        # the page frames its own email: same origin, never another site
        assert answer.headers["X-Frame-Options"] == "SAMEORIGIN"
