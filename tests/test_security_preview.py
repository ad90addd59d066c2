"""The preview listens on loopback and answers only to loopback names, IPv6 included."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from newsletter.config import Settings
from newsletter.web.preview import allowed_hosts_for, create_preview_app
from tests.test_preview import issue_file  # noqa: F401  (fixture)


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
