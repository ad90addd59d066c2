""" "More from us" through a real send: each copy carries its reader's own join link.

The links are filled per recipient by the bulk path (``send``) and by a worker reading the
recorded bodies; each is signed for its reader and one list, and joins that reader alone.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from newsletter.config import Settings
from newsletter.delivery import Policy
from newsletter.sending import prepare_issue, run_send, with_smtp_url
from newsletter.states import SubscriptionStatus
from newsletter.store.subscribers import add_subscriber, ensure_lists, find_by_email
from newsletter.tokens import TokenPurpose, read_token
from newsletter.web.app import create_app
from newsletter.worker import run_worker
from tests.smtpd import SMTPServer

SNOW = "2026-12-11-first-snow.md"
FAST = Policy(retry_base_seconds=60, max_attempts=5, batch_size=50, flush_interval=0.01)
JOIN_LINK = re.compile(r"https://news\.test\.example/join/([A-Za-z0-9_-]+)")
READERS = ("ada@example.org", "grace@example.org", "alan@example.org")


@pytest.fixture
def readers(engine: Engine, settings: Settings) -> dict[str, str]:
    """Confirmed weekly readers: address -> uid."""
    with engine.begin() as conn:
        weekly = ensure_lists(conn, settings)["weekly"]
        return {e: add_subscriber(conn, e, list_ids=[weekly]).uid for e in READERS}


def links_by_reader(smtpd: SMTPServer) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for received in smtpd.handler.messages:
        message = received.message
        (to,) = received.rcpt_tos
        tokens: set[str] = set()
        for part in ("plain", "html"):
            body = message.get_body((part,))
            assert body is not None
            content = body.get_content()
            assert "%%" not in content  # every placeholder filled
            tokens |= set(JOIN_LINK.findall(content))
        found[to] = tokens
    return found


def check_links(
    links: dict[str, set[str]], readers: dict[str, str], settings: Settings, business: int
) -> None:
    assert set(links) == set(readers)
    for address, tokens in links.items():
        (token,) = tokens  # the same link in both parts; one list offered
        data = read_token(settings.secret_key, token, TokenPurpose.JOIN)
        assert data.subscriber_uid == readers[address]
        assert data.list_id == business
    assert len({next(iter(t)) for t in links.values()}) == len(readers)  # each its own


def test_send_fills_each_readers_join_link_and_it_joins_that_reader(
    engine: Engine,
    settings: Settings,
    smtpd: SMTPServer,
    project: Path,
    readers: dict[str, str],
) -> None:
    local = with_smtp_url(settings, smtpd.url)
    report = run_send(local, engine, project / "issues" / SNOW, policy=FAST)
    assert report.sent == len(READERS)
    with engine.begin() as conn:
        business = ensure_lists(conn, settings)["business"]
    links = links_by_reader(smtpd)
    check_links(links, readers, settings, business)

    client = TestClient(create_app(local, engine=engine), base_url="https://news.test.example")
    (grace_token,) = links["grace@example.org"]
    assert client.post(f"/join/{grace_token}").status_code == 200
    with engine.begin() as conn:
        for address in READERS:
            found = find_by_email(conn, address)
            assert found is not None
            on_business = found.subscription(business)
            if address == "grace@example.org":
                assert on_business is not None
                assert on_business.status is SubscriptionStatus.CONFIRMED
            else:
                assert on_business is None


def test_a_worker_fills_the_join_links_from_the_recorded_bodies(
    engine: Engine,
    settings: Settings,
    smtpd: SMTPServer,
    project: Path,
    readers: dict[str, str],
) -> None:
    local = with_smtp_url(settings, smtpd.url)
    prepare_issue(local, engine, project / "issues" / SNOW)
    sent = run_worker(local, engine, until_done=True, poll_seconds=0.1, policy=FAST)
    assert sent == len(READERS)
    with engine.begin() as conn:
        business = ensure_lists(conn, settings)["business"]
    check_links(links_by_reader(smtpd), readers, settings, business)
