""" "More from us" join links through the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from newsletter.config import Settings, load_settings
from newsletter.states import SubscriptionStatus, SuppressionReason
from newsletter.store.subscribers import (
    Subscriber,
    add_subscriber,
    ensure_lists,
    find_by_email,
    suppress,
    unsubscribe,
)
from newsletter.tokens import TokenPurpose, make_token
from newsletter.web.join import JOIN_MAX_AGE_DAYS
from tests.conftest import TEST_SECRET, write_config

SECRET = TEST_SECRET.encode()


@pytest.fixture
def web_settings(project: Path, database_url: str) -> Settings:
    path = write_config(project, database_url=database_url)
    return load_settings(path, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})


@pytest.fixture
def lists(engine: Engine, web_settings: Settings) -> dict[str, int]:
    with engine.begin() as conn:
        return ensure_lists(conn, web_settings)


@pytest.fixture
def reader(engine: Engine, lists: dict[str, int]) -> Subscriber:
    """A confirmed recipient of the weekly, not on the business list."""
    with engine.begin() as conn:
        return add_subscriber(conn, "reader@example.org", list_ids=[lists["weekly"]])


@pytest.fixture
def client(web_settings: Settings, engine: Engine) -> Iterator[TestClient]:
    from newsletter.web.app import create_app

    app = create_app(web_settings, engine=engine)
    with TestClient(app, base_url="https://news.test.example", follow_redirects=False) as c:
        yield c


def join_token(subscriber: Subscriber, list_id: int, **kw: int) -> str:
    return make_token(SECRET, TokenPurpose.JOIN, subscriber.uid, list_id, **kw)


def status(engine: Engine, slug: str) -> SubscriptionStatus | None:
    with engine.begin() as conn:
        found = find_by_email(conn, "reader@example.org")
    assert found is not None
    return next((s.status for s in found.subscriptions if s.list_slug == slug), None)


def test_the_page_asks_and_only_the_button_joins(
    client: TestClient, engine: Engine, reader: Subscriber, lists: dict[str, int]
) -> None:
    url = f"/join/{join_token(reader, lists['business'])}"
    page = client.get(url)
    assert page.status_code == 200
    assert "Business Brief" in page.text
    assert "r•••r@example.org" in page.text  # masked: a forwarded copy shows whose it is
    assert "reader@example.org" not in page.text
    assert '<form method="post">' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "same-origin"
    assert status(engine, "business") is None  # opening the link changes nothing
    joined = client.post(url)
    assert joined.status_code == 200
    assert "now receives Business Brief" in joined.text
    assert status(engine, "business") is SubscriptionStatus.CONFIRMED
    assert status(engine, "weekly") is SubscriptionStatus.CONFIRMED
    again = client.get(url)
    assert "receives Business Brief already" in again.text
    assert "<form" not in again.text
    assert client.post(url).status_code == 200  # harmless to repeat


def test_a_link_joins_only_the_list_it_was_signed_for(
    client: TestClient, engine: Engine, reader: Subscriber, lists: dict[str, int]
) -> None:
    token = join_token(reader, lists["weekly"])
    assert "already" in client.get(f"/join/{token}").text
    client.post(f"/join/{token}")
    assert status(engine, "business") is None
    # another purpose's token, or a tampered one, is no join link
    for other in (
        make_token(SECRET, TokenPurpose.UNSUBSCRIBE, reader.uid, lists["business"]),
        make_token(SECRET, TokenPurpose.CONFIRM, reader.uid, lists["business"]),
        join_token(reader, lists["business"])[:-2] + "AA",
        "not-a-token",
    ):
        assert client.get(f"/join/{other}").status_code == 400
        assert client.post(f"/join/{other}").status_code == 400
    assert status(engine, "business") is None


def test_suppressed_readers_cannot_join(
    client: TestClient, engine: Engine, reader: Subscriber, lists: dict[str, int]
) -> None:
    url = f"/join/{join_token(reader, lists['business'])}"
    with engine.begin() as conn:
        suppress(conn, "reader@example.org", SuppressionReason.COMPLAINED, "test")
    assert client.get(url).status_code == 400
    assert client.post(url).status_code == 400
    assert status(engine, "business") is None


def test_readers_who_left_every_list_cannot_join(
    client: TestClient, engine: Engine, reader: Subscriber, lists: dict[str, int]
) -> None:
    url = f"/join/{join_token(reader, lists['business'])}"
    with engine.begin() as conn:
        unsubscribe(conn, reader.id)
    assert client.get(url).status_code == 400
    assert client.post(url).status_code == 400
    assert status(engine, "business") is None


def test_a_list_left_earlier_can_be_joined_again_by_its_reader(
    client: TestClient, engine: Engine, reader: Subscriber, lists: dict[str, int]
) -> None:
    with engine.begin() as conn:
        add_subscriber(conn, "reader@example.org", list_ids=[lists["business"]])
        unsubscribe(conn, reader.id, lists["business"])
    assert status(engine, "business") is SubscriptionStatus.UNSUBSCRIBED
    assert client.post(f"/join/{join_token(reader, lists['business'])}").status_code == 200
    assert status(engine, "business") is SubscriptionStatus.CONFIRMED


def test_an_old_link_has_expired(
    client: TestClient, engine: Engine, reader: Subscriber, lists: dict[str, int]
) -> None:
    issued = int(time.time()) - (JOIN_MAX_AGE_DAYS + 1) * 86400
    url = f"/join/{join_token(reader, lists['business'], issued_at=issued)}"
    page = client.post(url)
    assert page.status_code == 400
    assert "This link has expired." in page.text
    assert status(engine, "business") is None
