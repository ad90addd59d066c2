"""The public app's guards (issue 15): headers on every route, /images, trusted hosts and the
slash redirects, form origins, forwarded addresses, malformed requests."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from newsletter.config import Serve, Settings, load_settings
from newsletter.errors import ConfigError
from newsletter.states import SubscriptionStatus
from newsletter.store.subscribers import (
    add_subscriber,
    ensure_lists,
    find_by_email,
)
from newsletter.tokens import TokenPurpose, make_token
from newsletter.web.admin.context import CSP as ADMIN_CSP
from newsletter.web.app import PER_IP_LIMIT, create_app
from newsletter.web.security import IMAGE_CSP, ForwardedHeaders, parse_networks
from tests.conftest import TEST_SECRET, FakeClock
from tests.smtpd import SMTPServer

SECRET = TEST_SECRET.encode()
BASE = "https://news.test.example"
FOREIGN = "https://evil.example"
FORM = {"content-type": "application/x-www-form-urlencoded"}
# what every answer carries, whatever route made it
EVERYWHERE = (
    "content-security-policy",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "permissions-policy",
    "cross-origin-opener-policy",
    "strict-transport-security",
)


def _statuses(engine: Engine, email: str) -> dict[str, SubscriptionStatus]:
    with engine.begin() as conn:
        found = find_by_email(conn, email)
    assert found is not None
    return {s.list_slug: s.status for s in found.subscriptions}


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "probe", path)


def _requests(app: Any) -> Iterator[tuple[str, str]]:
    """(method, path) for every route and mount of the app."""
    for route in app.routes:
        if isinstance(route, Route):
            for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                yield method, _concrete(route.path)
        elif isinstance(route, Mount):
            yield "GET", route.path + "/gauge.png"
            yield "GET", route.path + "/missing.png"
            yield "GET", route.path + "/admin.css"
        else:  # pragma: no cover - a new kind of route: this test must learn it
            raise AssertionError(f"unknown route type {route!r}")


def test_every_route_answers_with_the_security_headers(client: TestClient) -> None:
    app: Any = client.app
    seen = set()
    for method, path in _requests(app):
        response = client.request(method, path, headers={**FORM, "origin": BASE}, content=b"")
        assert response.status_code < 500, (method, path)
        missing = [h for h in EVERYWHERE if h not in response.headers]
        assert not missing, (method, path, response.status_code, missing)
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"
        if path.startswith("/admin"):
            # the dashboard's own strict policy, not the public pages'
            assert response.headers["content-security-policy"] == ADMIN_CSP, path
        assert response.headers.get_list("content-security-policy") == [
            response.headers["content-security-policy"]
        ]  # one policy, not two stacked
        seen.add(path)
    # a path no route takes gets them too
    missing_page = client.get("/no/such/page")
    assert missing_page.status_code == 404
    assert all(h in missing_page.headers for h in EVERYWHERE)
    assert {"/subscribe", "/archive", "/webhooks/ses", "/r/probe", "/admin/login"} <= seen


def test_hsts_only_when_the_site_is_https(web_settings: Settings, engine: Engine) -> None:
    plain = dataclasses.replace(
        web_settings,
        publication=dataclasses.replace(web_settings.publication, base_url="http://127.0.0.1:8000"),
    )
    with TestClient(create_app(plain, engine=engine), base_url="http://127.0.0.1:8000") as c:
        response = c.get("/subscribe")
    assert response.status_code == 200
    assert "strict-transport-security" not in response.headers
    assert response.headers["cross-origin-opener-policy"] == "same-origin"


def test_a_route_keeps_the_headers_it_set(client: TestClient) -> None:
    # the preferences page keeps its own policy (its URL holds a token: never sent off-site)
    page = client.get("/unsubscribe/not-a-token")
    assert page.headers["referrer-policy"] == "same-origin"
    assert page.headers["cache-control"] == "no-store"
    assert client.get("/subscribe").headers["referrer-policy"] == "strict-origin-when-cross-origin"


# --- /images ----------------------------------------------------------------------------------

SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>'


def test_images_serves_only_images_and_never_lets_one_run(
    client: TestClient, web_settings: Settings
) -> None:
    images = web_settings.issues_dir / "images"
    (images / "logo.svg").write_bytes(SVG)
    (images / "page.html").write_text("<script>alert(1)</script>")
    (images / "x.js").write_text("alert(1)")
    (images / "notes.txt").write_text("hello")
    (images / "LOUD.PNG").write_bytes((images / "gauge.png").read_bytes())
    (images / "sub").mkdir()

    svg = client.get("/images/logo.svg")
    assert svg.status_code == 200
    assert svg.headers["content-type"] == "image/svg+xml"
    assert svg.headers["x-content-type-options"] == "nosniff"
    assert svg.headers["content-security-policy"] == IMAGE_CSP
    assert IMAGE_CSP.startswith("sandbox; default-src 'none'")

    png = client.get("/images/gauge.png")
    assert (png.status_code, png.headers["content-type"]) == (200, "image/png")
    assert png.headers["x-content-type-options"] == "nosniff"
    assert client.get("/images/LOUD.PNG").headers["content-type"] == "image/png"

    for refused in ("page.html", "x.js", "notes.txt", "sub", "sub/", "", "%00", "a%00.png"):
        response = client.get(f"/images/{refused}")
        assert response.status_code in (400, 404), refused
        assert "<script>alert" not in response.text
    # a HEAD or a conditional request is held to the same list
    assert client.head("/images/page.html").status_code == 404


# --- trusted hosts and the trailing-slash redirects ------------------------------------------


def test_requests_for_another_host_are_refused(client: TestClient) -> None:
    for host in ("evil.example", "news.test.example.evil.example", "evil.example:443", ""):
        response = client.get("/subscribe", headers={"host": host})
        assert response.status_code == 400, host
    for host in (
        "news.test.example",
        "NEWS.test.example",
        "news.test.example:443",
        "news.test.example.",
        "127.0.0.1:8000",
        "localhost:8000",
        "[::1]:8000",
    ):
        assert client.get("/subscribe", headers={"host": host}).status_code == 200, host
    # a health check asks by the machine's address: it is not turned away for that
    assert client.get("/healthz", headers={"host": "10.1.2.3:8000"}).status_code != 400


def test_slash_redirects_go_to_base_url_never_to_the_host_header(client: TestClient) -> None:
    for host in ("127.0.0.1:8000", "news.test.example"):
        response = client.get("/subscribe/?list=business", headers={"host": host})
        assert response.status_code == 307
        assert response.headers["location"] == f"{BASE}/subscribe?list=business"
    evil = client.get("/subscribe/", headers={"host": "evil.example"})
    assert evil.status_code == 400
    assert "location" not in evil.headers
    # a path with a route of its own is served, not redirected; one with neither is a 404
    assert client.get("/archive/").status_code == 200
    assert client.get("/nothing/").status_code == 404
    # a 404 from inside a mount stays one (no redirect loop between /x and /x/)
    for path in ("/images/missing.png/", "/images/missing", "/images/_derived/x.png/"):
        response = client.get(path)
        assert (response.status_code, response.headers.get("location")) == (404, None), path


# --- form origins (CSRF) ----------------------------------------------------------------------


def test_subscribe_form_from_another_site_is_refused(
    client: TestClient, smtpd: SMTPServer, engine: Engine
) -> None:
    data = {"email": "csrf@example.org", "lists": "weekly"}
    for headers in (
        {"origin": FOREIGN},
        {"origin": "null"},  # what a page under Referrer-Policy: no-referrer makes it say
        {"referer": f"{FOREIGN}/page"},
        {"origin": "http://news.test.example"},  # same host, other scheme: another origin
        {"origin": f"{BASE}:8443"},
        {"origin": "https://news.test.example.evil.example"},
        {"origin": "https://user@evil.example"},
        {"origin": "https://news.test.example:99999"},
    ):
        response = client.post("/subscribe", data=data, headers=headers)
        assert response.status_code == 403, headers
        response = client.post("/subscribe", json=data, headers=headers)
        assert response.status_code == 403, headers
    assert smtpd.handler.messages == []
    with engine.begin() as conn:
        assert find_by_email(conn, "csrf@example.org") is None

    for headers in (
        {"origin": BASE},
        {"origin": f"{BASE}:443"},  # the default port, spelt out
        {"origin": "HTTPS://News.Test.Example"},
        {"referer": f"{BASE}/subscribe?list=weekly"},
        {},  # not a browser: curl, a server-side integration
    ):
        assert client.post("/subscribe", data=data, headers=headers).status_code == 200, headers


def test_configured_form_origins_may_post_the_subscribe_form(
    web_settings: Settings, engine: Engine, clock: FakeClock
) -> None:
    allowed = dataclasses.replace(
        web_settings, serve=Serve(form_origins=("https://www.test.example",))
    )
    with TestClient(create_app(allowed, engine=engine, clock=clock), base_url=BASE) as c:
        data = {"email": "embed@example.org"}
        ok = c.post("/subscribe", data=data, headers={"origin": "https://www.test.example"})
        assert ok.status_code == 200
        assert c.post("/subscribe", data=data, headers={"origin": FOREIGN}).status_code == 403


def test_confirm_and_join_buttons_check_the_origin(
    client: TestClient, engine: Engine, smtpd: SMTPServer
) -> None:
    # the confirmation link as mailed
    asked = client.post("/subscribe", data={"email": "p@example.org", "lists": "weekly"})
    assert asked.status_code == 200
    mailed = smtpd.handler.messages[-1].message.get_body(preferencelist=("plain",))
    assert mailed is not None
    found = re.search(r"https://news\.test\.example(/confirm/[A-Za-z0-9_-]+)", mailed.get_content())
    assert found is not None
    confirm = found.group(1)
    with engine.begin() as conn:
        ids = ensure_lists(conn, client.app.state.context.settings)  # type: ignore[attr-defined]
        reader = add_subscriber(conn, "r@example.org", list_ids=[ids["weekly"]])
    join = f"/join/{make_token(SECRET, TokenPurpose.JOIN, reader.uid, ids['business'])}"

    assert client.post(confirm, headers={"origin": FOREIGN}).status_code == 403
    assert client.post(join, headers={"referer": f"{FOREIGN}/x"}).status_code == 403
    assert _statuses(engine, "p@example.org") == {"weekly": SubscriptionStatus.UNCONFIRMED}
    assert "business" not in _statuses(engine, "r@example.org")

    assert client.post(confirm, headers={"origin": BASE}).status_code == 200
    assert client.post(join, headers={"origin": BASE}).status_code == 200
    assert _statuses(engine, "p@example.org") == {"weekly": SubscriptionStatus.CONFIRMED}
    assert _statuses(engine, "r@example.org")["business"] is SubscriptionStatus.CONFIRMED


def test_preferences_form_checks_the_origin_but_one_click_stays_exempt(
    client: TestClient, engine: Engine
) -> None:
    with engine.begin() as conn:
        ids = ensure_lists(conn, client.app.state.context.settings)  # type: ignore[attr-defined]
        reader = add_subscriber(conn, "u@example.org", list_ids=[ids["weekly"], ids["business"]])
    url = f"/unsubscribe/{make_token(SECRET, TokenPurpose.UNSUBSCRIBE, reader.uid, ids['weekly'])}"
    both = {"weekly": SubscriptionStatus.CONFIRMED, "business": SubscriptionStatus.CONFIRMED}

    refused = client.post(
        url, data={"action": "preferences", "keep": "weekly"}, headers={"origin": FOREIGN}
    )
    assert refused.status_code == 403
    refused = client.post(url, data={"action": "all"}, headers={"referer": f"{FOREIGN}/"})
    assert refused.status_code == 403
    assert _statuses(engine, "u@example.org") == both

    # RFC 8058: the mail provider posts from wherever it likes, and must be obeyed
    one_click = client.post(
        url, data={"List-Unsubscribe": "One-Click"}, headers={"origin": "https://mail.example"}
    )
    assert one_click.status_code == 200
    assert _statuses(engine, "u@example.org")["weekly"] is SubscriptionStatus.UNSUBSCRIBED

    own = client.post(url, data={"action": "preferences"}, headers={"origin": BASE})
    assert own.status_code == 200
    assert _statuses(engine, "u@example.org")["business"] is SubscriptionStatus.UNSUBSCRIBED


def test_webhooks_are_not_held_to_the_origin(client: TestClient) -> None:
    # providers post from their servers; their own signatures decide (here: none configured)
    response = client.post("/webhooks/postmark", content=b"{}", headers={"origin": FOREIGN})
    assert response.status_code != 403 or "another site" not in response.text


# --- forwarded addresses and the per-IP limit ------------------------------------------------


def _rotate(c: TestClient, count: int, *, same: bool = False) -> list[int]:
    codes = []
    for n in range(count):
        xff = "198.51.100.7" if same else f"198.51.100.{n % 250}, 203.0.113.{n % 250}"
        r = c.post(
            "/subscribe",
            data={"email": f"r{n}@example.org"},
            headers={"x-forwarded-for": xff},
        )
        codes.append(r.status_code)
    return codes


def test_rotating_x_forwarded_for_from_an_untrusted_peer_does_not_dodge_the_limit(
    web_settings: Settings, engine: Engine, clock: FakeClock, smtpd: SMTPServer
) -> None:
    app = create_app(web_settings, engine=engine, clock=clock)
    with TestClient(app, base_url=BASE, client=("192.0.2.50", 40000)) as c:
        codes = _rotate(c, PER_IP_LIMIT[0] + 5)
    assert codes.count(200) == PER_IP_LIMIT[0]
    assert codes[-5:] == [429] * 5


def test_a_trusted_proxy_reports_each_client_address(
    web_settings: Settings, engine: Engine, clock: FakeClock, smtpd: SMTPServer
) -> None:
    proxied = dataclasses.replace(web_settings, serve=Serve(trusted_proxies=("192.0.2.0/28",)))
    app = create_app(proxied, engine=engine, clock=clock)
    with TestClient(app, base_url=BASE, client=("192.0.2.3", 40000)) as c:
        # each request from another client: none is limited
        assert set(_rotate(c, PER_IP_LIMIT[0] + 5)) == {200}
        clock.now += PER_IP_LIMIT[1]
        # one client behind the proxy is still limited like any other
        codes = _rotate(c, PER_IP_LIMIT[0] + 2, same=True)
    assert codes.count(200) == PER_IP_LIMIT[0]
    assert codes[-2:] == [429, 429]


def _seen(trusted: tuple[str, ...], peer: str, headers: list[tuple[bytes, bytes]]) -> Any:
    """(client address, scheme) as the app behind :class:`ForwardedHeaders` sees them."""
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["client"] = scope["client"][0]
        seen["scheme"] = scope["scheme"]

    scope = {"type": "http", "client": (peer, 1), "scheme": "http", "headers": headers}
    asyncio.run(ForwardedHeaders(app, trusted=parse_networks(trusted))(scope, None, None))  # type: ignore[arg-type]
    return seen["client"], seen["scheme"]


def test_forwarded_headers_are_read_from_the_right_and_only_from_proxies() -> None:
    xff = [
        (b"x-forwarded-for", b"6.6.6.6, 203.0.113.9, 10.0.0.2"),
        (b"x-forwarded-proto", b"https"),
    ]
    # not trusted: the peer is the client, whatever it says
    assert _seen((), "10.0.0.1", xff) == ("10.0.0.1", "http")
    assert _seen(("10.0.0.0/8",), "192.0.2.1", xff) == ("192.0.2.1", "http")
    # two proxies of ours (10.0.0.1 talking, 10.0.0.2 before it): 203.0.113.9 is the client,
    # and what it claimed (6.6.6.6) is ignored
    assert _seen(("10.0.0.0/8",), "10.0.0.1", xff) == ("203.0.113.9", "https")
    assert _seen(("10.0.0.1", "10.0.0.2"), "10.0.0.1", xff) == ("203.0.113.9", "https")
    # several headers are one list; IPv6 and ports are understood
    many = [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"[2001:db8::5]:4711")]
    assert _seen(("::1",), "::1", many) == ("2001:db8::5", "http")
    # garbage where an address should be: stop believing, the proxy is the client
    junk = [(b"x-forwarded-for", b"<script>, nonsense")]
    assert _seen(("127.0.0.1",), "127.0.0.1", junk) == ("127.0.0.1", "http")
    assert _seen(("127.0.0.1",), "127.0.0.1", [(b"x-forwarded-proto", b"gopher")]) == (
        "127.0.0.1",
        "http",
    )


# --- malformed requests -----------------------------------------------------------------------


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert record.exc_info is None, record.getMessage()
        assert record.levelno < logging.ERROR, record.getMessage()
    assert "Traceback" not in caplog.text


def test_malformed_requests_get_a_4xx_and_no_traceback(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    json = {"content-type": "application/json"}
    nested = client.post("/subscribe", content=b"[" * 15_000, headers=json)
    assert nested.status_code == 400
    nested = client.post("/subscribe", content=b'{"email": ' + b"[" * 5000, headers=json)
    assert 400 <= nested.status_code < 500
    for body in (
        # a lone surrogate, percent-encoded (non-ASCII addresses are the subscribe checks')
        b"email=a%40example.org&name=%ED%A0%80",
        b"email=a%40example.org&name=\xed\xa0\x80\xff",  # and raw
        b"email=a%40example.org&lists=%FF",
    ):
        response = client.post("/subscribe", content=body, headers=FORM)
        assert response.status_code < 500, body
    bad_json = b'{"email": "\\ud800@example.org"}'
    assert client.post("/subscribe", content=bad_json, headers=json).status_code == 400
    for path in (
        "/unsubscribe/%ED%A0%80",
        "/confirm/%FF%FE",
        "/join/%00",
        "/archive/%ED%A0%80",
        "/subscribe?list=%ED%A0%80",
        "/archive?list=%FF%00",
        "/archive?list=%FF",
        "/archive/%00",
        "/archive/weekly/%00x",
        "/r/%ED",
        "/images/%ED%A0%80.png",
    ):
        response = client.get(path)
        assert 200 <= response.status_code < 500, path
    _no_tracebacks(caplog)


def test_a_client_that_hangs_up_mid_body_is_not_an_error(
    web_settings: Settings, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = create_app(web_settings, engine=engine)
    sent: list[dict[str, Any]] = []
    chunks = iter(
        [{"type": "http.request", "body": b"email=a%40exa", "more_body": True}]
        + [{"type": "http.disconnect"}] * 3
    )

    async def receive() -> dict[str, Any]:
        return next(chunks)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": "/subscribe",
        "raw_path": b"/subscribe",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"news.test.example"),
            (b"content-type", FORM["content-type"].encode()),
            (b"content-length", b"100"),
        ],
        "client": ("192.0.2.1", 40000),
        "server": ("news.test.example", 443),
    }
    asyncio.run(app(scope, receive, send))  # no exception escapes to the server
    assert not any(m["type"] == "http.response.start" and m["status"] >= 500 for m in sent)
    _no_tracebacks(caplog)
    assert "went away" in caplog.text


# --- the [serve] settings ---------------------------------------------------------------------

SERVE_CONFIG = """
[publication]
name = "Weekly"
sender = "Weekly <w@example.org>"
postal_address = "1 Street"
base_url = "https://news.example.org"
"""


def _load_serve(tmp_path: Path, table: str = "", **env: str) -> Serve:
    path = tmp_path / "newsletter.toml"
    path.write_text(SERVE_CONFIG + ("\n[serve]\n" + table if table else ""), encoding="utf-8")
    return load_settings(path, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET, **env}).serve


def test_serve_settings_have_safe_defaults_and_read_lists(tmp_path: Path) -> None:
    assert _load_serve(tmp_path) == Serve()
    assert Serve().trusted_proxies == ()  # nobody's X-Forwarded-For is believed by default
    serve = _load_serve(
        tmp_path,
        'trusted_proxies = ["127.0.0.1", "10.0.0.0/8", "::1"]\n'
        'form_origins = ["https://www.example.org"]\nheader_timeout = 5\nmax_connections = 50\n',
    )
    assert serve.trusted_proxies == ("127.0.0.1", "10.0.0.0/8", "::1")
    assert serve.form_origins == ("https://www.example.org",)
    assert (serve.header_timeout, serve.body_timeout, serve.max_connections) == (5.0, 30.0, 50)
    from_env = _load_serve(tmp_path, NEWSLETTER_SERVE_TRUSTED_PROXIES="192.0.2.1, 192.0.2.2")
    assert from_env.trusted_proxies == ("192.0.2.1", "192.0.2.2")


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ('trusted_proxies = ["proxy.example"]\n', "serve.trusted_proxies"),
        ("trusted_proxies = [1]\n", "serve.trusted_proxies"),
        ('form_origins = ["www.example.org"]\n', "serve.form_origins"),
        ('form_origins = ["https://www.example.org/page"]\n', "serve.form_origins"),
        ("header_timeout = 0\n", "serve.header_timeout"),
        ("body_timeout = -1\n", "serve.body_timeout"),
        ("max_connections = 0\n", "serve.max_connections"),
        ("trusted_proxy = []\n", "serve.trusted_proxy"),
    ],
)
def test_bad_serve_settings_name_their_key(tmp_path: Path, table: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load_serve(tmp_path, table)
    assert info.value.key == key
