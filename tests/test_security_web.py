"""Security review of the public web app: request size, rate limits, escaping, token purposes."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from newsletter.config import Settings
from newsletter.emails import build_confirmation
from newsletter.states import SubscriptionStatus
from newsletter.store.subscribers import (
    add_subscriber,
    ensure_lists,
    find_by_email,
    list_ids,
    request_subscription,
    unsubscribe,
)
from newsletter.tokens import TokenPurpose, make_token
from newsletter.web.app import PER_ADDRESS_LIMIT, PER_IP_LIMIT, create_app
from newsletter.web.context import MAX_BODY_BYTES, page_environment
from tests.conftest import TEST_SECRET, FakeClock
from tests.smtpd import SMTPServer

SECRET = TEST_SECRET.encode()


def _post_streamed(
    app: Any,
    chunks: int,
    chunk_size: int,
    headers: list[tuple[bytes, bytes]],
    path: str = "/subscribe",
) -> tuple[int, int]:
    """POST ``path`` straight through ASGI; (status, request chunks the app pulled)."""
    pulled = 0
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        if pulled > chunks:
            return {"type": "http.disconnect"}
        return {
            "type": "http.request",
            "body": b"a" * chunk_size,
            "more_body": pulled < chunks,
        }

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": path,
        "raw_path": path.encode("ascii"),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"news.test.example"), *headers],
        "client": ("192.0.2.1", 40000),
        "server": ("news.test.example", 443),
    }
    asyncio.run(app(scope, receive, send))
    return status, pulled


@pytest.mark.parametrize(
    "content_type", [b"application/x-www-form-urlencoded", b"application/json"]
)
def test_oversized_subscribe_body_is_refused_without_reading_it_all(
    web_settings: Settings, engine: Engine, content_type: bytes
) -> None:
    app = create_app(web_settings, engine=engine)
    # 64 MiB announced by nobody (chunked): the app must stop pulling soon after the limit
    status, pulled = _post_streamed(app, 1024, 64 * 1024, [(b"content-type", content_type)])
    assert status == 413
    assert pulled * 64 * 1024 <= MAX_BODY_BYTES + 64 * 1024

    # and a body that says up front it is too large is refused before any of it is read
    status, pulled = _post_streamed(
        app,
        1024,
        64 * 1024,
        [(b"content-type", content_type), (b"content-length", str(64 * 1024 * 1024).encode())],
    )
    assert status == 413
    assert pulled == 0


def test_oversized_unsubscribe_post_is_refused_without_reading_it_all(
    web_settings: Settings, engine: Engine
) -> None:
    # anyone on the list holds a valid token; it must not buy unbounded reads either
    with engine.begin() as conn:
        ids = ensure_lists(conn, web_settings)
        reader = add_subscriber(conn, "reader@example.org", list_ids=[ids["weekly"]])
    token = make_token(SECRET, TokenPurpose.UNSUBSCRIBE, reader.uid, ids["weekly"])
    app = create_app(web_settings, engine=engine)
    status, pulled = _post_streamed(
        app,
        1024,
        64 * 1024,
        [(b"content-type", b"application/x-www-form-urlencoded")],
        path=f"/unsubscribe/{token}",
    )
    assert status == 413
    assert pulled * 64 * 1024 <= MAX_BODY_BYTES + 64 * 1024


def test_confirmation_email_carries_no_text_chosen_by_the_requester(
    client: TestClient, smtpd: SMTPServer
) -> None:
    # whoever fills in the form picks the name, and the email goes to someone else's address:
    # the publication must not deliver their words (a phishing line, a link) to that inbox
    lure = "Your account is locked, call 555-0100 or visit evil.example/verify"
    r = client.post("/subscribe", data={"email": "victim@example.org", "name": lure})
    assert r.status_code == 200
    (received,) = smtpd.handler.messages
    raw = received.data.decode("utf-8", "replace")
    message = received.message
    assert str(message["To"]) == "victim@example.org"
    for part in message.walk():
        if part.get_content_maintype() == "text":
            assert "evil.example" not in part.get_content()
            assert "555-0100" not in part.get_content()
    assert "evil" not in raw


def _subscribe_from(app: Any, client_ip: str, email: str) -> int:
    """POST the form from ``client_ip`` (what uvicorn puts in the scope); the status."""
    body = f"email={email}".encode()
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

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
            (b"content-type", b"application/x-www-form-urlencoded"),
        ],
        "client": (client_ip, 40000),
        "server": ("news.test.example", 443),
    }
    asyncio.run(app(scope, receive, send))
    return status


def test_per_ip_limit_takes_an_ipv6_client_by_its_64_prefix(
    web_settings: Settings, engine: Engine
) -> None:
    # one IPv6 subscriber line is a /64: rotating the interface id must not reset the count
    limit = PER_IP_LIMIT[0]
    app = create_app(web_settings, engine=engine, mailer=NoMail(), clock=FakeClock())
    statuses = [
        _subscribe_from(app, f"2001:db8:1:2::{i:x}", f"p{i}@example.org") for i in range(limit + 5)
    ]
    assert statuses[:limit] == [200] * limit
    assert set(statuses[limit:]) == {429}
    # a neighbour on another /64 and IPv4 clients keep their own allowance
    assert _subscribe_from(app, "2001:db8:1:3::1", "q@example.org") == 200
    assert _subscribe_from(app, "192.0.2.1", "r@example.org") == 200
    assert _subscribe_from(app, "192.0.2.2", "s@example.org") == 200


class NoMail:
    async def send(self, message: object) -> None:
        return None


def test_form_and_json_under_the_limit_still_work(client: TestClient, smtpd: SMTPServer) -> None:
    r = client.post("/subscribe", data={"email": "ok@example.org", "name": "x" * 1000})
    assert r.status_code == 200
    r = client.post("/subscribe", json={"email": "ok2@example.org"})
    assert r.status_code == 202
    assert sorted(m.rcpt_tos[0] for m in smtpd.handler.messages) == [
        "ok2@example.org",
        "ok@example.org",
    ]


def test_per_address_limit_cannot_be_dodged_by_case_or_plus_tags(
    client: TestClient, smtpd: SMTPServer
) -> None:
    # every variation lands in the same mailbox; the mailbox owner gets at most the limit
    limit = PER_ADDRESS_LIMIT[0]
    variations = [
        "victim@example.org",
        "VICTIM@Example.org",
        "victim+1@example.org",
        "Victim+news@example.org",
        "victim+a+b@example.org",
        "victim+2@EXAMPLE.ORG",
    ]
    for address in variations:
        r = client.post("/subscribe", data={"email": address})
        assert r.status_code == 200  # the same answer either way
    assert len(smtpd.handler.messages) == limit


def test_confirm_and_unsubscribe_tokens_do_not_stand_in_for_each_other(
    client: TestClient, engine: Engine, web_settings: Settings
) -> None:
    with engine.begin() as conn:
        ids = ensure_lists(conn, web_settings)
        reader = add_subscriber(conn, "reader@example.org", list_ids=[ids["weekly"]])
    confirm = make_token(SECRET, TokenPurpose.CONFIRM, reader.uid, ids["weekly"])
    leave = make_token(SECRET, TokenPurpose.UNSUBSCRIBE, reader.uid, ids["weekly"])
    assert client.get(f"/unsubscribe/{confirm}").status_code == 400
    r = client.post(f"/unsubscribe/{confirm}", data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 400
    assert client.get(f"/confirm/{leave}").status_code == 400


def test_unsubscribe_page_escapes_what_the_subscriber_chose(
    client: TestClient, engine: Engine, web_settings: Settings
) -> None:
    # the page shows the (masked) address and list names; nothing from the store is markup
    with engine.begin() as conn:
        ids = ensure_lists(conn, web_settings)
        reader = add_subscriber(
            conn,
            "&ab'@example.org",
            list_ids=[ids["weekly"], ids["business"]],
            name="<script>alert('name')</script>",
        )
    token = make_token(SECRET, TokenPurpose.UNSUBSCRIBE, reader.uid, ids["weekly"])
    r = client.get(f"/unsubscribe/{token}")
    assert r.status_code == 200
    assert "<script>alert" not in r.text
    assert "&•••" not in r.text
    assert "&amp;•••&#39;@example.org" in r.text
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert "set-cookie" not in r.headers

    r = client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
    assert "set-cookie" not in r.headers
    assert "location" not in r.headers
    assert "<script>alert" not in r.text


def test_bad_mac_and_unknown_list_answer_identically(
    client: TestClient, engine: Engine, web_settings: Settings
) -> None:
    with engine.begin() as conn:
        ids = ensure_lists(conn, web_settings)
        reader = add_subscriber(conn, "reader@example.org", list_ids=[ids["weekly"]])
    good = make_token(SECRET, TokenPurpose.UNSUBSCRIBE, reader.uid, ids["weekly"])
    no_list = make_token(SECRET, TokenPurpose.UNSUBSCRIBE, reader.uid, 9999)
    forged = make_token(b"another key entirely", TokenPurpose.UNSUBSCRIBE, reader.uid, 1)
    flipped = good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1]
    bodies = set()
    for token in (no_list, forged, flipped, good[:-4], "x" * 200):
        for method in ("GET", "POST"):
            r = client.request(method, f"/unsubscribe/{token}", data={"action": "all"})
            assert r.status_code == 400
            bodies.add(r.text)
    assert len(bodies) == 1
    assert "reader" not in next(iter(bodies))


def test_confirmation_builder_escapes_and_quotes_a_name(web_settings: Settings) -> None:
    # no caller passes a name today; if one does, it stays text and one address
    message = build_confirmation(
        web_settings,
        page_environment(web_settings),
        to="reader@bücher.example.org",
        name='<img src=x onerror="alert(1)">, "x" <evil@example.org>',
        link="https://news.test.example/confirm/abc",
        lists=list(web_settings.lists.values()),
    )
    (to,) = message["To"].addresses
    assert to.addr_spec == "reader@xn--bcher-kva.example.org"
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    assert "<img src=x" not in html.get_content()
    assert "&lt;img src=x" in html.get_content()


def _confirm_path(smtpd: SMTPServer, index: int = -1) -> str:
    text = smtpd.handler.messages[index].message.get_body(preferencelist=("plain",))
    assert text is not None
    match = re.search(r"https://news\.test\.example(/confirm/[A-Za-z0-9_-]+)", text.get_content())
    assert match is not None
    return match.group(1)


def _statuses(engine: Engine, email: str) -> dict[str, SubscriptionStatus]:
    with engine.begin() as conn:
        sub = find_by_email(conn, email)
    assert sub is not None
    return {s.list_slug: s.status for s in sub.subscriptions}


def test_a_confirmation_link_confirms_only_what_was_asked_before_it(
    client: TestClient, smtpd: SMTPServer, engine: Engine
) -> None:
    r = client.post("/subscribe", data={"email": "v@example.org", "lists": "weekly"})
    assert r.status_code == 200
    link = _confirm_path(smtpd)
    # later, someone else asks for another list in v's name; v never sees that request
    later = datetime.now(UTC) + timedelta(seconds=30)
    with engine.begin() as conn:
        ids = list_ids(conn)
        request_subscription(conn, "v@example.org", list_ids=[ids["business"]], now=later)
    assert client.post(link).status_code == 200
    assert _statuses(engine, "v@example.org") == {
        "weekly": SubscriptionStatus.CONFIRMED,
        "business": SubscriptionStatus.UNCONFIRMED,
    }


def test_an_old_confirmation_link_does_not_undo_a_later_unsubscribe(
    client: TestClient, smtpd: SMTPServer, engine: Engine
) -> None:
    # on two lists: leaving the last one would be leaving everything (suppressed for good)
    client.post("/subscribe", data={"email": "v@example.org", "lists": ["weekly", "business"]})
    link = _confirm_path(smtpd)
    assert client.post(link).status_code == 200
    with engine.begin() as conn:
        ids = list_ids(conn)
        sub = find_by_email(conn, "v@example.org")
        assert sub is not None
        unsubscribe(conn, sub.id, ids["weekly"], now=datetime.now(UTC) + timedelta(seconds=30))
        # a stranger re-requests the list: it waits for a fresh confirmation
        request_subscription(
            conn,
            "v@example.org",
            list_ids=[ids["weekly"]],
            now=datetime.now(UTC) + timedelta(seconds=60),
        )
    client.post(link)  # the old link, from the old email
    assert _statuses(engine, "v@example.org") == {
        "weekly": SubscriptionStatus.UNCONFIRMED,
        "business": SubscriptionStatus.CONFIRMED,
    }


def test_following_the_confirmation_link_alone_confirms_nothing(
    client: TestClient, smtpd: SMTPServer, engine: Engine
) -> None:
    # mail security scanners fetch every link in an email (GET); a subscription someone asked
    # for in another person's name must not confirm itself that way
    client.post("/subscribe", data={"email": "v@example.org", "lists": "weekly"})
    link = _confirm_path(smtpd)
    for _ in range(2):
        page = client.get(link)
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-store"
        assert re.search(r'<form method="post"', page.text)
        assert _statuses(engine, "v@example.org") == {"weekly": SubscriptionStatus.UNCONFIRMED}
    done = client.post(link)
    assert done.status_code == 200
    assert "You're subscribed" in done.text
    assert _statuses(engine, "v@example.org") == {"weekly": SubscriptionStatus.CONFIRMED}
