"""The subscriber store on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select

from newsletter.addresses import email_hash
from newsletter.config import Settings
from newsletter.errors import StoreError, SuppressedError
from newsletter.states import SubscriptionStatus, SuppressionReason
from newsletter.store.schema import confirmations, suppressions
from newsletter.store.subscribers import (
    add_subscriber,
    confirm_subscriber,
    count_subscribers,
    ensure_lists,
    erase,
    find_by_email,
    find_by_uid,
    is_suppressed,
    iter_subscribers,
    request_subscription,
    suppress,
    unsubscribe,
)


def test_ensure_lists_is_idempotent(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:
        first = ensure_lists(conn, settings)
        second = ensure_lists(conn, settings)
    assert first == second
    assert set(first) == {"weekly", "business"}


def test_add_is_case_insensitive_and_idempotent(engine: Engine, lists: dict[str, int]) -> None:
    with engine.begin() as conn:
        a = add_subscriber(conn, "Sam@Example.org", list_ids=[lists["weekly"]], name="Sam")
        b = add_subscriber(conn, "sam@EXAMPLE.org", list_ids=[lists["weekly"]], name="Other")
        assert a.id == b.id
        assert b.name == "Sam"
        assert b.email == "Sam@Example.org"
        assert count_subscribers(conn) == 1
        assert count_subscribers(conn, list_id=lists["weekly"]) == 1
        assert len(a.uid) == 32
        assert find_by_uid(conn, a.uid) == b
        (sub,) = b.subscriptions
        assert sub.status is SubscriptionStatus.CONFIRMED
        assert sub.created_at.tzinfo is not None


def test_suppress_is_idempotent_and_ends_subscriptions(
    engine: Engine, lists: dict[str, int]
) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with engine.begin() as conn:
        s = add_subscriber(conn, "x@example.org", list_ids=list(lists.values()))
        suppress(conn, "X@example.org", SuppressionReason.BOUNCED, "550 no such user", now=when)
        suppress(conn, "x@example.org", SuppressionReason.UNSUBSCRIBED)
        assert is_suppressed(conn, "x@EXAMPLE.org")
        rows = conn.execute(select(suppressions)).all()
        assert len(rows) == 1
        assert rows[0].reason == "bounced"  # the first reason stays
        found = find_by_uid(conn, s.uid)
        assert found is not None
        assert {x.status for x in found.subscriptions} == {SubscriptionStatus.UNSUBSCRIBED}
        assert all(x.unsubscribed_at == when for x in found.subscriptions)
        with pytest.raises(SuppressedError):
            add_subscriber(conn, "x@example.org", list_ids=[lists["weekly"]])
        outcome = request_subscription(conn, "x@example.org", list_ids=[lists["weekly"]])
        assert outcome.suppressed
        assert outcome.pending == ()
        assert confirm_subscriber(conn, s.uid) is None


def test_erase_keeps_only_the_hash(engine: Engine, lists: dict[str, int]) -> None:
    with engine.begin() as conn:
        add_subscriber(conn, "gdpr@example.org", list_ids=[lists["weekly"]], name="Private")
        suppress(conn, "gdpr@example.org", SuppressionReason.COMPLAINED, "abuse report")
        assert erase(conn, "GDPR@example.org")
        assert find_by_email(conn, "gdpr@example.org") is None
        (row,) = conn.execute(select(suppressions)).all()
        assert row.email is None
        assert row.detail is None
        assert row.email_hash == email_hash("gdpr@example.org")
        assert row.reason == "complained"
        assert is_suppressed(conn, "gdpr@example.org")
        with pytest.raises(SuppressedError):
            add_subscriber(conn, "gdpr@example.org", list_ids=[lists["weekly"]])
        # erasing someone never seen still records the hash
        assert not erase(conn, "never@example.org")
        assert is_suppressed(conn, "never@example.org")


def test_double_opt_in_in_the_store(engine: Engine, lists: dict[str, int]) -> None:
    with engine.begin() as conn:
        outcome = request_subscription(
            conn, "new@example.org", list_ids=[lists["weekly"], lists["business"]]
        )
        assert outcome.subscriber is not None
        assert set(outcome.pending) == {lists["weekly"], lists["business"]}
        assert outcome.subscriber.confirmed_at is None
        confirmed = confirm_subscriber(conn, outcome.subscriber.uid)
        assert confirmed is not None
        assert confirmed.confirmed_at is not None
        assert {s.status for s in confirmed.subscriptions} == {SubscriptionStatus.CONFIRMED}
        # asking again once confirmed needs no email
        again = request_subscription(conn, "new@example.org", list_ids=[lists["weekly"]])
        assert again.pending == ()
        assert again.confirmation is None


def test_requests_are_numbered_and_erasing_takes_their_rows(
    engine: Engine, lists: dict[str, int]
) -> None:
    with engine.begin() as conn:
        first = request_subscription(conn, "n@example.org", list_ids=[lists["weekly"]])
        second = request_subscription(conn, "n@example.org", list_ids=[lists["business"]])
        assert first.confirmation is not None
        assert second.confirmation is not None
        assert second.confirmation > first.confirmation
        # the second link names both: weekly was still waiting when it was mailed
        assert first.confirms == (lists["weekly"],)
        assert set(second.confirms) == {lists["weekly"], lists["business"]}
        assert first.subscriber is not None
        assert erase(conn, "n@example.org")
        assert conn.execute(select(confirmations)).all() == []
    # a number is never handed out twice, even after its row is gone (AUTOINCREMENT)
    with engine.begin() as conn:
        third = request_subscription(conn, "m@example.org", list_ids=[lists["weekly"]])
        assert third.confirmation is not None
        assert third.confirmation > second.confirmation


def test_leaving_a_list_is_not_undone_by_the_operator(
    engine: Engine, lists: dict[str, int]
) -> None:
    with engine.begin() as conn:
        s = add_subscriber(conn, "l@example.org", list_ids=[lists["weekly"]])
        # still on a list of theirs: leaving the other is leaving one list, not everything
        add_subscriber(conn, "l@example.org", list_ids=[lists["business"]])
        assert unsubscribe(conn, s.id, lists["weekly"])
        assert not unsubscribe(conn, s.id, lists["weekly"])  # already done
        assert not is_suppressed(conn, "l@example.org")
        with pytest.raises(StoreError, match="only they can re-join"):
            add_subscriber(conn, "l@example.org", list_ids=[lists["weekly"]])
        # lists they are on are fine
        add_subscriber(conn, "l@example.org", list_ids=[lists["business"]])


def test_iter_subscribers_pages_filters_and_limits(engine: Engine, lists: dict[str, int]) -> None:
    with engine.begin() as conn:
        for i in range(25):
            ids = [lists["weekly"]] if i % 2 else [lists["weekly"], lists["business"]]
            add_subscriber(conn, f"p{i:02d}@example.org", list_ids=ids)
        everyone = list(iter_subscribers(conn))
        assert len(everyone) == 25
        business = list(iter_subscribers(conn, list_id=lists["business"]))
        assert len(business) == 13
        assert all(len(s.subscriptions) == 1 for s in business)
        page = list(iter_subscribers(conn, list_id=lists["weekly"], limit=5, offset=20))
        assert [s.email for s in page] == [f"p{i:02d}@example.org" for i in range(20, 25)]
        none = list(iter_subscribers(conn, status=SubscriptionStatus.UNSUBSCRIBED))
        assert none == []
