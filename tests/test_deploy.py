"""The deployment recipe: ``/healthz`` over real HTTP, the systemd units under
``systemd-analyze verify``, the nginx site under ``nginx -t`` and in front of the real app.

``systemd-analyze`` and ``nginx`` are Debian's; without them those tests skip with the reason,
unless ``NEWSLETTER_REQUIRE_SYSTEMD=1`` / ``NEWSLETTER_REQUIRE_NGINX=1`` (set by ``.ci/run``)
make that a failure.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from sqlalchemy import Engine

from newsletter.config import Settings
from newsletter.store.database import make_engine
from newsletter.web.app import create_app
from tests.serving import serving


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_healthz_answers_ok_when_the_database_does(web_settings: Settings, engine: Engine) -> None:
    with serving(create_app(web_settings, engine=engine)) as port:
        status, headers, body = get(f"http://127.0.0.1:{port}/healthz")
    assert status == 200
    assert json.loads(body) == {"status": "ok"}
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"


def test_healthz_is_503_without_a_database_and_says_nothing_more(
    web_settings: Settings, tmp_path: str
) -> None:
    # a SQLite file in a folder that does not exist: every connection fails
    url = f"sqlite:///{tmp_path}/missing/dir/secret-name.db"
    broken = make_engine(url)
    try:
        with serving(create_app(web_settings, engine=broken)) as port:
            status, _, body = get(f"http://127.0.0.1:{port}/healthz")
    finally:
        broken.dispose()
    assert status == 503
    assert json.loads(body) == {"status": "unavailable"}
    assert b"secret-name" not in body
    assert b"sqlite" not in body.lower()
