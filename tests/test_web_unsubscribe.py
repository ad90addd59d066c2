"""Unsubscribe page, RFC 8058 one-click and preferences through the real app, both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from newsletter.config import load_settings
from newsletter.errors import StoreError, SuppressedError
from newsletter.states import SubscriptionStatus, SuppressionReason
from newsletter.store.importing import Reject, import_csv
from newsletter.store.subscribers import (
    Subscriber,
    add_subscriber,
    erase,
    find_by_email,
    suppression_reason,
)
from newsletter.tokens import TokenPurpose, make_token
from newsletter.web.app import create_app
from tests.conftest import TEST_SECRET, write_config
from tests.smtpd import SMTPServer

SECRET = TEST_SECRET.encode()
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
def reader(engine: Engine, lists: dict[str, int]) -> Subscriber:
    with engine.begin() as conn:
        return add_subscriber(
            conn,
            "Reader@Example.org",
            list_ids=[lists["weekly"], lists["business"]],
            name="<script>alert('name')</script>",
        )


def token_for(subscriber: Subscriber, list_id: int) -> str:
    # exactly what the delivery step puts in List-Unsubscribe
    return make_token(SECRET, TokenPurpose.UNSUBSCRIBE, subscriber.uid, list_id)


def statuses(engine: Engine, email: str = "reader@example.org") -> dict[str, SubscriptionStatus]:
    with engine.begin() as conn:
        sub = find_by_email(conn, email)
    assert sub is not None
    return {s.list_slug: s.status for s in sub.subscriptions}


def test_page_shows_one_button_and_lists_without_changing_anything(
    client: TestClient, engine: Engine, reader: Subscriber, lists: dict[str, int]
) -> None:
    r = client.get(f"/unsubscribe/{token_for(reader, lists['weekly'])}")
    assert r.status_code == 200
    assert 'name="List-Unsubscribe" value="One-Click"' in r.text
    assert "Business Brief" in r.text
    assert "The Test Weekly" in r.text
    # the address is masked; the page carries no address in a form field
    assert "reader@example.org" not in r.text.lower()
    assert 'name="email"' not in r.text
    assert r.headers["referrer-policy"] == "same-origin"
    assert "set-cookie" not in r.headers
    assert statuses(engine) == {
        "weekly": SubscriptionStatus.CONFIRMED,
        "business": SubscriptionStatus.CONFIRMED,
    }


def test_one_click_post_rfc8058(
    client: TestClient, engine: Engine, reader: Subscriber, lists: dict[str, int]
) -> None:
    url = f"/unsubscribe/{token_for(reader, lists['weekly'])}"
    for _ in range(2):  # repeating it is harmless
        r = client.post(url, data=ONE_CLICK)
        assert r.status_code == 200
        assert "set-cookie" not in r.headers
        assert "location" not in r.headers
        assert "unsubscribed" in r.text
    assert statuses(engine) == {
        "weekly": SubscriptionStatus.UNSUBSCRIBED,
        "business": SubscriptionStatus.CONFIRMED,
    }
    # leaving one list is not a suppression, but nothing silently re-adds it
    with engine.begin() as conn:
        assert suppression_reason(conn, "reader@example.org") is None
        with pytest.raises(StoreError, match="unsubscribed from weekly"):
            add_subscriber(conn, "reader@example.org", list_ids=[lists["weekly"]])


def test_a_link_signed_with_an_earlier_key_still_unsubscribes(
    project: Path,
    database_url: str,
    smtpd: SMTPServer,
    engine: Engine,
    reader: Subscriber,
    lists: dict[str, int],
) -> None:
    """Rotating NEWSLETTER_SECRET_KEY keeps every delivered unsubscribe link working."""
    new_key = "rotated-key-" * 3
    path = write_config(project, database_url=database_url, smtp_url=smtpd.url)
    rotated = load_settings(
        path,
        environ={"NEWSLETTER_SECRET_KEY": new_key, "NEWSLETTER_SECRET_KEY_OLD": TEST_SECRET},
    )
    old_link = f"/unsubscribe/{token_for(reader, lists['weekly'])}"  # signed before the rotation
    stranger = make_token(b"never-a-key-of-ours!", TokenPurpose.UNSUBSCRIBE, reader.uid, 1)
    confirm = make_token(SECRET, TokenPurpose.CONFIRM, reader.uid, lists["weekly"])
    app = create_app(rotated, engine=engine)
    with TestClient(app, base_url="https://news.test.example") as c:
        assert c.get(old_link).status_code == 200
        # a key that is not in the ring, and an old key's token for another purpose, fail
        assert c.post(f"/unsubscribe/{stranger}", data=ONE_CLICK).status_code == 400
        assert c.post(f"/unsubscribe/{confirm}", data=ONE_CLICK).status_code == 400
        assert statuses(engine)["weekly"] is SubscriptionStatus.CONFIRMED
        assert c.post(old_link, data=ONE_CLICK).status_code == 200
    assert statuses(engine)["weekly"] is SubscriptionStatus.UNSUBSCRIBED


def test_one_click_as_multipart_body(
    client: TestClient, engine: Engine, reader: Subscriber, lists: dict[str, int]
) -> None:
    url = f"/unsubscribe/{token_for(reader, lists['business'])}"
    r = client.post(url, files={"List-Unsubscribe": (None, "One-Click")})
    assert r.status_code == 200
    assert statuses(engine)["business"] is SubscriptionStatus.UNSUBSCRIBED


def test_preferences_leave_some_lists(
    client: TestClient, engine: Engine, reader: Subscriber, lists: dict[str, int]
) -> None:
    url = f"/unsubscribe/{token_for(reader, lists['weekly'])}"
    r = client.post(url, data={"action": "preferences", "keep": "weekly"})
    assert r.status_code == 200
    assert "Business Brief" in r.text
    assert statuses(engine) == {
        "weekly": SubscriptionStatus.CONFIRMED,
        "business": SubscriptionStatus.UNSUBSCRIBED,
    }


def test_leave_everything_is_forever(
    client: TestClient,
    engine: Engine,
    reader: Subscriber,
    lists: dict[str, int],
    smtpd: SMTPServer,
    tmp_path: Path,
) -> None:
    url = f"/unsubscribe/{token_for(reader, lists['weekly'])}"
    r = client.post(url, data={"action": "all"})
    assert r.status_code == 200
    assert "not send any more email" in r.text
    assert set(statuses(engine).values()) == {SubscriptionStatus.UNSUBSCRIBED}
    with engine.begin() as conn:
        assert suppression_reason(conn, "READER@example.org") is SuppressionReason.UNSUBSCRIBED

    # the form: same answer as for anyone, no email, no subscription
    r = client.post("/subscribe", data={"email": "reader@example.org", "lists": "business"})
    assert r.status_code == 200
    assert smtpd.handler.messages == []
    # the API (JSON) likewise
    r = client.post("/subscribe", json={"email": "Reader@Example.org"})
    assert r.status_code == 202
    assert smtpd.handler.messages == []
    # the operator's add
    with engine.begin() as conn, pytest.raises(SuppressedError):
        add_subscriber(conn, "reader@EXAMPLE.org", list_ids=[lists["business"]])
    # an import
    csv_file = tmp_path / "again.csv"
    csv_file.write_text("email\nREADER@example.org\n", encoding="utf-8")
    rejects: list[Reject] = []
    report = import_csv(
        engine, csv_file, list_id=lists["weekly"], list_slug="weekly", on_reject=rejects.append
    )
    assert report.subscribed == 0
    assert [r.line for r in rejects] == [2]
    assert "suppressed" in rejects[0].reason
    assert set(statuses(engine).values()) == {SubscriptionStatus.UNSUBSCRIBED}
    # the page now just says so
    r = client.get(url)
    assert r.status_code == 200
    assert "not send any more email" in r.text


def test_resubscribe_after_leaving_one_list_needs_confirmation(
    client: TestClient,
    engine: Engine,
    reader: Subscriber,
    lists: dict[str, int],
    smtpd: SMTPServer,
) -> None:
    client.post(f"/unsubscribe/{token_for(reader, lists['weekly'])}", data=ONE_CLICK)
    r = client.post("/subscribe", data={"email": "reader@example.org", "lists": "weekly"})
    assert r.status_code == 200
    # asking again does not put them back on the list; only the emailed link does
    assert statuses(engine)["weekly"] is SubscriptionStatus.UNCONFIRMED
    (received,) = smtpd.handler.messages
    assert received.rcpt_tos == ["Reader@example.org"]


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda t: t[:-1], id="truncated"),
        pytest.param(lambda t: t[:20], id="half"),
        pytest.param(lambda t: t[:5] + ("A" if t[5] != "A" else "B") + t[6:], id="tampered"),
        pytest.param(lambda t: t + "AA", id="extended"),
        pytest.param(lambda t: "", id="empty-ish"),
    ],
)
def test_bad_tokens_get_a_400_that_reveals_nothing(
    client: TestClient, engine: Engine, reader: Subscriber, lists: dict[str, int], mangle: object
) -> None:
    assert callable(mangle)
    token = mangle(token_for(reader, lists["weekly"])) or "x"
    for method in ("get", "post"):
        kwargs = {"data": ONE_CLICK} if method == "post" else {}
        r = getattr(client, method)(f"/unsubscribe/{token}", **kwargs)
        assert r.status_code == 400
        assert "not valid" in r.text
        assert "example.org" not in r.text.lower()
        assert "set-cookie" not in r.headers
    assert set(statuses(engine).values()) == {SubscriptionStatus.CONFIRMED}


def test_other_kinds_of_forgery(
    client: TestClient, engine: Engine, reader: Subscriber, lists: dict[str, int]
) -> None:
    forged = [
        make_token(b"another-secret-0123456789", TokenPurpose.UNSUBSCRIBE, reader.uid, 1),
        make_token(SECRET, TokenPurpose.CONFIRM, reader.uid, lists["weekly"]),
        make_token(SECRET, TokenPurpose.UNSUBSCRIBE, reader.uid, 9999),  # no such list
    ]
    for token in forged:
        assert client.post(f"/unsubscribe/{token}", data=ONE_CLICK).status_code == 400
        assert client.get(f"/unsubscribe/{token}").status_code == 400
    assert set(statuses(engine).values()) == {SubscriptionStatus.CONFIRMED}


def test_erased_subscriber_link_still_answers_politely(
    client: TestClient, engine: Engine, reader: Subscriber, lists: dict[str, int]
) -> None:
    token = token_for(reader, lists["weekly"])
    with engine.begin() as conn:
        assert erase(conn, "reader@example.org")
    r = client.post(f"/unsubscribe/{token}", data=ONE_CLICK)
    assert r.status_code == 200
    assert client.get(f"/unsubscribe/{token}").status_code == 200


def test_page_after_leaving_the_list_offers_the_rest(
    client: TestClient, engine: Engine, reader: Subscriber, lists: dict[str, int]
) -> None:
    weekly = f"/unsubscribe/{token_for(reader, lists['weekly'])}"
    client.post(weekly, data=ONE_CLICK)
    r = client.get(weekly)
    assert r.status_code == 200
    assert "no longer receives" in r.text
    assert 'value="One-Click"' not in r.text
    assert 'value="business"' in r.text  # the list still to leave
    client.post(weekly, data={"action": "preferences"})  # keep nothing
    r = client.get(weekly)
    assert "You're unsubscribed" in r.text
    assert set(statuses(engine).values()) == {SubscriptionStatus.UNSUBSCRIBED}
