"""The dashboard's security through the real app: no page without a session, login bypass,
session fixation, CSRF, brute force, XSS from imported data, and ids in URLs (both databases)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from newsletter.config import Settings
from newsletter.store.importing import import_csv
from newsletter.store.issues import start_issue
from newsletter.store.schema import admin_sessions
from newsletter.store.subscribers import add_subscriber, find_by_email
from newsletter.web.app import create_app
from tests.admin_helpers import EDITOR, PASSWORD, csrf_of, make_editor, sign_in
from tests.conftest import FakeClock

ADMIN_PUBLIC = ("/admin/login", "/admin/static")
HOST = "news.test.example"


def admin_routes(client: TestClient) -> list[tuple[str, set[str]]]:
    """Every route of the app under /admin (paths with placeholders), with its methods."""
    found: list[tuple[str, set[str]]] = []

    def walk(routes: list[object], prefix: str = "") -> None:
        for route in routes:
            if isinstance(route, Route):
                found.append((prefix + route.path, set(route.methods or ())))
            elif isinstance(route, Mount):
                if route.routes:
                    walk(list(route.routes), prefix + route.path)
                else:
                    found.append((prefix + route.path + "/{path}", {"GET"}))

    walk(list(client.app.routes))  # type: ignore[attr-defined]
    return [(p, m) for p, m in found if p == "/admin" or p.startswith("/admin/")]


def filled(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


@pytest.fixture
def editor(engine: Engine, lists: dict[str, int]) -> str:
    make_editor(engine)
    return EDITOR


@pytest.fixture
def signed_in(client: TestClient, editor: str) -> TestClient:
    r = sign_in(client)
    assert r.status_code == 303  # type: ignore[attr-defined]
    return client


def test_the_app_has_dashboard_pages(client: TestClient) -> None:
    paths = {p for p, _ in admin_routes(client)}
    # the enumeration below must see the real pages, or it would prove nothing
    assert {"/admin", "/admin/issues/{list}/{slug}", "/admin/subscribers/{uid}/{action}"} <= paths


def test_no_admin_page_answers_without_a_session(client: TestClient, editor: str) -> None:
    for path, methods in admin_routes(client):
        if path.startswith(ADMIN_PUBLIC):
            continue
        url = filled(path)
        for method in methods - {"HEAD"}:
            for cookies in ({}, {"__Host-newsletter_admin": "forged-session-id"}):
                client.cookies.clear()
                for name, value in cookies.items():
                    client.cookies.set(name, value, domain=HOST)
                r = client.request(method, url)
                if method == "GET":
                    assert r.status_code == 303, (method, url)
                    assert r.headers["location"].startswith("/admin/login")
                else:
                    assert r.status_code == 403, (method, url)
                assert "content-security-policy" in r.headers
                assert "x" * 3 not in r.text


def test_every_form_is_refused_without_its_csrf_token(signed_in: TestClient) -> None:
    client = signed_in
    for path, methods in admin_routes(client):
        if "POST" not in methods or path.startswith(ADMIN_PUBLIC):
            continue
        url = filled(path)
        for data in ({}, {"csrf": "guess", "confirm": "yes"}):
            r = client.post(url, data=data)
            assert r.status_code == 403, (url, data)
    # still signed in: nothing above logged the editor out
    assert client.get("/admin").status_code == 200


def test_a_form_from_another_origin_is_refused_even_with_the_token(
    signed_in: TestClient, engine: Engine, lists: dict[str, int]
) -> None:
    client = signed_in
    with engine.begin() as conn:
        person = add_subscriber(conn, "victim@example.org", list_ids=[lists["weekly"]])
    page = client.get(f"/admin/subscribers/{person.uid}/erase")
    token = csrf_of(page.text)
    r = client.post(
        f"/admin/subscribers/{person.uid}/erase",
        data={"csrf": token, "confirm": "yes"},
        headers={"origin": "https://evil.example"},
    )
    assert r.status_code == 403
    with engine.connect() as conn:
        assert find_by_email(conn, "victim@example.org") is not None


def test_login_bypass_attempts_fail(client: TestClient, editor: str, engine: Engine) -> None:
    for email, password in (
        (EDITOR, "wrong password entirely"),
        ("nobody@test.example", PASSWORD),
        (EDITOR, ""),
        ("' OR 1=1 --", "' OR 1=1 --"),
        (EDITOR.upper(), PASSWORD + " "),
    ):
        r = sign_in(client, email, password)
        assert r.status_code == 401, (email, password)  # type: ignore[attr-defined]
        assert client.get("/admin").status_code == 303
    # the login form without its token (a post from another site) is refused before anything
    r = client.post("/admin/login", data={"email": EDITOR, "password": PASSWORD})
    assert r.status_code == 403
    # the same email differently cased and spaced is the same account
    r = sign_in(client, "  Editor@Test.Example ", PASSWORD)
    assert r.status_code == 303  # type: ignore[attr-defined]


def test_session_cookie_attributes_and_fixation(
    client: TestClient, editor: str, engine: Engine
) -> None:
    planted = "planted-by-an-attacker-0123456789"
    client.cookies.set("__Host-newsletter_admin", planted, domain=HOST)
    r = sign_in(client)
    cookie = r.headers["set-cookie"]  # type: ignore[attr-defined]
    assert cookie.startswith("__Host-newsletter_admin=")
    for flag in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"):
        assert flag.lower() in cookie.lower()
    issued = client.cookies.get("__Host-newsletter_admin")
    assert issued
    assert issued != planted
    first = issued
    # signing in again in the same browser ends the first session (rotated, not reused)
    sign_in(client)
    second = client.cookies.get("__Host-newsletter_admin")
    assert second
    assert second != first
    client.cookies.set("__Host-newsletter_admin", first, domain=HOST)
    assert client.get("/admin").status_code == 303
    client.cookies.set("__Host-newsletter_admin", second, domain=HOST)
    assert client.get("/admin").status_code == 200
    # the database holds only hashes of session ids
    with engine.connect() as conn:
        stored = set(conn.execute(select(admin_sessions.c.id_hash)).scalars())
    assert second not in stored
    assert first not in stored


def test_logout_ends_the_session(signed_in: TestClient) -> None:
    client = signed_in
    held = client.cookies.get("__Host-newsletter_admin")
    token = csrf_of(client.get("/admin").text)
    r = client.post("/admin/logout", data={"csrf": token})
    assert r.status_code == 303
    client.cookies.set("__Host-newsletter_admin", held or "", domain=HOST)
    assert client.get("/admin").status_code == 303


def test_sessions_expire_and_idle_out(signed_in: TestClient, engine: Engine) -> None:
    client = signed_in
    with engine.begin() as conn:
        conn.execute(update(admin_sessions).values(seen_at=datetime.now(UTC) - timedelta(hours=2)))
    assert client.get("/admin").status_code == 303
    sign_in(client)
    with engine.begin() as conn:
        conn.execute(
            update(admin_sessions).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert client.get("/admin").status_code == 303


@pytest.mark.slow
def test_brute_force_is_limited_per_account_and_per_address(
    settings: Settings, clock: FakeClock
) -> None:
    # the limits live in the process, whatever the database: SQLite only, and two attempts
    # per account (eight per address) so the test hashes few passwords
    from dataclasses import replace

    from newsletter.config import Admin
    from newsletter.store.database import make_engine, migrate

    engine = make_engine(settings.database_url)
    migrate(engine)
    make_editor(engine)
    make_editor(engine, "second@test.example")
    strict = replace(settings, admin=Admin(login_attempts=2))
    app = create_app(strict, engine=engine, clock=clock)
    with TestClient(app, base_url="https://news.test.example", follow_redirects=False) as client:
        for _ in range(2):
            assert sign_in(client, EDITOR, "not the password!!").status_code == 401  # type: ignore[attr-defined]
        # past the limit even the right password is refused, without being checked
        r = sign_in(client, EDITOR, PASSWORD)
        assert r.status_code == 429  # type: ignore[attr-defined]
        assert "Too many failed attempts" in r.text  # type: ignore[attr-defined]
        assert client.get("/admin").status_code == 303
        # another account from the same address still works (the address limit is looser) ...
        assert sign_in(client, "second@test.example", PASSWORD).status_code == 303  # type: ignore[attr-defined]
        # ... until the address itself has failed too often, on any accounts
        for i in range(6):
            sign_in(client, f"guess{i}@test.example", "not the password!!")
        assert sign_in(client, "second@test.example", PASSWORD).status_code == 429  # type: ignore[attr-defined]
        # fifteen minutes later the account may try again
        clock.now += 15 * 60 + 1
        assert sign_in(client, EDITOR, PASSWORD).status_code == 303  # type: ignore[attr-defined]
    engine.dispose()


def test_names_and_attributes_from_a_csv_import_are_escaped_everywhere(
    signed_in: TestClient, engine: Engine, lists: dict[str, int], tmp_path: Path
) -> None:
    csv = tmp_path / "people.csv"
    csv.write_text(
        'email,name,company,"<b>col</b>"\n'
        'xss@example.org,"<script>alert(1)</script>","""><img src=x onerror=alert(2)>",'
        '"<svg onload=alert(3)>"\n',
        encoding="utf-8",
    )
    report = import_csv(
        engine, csv, list_id=lists["weekly"], list_slug="weekly", on_reject=lambda r: None
    )
    assert report.added == 1
    client = signed_in
    with engine.connect() as conn:
        person = find_by_email(conn, "xss@example.org")
    assert person is not None
    pages = [
        client.get("/admin/subscribers", params={"q": "xss"}).text,
        client.get(f"/admin/subscribers/{person.uid}").text,
        client.get(f"/admin/subscribers/{person.uid}/erase").text,
        client.get(f"/admin/subscribers/{person.uid}/unsubscribe", params={"list": "weekly"}).text,
    ]
    for html in pages:
        for raw in ("<script>alert(1)", "<img src=x", "<svg onload", "<b>col</b>"):
            assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[1]
    assert "&lt;svg onload=alert(3)&gt;" in pages[1]
    assert "&lt;b&gt;col&lt;/b&gt;" in pages[1]


def test_ids_in_urls_reach_only_what_the_account_covers(
    client: TestClient,
    engine: Engine,
    lists: dict[str, int],
    web_settings: Settings,
) -> None:
    make_editor(engine, "business@test.example", lists=["business"])
    with engine.begin() as conn:
        weekly_only = add_subscriber(conn, "weekly@example.org", list_ids=[lists["weekly"]])
        both = add_subscriber(
            conn, "both@example.org", list_ids=[lists["weekly"], lists["business"]]
        )
    now = datetime.now(UTC)
    for slug, list_slug in (("weekly-issue", "weekly"), ("business-issue", "business")):
        start_issue(
            engine,
            slug=slug,
            list_id=lists[list_slug],
            list_slug=list_slug,
            title=f"Title of {slug}",
            subject="s",
            issue_date=now.date(),
            html="<p>x</p>",
            text="x",
            now=now,
        )
    assert sign_in(client, "business@test.example", PASSWORD).status_code == 303  # type: ignore[attr-defined]
    assert client.get("/admin/issues/business/business-issue").status_code == 200
    assert client.get("/admin/issues/weekly/weekly-issue").status_code == 404
    assert client.get("/admin/issues/business/weekly-issue").status_code == 404
    listing = client.get("/admin").text
    assert "Title of business-issue" in listing
    assert "Title of weekly-issue" not in listing
    assert client.get(f"/admin/subscribers/{weekly_only.uid}").status_code == 404
    assert (
        "weekly@example.org" not in client.get("/admin/subscribers", params={"q": "example"}).text
    )
    # a person on both lists: only the covered list's subscription and actions
    page = client.get(f"/admin/subscribers/{both.uid}").text
    assert "The Test Weekly" not in page.split("<h2>Lists</h2>")[1].split("<h2>")[0]
    assert client.get(f"/admin/subscribers/{both.uid}/unsubscribe?list=weekly").status_code == 404
    token = csrf_of(client.get(f"/admin/subscribers/{both.uid}/unsubscribe?list=business").text)
    for action in ("suppress", "erase"):
        assert client.get(f"/admin/subscribers/{both.uid}/{action}").status_code == 403
        r = client.post(
            f"/admin/subscribers/{both.uid}/{action}", data={"csrf": token, "confirm": "yes"}
        )
        assert r.status_code == 403
    r = client.post(
        f"/admin/subscribers/{both.uid}/unsubscribe",
        data={"csrf": token, "confirm": "yes", "list": "weekly"},
    )
    assert r.status_code == 404
    growth = client.get("/admin/growth", params={"list": "weekly"}).text
    assert "Business Brief" in growth
    assert "<h2>The Test Weekly</h2>" not in growth
    # row ids and addresses are not names for people in URLs
    for guess in ("1", "2", str(both.id), "both@example.org"):
        assert client.get(f"/admin/subscribers/{guess}").status_code == 404
    with engine.connect() as conn:
        still = find_by_email(conn, "both@example.org")
    assert still is not None
    assert {s.list_slug for s in still.active_subscriptions} == {"weekly", "business"}


def test_an_http_base_url_keeps_the_cookie_on_the_dashboard_path(
    engine: Engine, web_settings: Settings, lists: dict[str, int]
) -> None:
    from dataclasses import replace

    plain = replace(
        web_settings,
        publication=replace(web_settings.publication, base_url="http://127.0.0.1:8000"),
    )
    make_editor(engine)
    with TestClient(
        create_app(plain, engine=engine), base_url="http://127.0.0.1:8000", follow_redirects=False
    ) as client:
        r = sign_in(client)
        cookie = r.headers["set-cookie"]  # type: ignore[attr-defined]
    assert cookie.startswith("newsletter_admin=")
    assert "secure" not in cookie.lower()
    assert "path=/admin" in cookie.lower()


def test_a_session_of_a_removed_account_is_gone(signed_in: TestClient, engine: Engine) -> None:
    from newsletter.store.accounts import remove_editor

    with engine.begin() as conn:
        remove_editor(conn, EDITOR)
    assert signed_in.get("/admin").status_code == 303
