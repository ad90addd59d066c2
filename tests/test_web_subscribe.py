"""Double opt-in through the real app and a real SMTP server, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from email.message import EmailMessage

from sqlalchemy import Engine
from starlette.testclient import TestClient

from newsletter.config import Settings
from newsletter.states import SubscriptionStatus, SuppressionReason
from newsletter.store.subscribers import (
    add_subscriber,
    ensure_lists,
    find_by_email,
    suppress,
)
from newsletter.tokens import TokenPurpose, make_token
from tests.conftest import TEST_SECRET, FakeClock
from tests.smtpd import SMTPServer


def sent(smtpd: SMTPServer) -> list[EmailMessage]:
    return [m.message for m in smtpd.handler.messages]


def confirm_link(message: EmailMessage) -> str:
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    match = re.search(r"https://news\.test\.example(/confirm/[A-Za-z0-9_-]+)", text.get_content())
    assert match, text.get_content()
    return match.group(1)


def status_of(engine: Engine, email: str, slug: str = "weekly") -> SubscriptionStatus | None:
    with engine.begin() as conn:
        sub = find_by_email(conn, email)
        if sub is None:
            return None
        for s in sub.subscriptions:
            if s.list_slug == slug:
                return s.status
    return None


def test_form_page_is_branded_and_has_honeypot(client: TestClient) -> None:
    page = client.get("/subscribe")
    assert page.status_code == 200
    assert "The Test Weekly" in page.text
    assert 'name="website"' in page.text
    assert 'value="business"' in page.text


def test_subscribe_confirm_flow_sends_branded_multipart_email(
    client: TestClient, smtpd: SMTPServer, engine: Engine
) -> None:
    response = client.post(
        "/subscribe", data={"email": "Reader@Example.org", "name": "Rea Der", "lists": "weekly"}
    )
    assert response.status_code == 200
    assert "Check your inbox" in response.text
    (message,) = sent(smtpd)
    # the unverified name is not used in the confirmation (test_security_web)
    assert message["To"] == "Reader@example.org"
    assert message["Subject"] == "Please confirm your subscription to The Test Weekly"
    assert message.get_content_type() == "multipart/alternative"
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    assert "The Test Weekly" in html.get_content()
    assert status_of(engine, "reader@example.org") is SubscriptionStatus.UNCONFIRMED

    link = confirm_link(message)
    # the link shows a button; pressing it (POST) confirms (test_security_web)
    assert client.get(link).status_code == 200
    assert status_of(engine, "reader@example.org") is SubscriptionStatus.UNCONFIRMED
    page = client.post(link)
    assert page.status_code == 200
    assert "subscribed" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert status_of(engine, "reader@example.org") is SubscriptionStatus.CONFIRMED
    # confirming twice is harmless
    assert client.post(link).status_code == 200
    assert status_of(engine, "reader@example.org") is SubscriptionStatus.CONFIRMED


def test_json_subscribe(client: TestClient, smtpd: SMTPServer, engine: Engine) -> None:
    response = client.post("/subscribe", json={"email": "j@example.org", "lists": ["business"]})
    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    assert len(sent(smtpd)) == 1
    assert status_of(engine, "j@example.org", "business") is SubscriptionStatus.UNCONFIRMED
    bad = client.post("/subscribe", json=["not", "an", "object"])
    assert bad.status_code == 400
    bad = client.post("/subscribe", json={"email": "nope"})
    assert bad.status_code == 400
    assert "not valid" in bad.json()["message"]


def test_response_is_the_same_for_new_existing_and_suppressed(
    client: TestClient, smtpd: SMTPServer, engine: Engine, web_settings: Settings
) -> None:
    with engine.begin() as conn:
        ids = ensure_lists(conn, web_settings)
        add_subscriber(conn, "known@example.org", list_ids=[ids["weekly"]])
        suppress(conn, "gone@example.org", SuppressionReason.UNSUBSCRIBED)
    bodies = []
    for address in ("new@example.org", "known@example.org", "gone@example.org"):
        r = client.post("/subscribe", data={"email": address})
        bodies.append((r.status_code, r.text, sorted(r.headers.keys())))
    assert bodies[0] == bodies[1] == bodies[2]
    # only the new address gets mail: the known one is already confirmed, the suppressed one
    # must never be mailed again
    assert [m["To"] for m in sent(smtpd)] == ["new@example.org"]
    assert status_of(engine, "gone@example.org") is None


def test_honeypot_looks_like_success_but_does_nothing(
    client: TestClient, smtpd: SMTPServer, engine: Engine
) -> None:
    r = client.post("/subscribe", data={"email": "bot@example.org", "website": "http://spam"})
    assert r.status_code == 200
    assert "Check your inbox" in r.text
    assert sent(smtpd) == []
    assert status_of(engine, "bot@example.org") is None


def test_rate_limits_per_address_and_per_ip(
    client: TestClient, smtpd: SMTPServer, clock: FakeClock
) -> None:
    for _ in range(5):
        r = client.post("/subscribe", data={"email": "flood@example.org"})
        assert r.status_code == 200  # per-address limit is silent: same answer
    assert len(sent(smtpd)) == 3
    # an hour on, the hourly limit lets the address in again, but the mailbox has had its
    # three confirmation emails of the day (the daily cap: tests/test_security_subscribe.py)
    clock.now += 3601
    client.post("/subscribe", data={"email": "flood@example.org"})
    assert len(sent(smtpd)) == 3

    codes = [
        client.post("/subscribe", data={"email": f"a{i}@example.org"}).status_code
        for i in range(20)
    ]
    assert 429 in codes
    clock.now += 601
    assert client.post("/subscribe", data={"email": "late@example.org"}).status_code == 200


def test_invalid_addresses_and_crlf_are_refused_and_escaped(
    client: TestClient, smtpd: SMTPServer
) -> None:
    r = client.post(
        "/subscribe",
        data={"email": "x@example.org\r\nBcc: victim@example.org", "name": "<b>n</b>"},
    )
    assert r.status_code == 400
    assert "<b>n</b>" not in r.text
    assert "&lt;b&gt;n&lt;/b&gt;" in r.text
    r = client.post("/subscribe", data={"email": "<script>alert(1)</script>@x"})
    assert r.status_code == 400
    assert "<script>" not in r.text
    r = client.post("/subscribe", data={"email": "ok@example.org", "lists": "nonexistent"})
    assert r.status_code == 400
    assert sent(smtpd) == []


def test_crlf_and_html_in_name_never_reach_header_or_markup(
    client: TestClient, smtpd: SMTPServer, engine: Engine
) -> None:
    name = 'Eve\r\nBcc: victim@example.org <img src=x onerror="alert(1)">'
    r = client.post("/subscribe", data={"email": "eve@example.org", "name": name})
    assert r.status_code == 200
    (received,) = smtpd.handler.messages
    assert received.rcpt_tos == ["eve@example.org"]
    message = received.message
    assert message["Bcc"] is None
    assert "\n" not in str(message["To"])
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    assert "<img src=x" not in html.get_content()
    with engine.begin() as conn:
        sub = find_by_email(conn, "eve@example.org")
    assert sub is not None
    assert sub.name is not None
    assert "\n" not in sub.name


def test_idn_address_is_sent_in_ascii(client: TestClient, smtpd: SMTPServer) -> None:
    r = client.post("/subscribe", data={"email": "leser@Bücher.de"})
    assert r.status_code == 200
    (received,) = smtpd.handler.messages
    assert received.rcpt_tos == ["leser@xn--bcher-kva.de"]


def test_confirm_token_tampering_and_suppression(
    client: TestClient, smtpd: SMTPServer, engine: Engine
) -> None:
    client.post("/subscribe", data={"email": "t@example.org"})
    link = confirm_link(sent(smtpd)[0])
    token = link.rsplit("/", 1)[1]
    for bad in (token[:-2], token[:-1] + ("A" if token[-1] != "A" else "B"), "x" * 200, "%00"):
        r = client.get(f"/confirm/{bad}")
        assert r.status_code == 400
        assert "not valid" in r.text
    # an unsubscribe token is not a confirmation
    with engine.begin() as conn:
        sub = find_by_email(conn, "t@example.org")
    assert sub is not None
    wrong = make_token(TEST_SECRET.encode(), TokenPurpose.UNSUBSCRIBE, sub.uid, 0)
    assert client.get(f"/confirm/{wrong}").status_code == 400
    # suppressed after the email went out: the link no longer subscribes anyone
    with engine.begin() as conn:
        suppress(conn, "t@example.org", SuppressionReason.COMPLAINED)
    assert client.get(link).status_code == 400
    assert client.post(link).status_code == 400
    assert status_of(engine, "t@example.org") is SubscriptionStatus.UNSUBSCRIBED


def test_expired_confirmation(client: TestClient, engine: Engine, web_settings: Settings) -> None:
    with engine.begin() as conn:
        ids = ensure_lists(conn, web_settings)
        sub = add_subscriber(
            conn, "old@example.org", list_ids=[ids["weekly"]], status=SubscriptionStatus.UNCONFIRMED
        )
    token = make_token(TEST_SECRET.encode(), TokenPurpose.CONFIRM, sub.uid, 0, issued_at=1000)
    r = client.get(f"/confirm/{token}")
    assert r.status_code == 400
    assert "expired" in r.text
    assert status_of(engine, "old@example.org") is SubscriptionStatus.UNCONFIRMED


def test_unknown_page_is_branded_404(client: TestClient) -> None:
    r = client.get("/nothing-here")
    assert r.status_code == 404
    assert "The Test Weekly" in r.text


def test_issue_images_are_served(client: TestClient) -> None:
    r = client.get("/images/footbridge.png")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    assert r.content.startswith(b"\x89PNG")
    assert client.get("/images/../newsletter.toml").status_code == 404


def test_a_list_can_be_ticked_from_a_link(client: TestClient) -> None:
    """The archive's "more from us" links open the form with their list ticked."""
    page = client.get("/subscribe", params={"list": "business"}).text
    assert re.search(r'value="business" checked', page)
    assert not re.search(r'value="weekly" checked', page)
    unknown = client.get("/subscribe", params={"list": "nope"}).text
    assert re.search(r'value="weekly" checked', unknown)  # the default, not an error
