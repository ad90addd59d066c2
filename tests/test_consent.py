"""One subscription policy: the pure decision, and every way onto a list following it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine

from newsletter.config import Settings
from newsletter.consent import Authority, Verdict, decide, left_everything, link_confirms
from newsletter.errors import StoreError, SuppressedError
from newsletter.states import SubscriptionStatus, SuppressionReason
from newsletter.store.importing import Reject, import_csv
from newsletter.store.subscribers import (
    add_subscriber,
    ensure_lists,
    find_by_email,
    request_subscription,
    suppress,
    unsubscribe,
)

S = SubscriptionStatus
OPERATOR, SUBSCRIBER = Authority.OPERATOR, Authority.SUBSCRIBER


@pytest.mark.parametrize(
    ("authority", "current", "suppressed", "wanted", "verdict"),
    [
        (OPERATOR, None, False, S.CONFIRMED, Verdict.ADD),
        (OPERATOR, None, False, S.UNCONFIRMED, Verdict.ADD),
        (OPERATOR, S.UNCONFIRMED, False, S.CONFIRMED, Verdict.CONFIRM),
        (OPERATOR, S.UNCONFIRMED, False, S.UNCONFIRMED, Verdict.KEEP),
        (OPERATOR, S.CONFIRMED, False, S.CONFIRMED, Verdict.KEEP),
        (OPERATOR, S.UNSUBSCRIBED, False, S.CONFIRMED, Verdict.LEFT),
        (OPERATOR, S.CONFIRMED, True, S.CONFIRMED, Verdict.SUPPRESSED),
        (OPERATOR, None, True, S.CONFIRMED, Verdict.SUPPRESSED),
        (SUBSCRIBER, None, False, S.CONFIRMED, Verdict.ADD),
        (SUBSCRIBER, S.UNCONFIRMED, False, S.CONFIRMED, Verdict.PENDING),
        (SUBSCRIBER, S.UNSUBSCRIBED, False, S.CONFIRMED, Verdict.REQUEST),
        (SUBSCRIBER, S.CONFIRMED, False, S.CONFIRMED, Verdict.KEEP),
        (SUBSCRIBER, None, True, S.CONFIRMED, Verdict.SUPPRESSED),
    ],
)
def test_decide(
    authority: Authority,
    current: SubscriptionStatus | None,
    suppressed: bool,
    wanted: SubscriptionStatus,
    verdict: Verdict,
) -> None:
    assert (
        decide(authority=authority, current=current, suppressed=suppressed, wanted=wanted)
        is verdict
    )


def test_only_suppression_and_leaving_refuse() -> None:
    assert {v for v in Verdict if v.refused} == {Verdict.SUPPRESSED, Verdict.LEFT}


T = datetime(2026, 12, 1, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "requested_in", "link", "created", "left", "confirms"),
    [
        # a numbered link: what waited when it was mailed, nothing asked for since
        (S.UNCONFIRMED, 5, 5, T, None, True),
        (S.UNCONFIRMED, 4, 5, T, None, True),
        (S.UNCONFIRMED, 6, 5, T, None, False),
        (S.UNCONFIRMED, None, 5, T, None, False),  # not asked for through the form
        (S.UNSUBSCRIBED, 5, 5, T, None, False),
        (S.CONFIRMED, 5, 5, T, None, False),
        # an unnumbered link (mailed before 0007): by time, and nothing numbered
        (S.UNCONFIRMED, None, 0, T, None, True),
        (S.UNCONFIRMED, None, 0, T + timedelta(seconds=5), None, False),
        (S.UNCONFIRMED, None, 0, T, T + timedelta(seconds=5), False),
        (S.UNCONFIRMED, 3, 0, T, None, False),
    ],
)
def test_link_confirms(
    status: SubscriptionStatus,
    requested_in: int | None,
    link: int,
    created: datetime,
    left: datetime | None,
    confirms: bool,
) -> None:
    issued_before = T + timedelta(seconds=1)
    assert (
        link_confirms(
            status=status,
            requested_in=requested_in,
            link=link,
            created_at=created,
            unsubscribed_at=left,
            issued_before=issued_before,
        )
        is confirms
    )


def test_leaving_the_last_list_is_leaving_everything() -> None:
    assert left_everything([S.UNSUBSCRIBED, S.UNSUBSCRIBED])
    assert not left_everything([S.UNSUBSCRIBED, S.CONFIRMED])
    # a list waiting for confirmation is a list they are on (the preferences page shows it)
    assert not left_everything([S.UNSUBSCRIBED, S.UNCONFIRMED])


PRIOR = ["none", "unconfirmed", "confirmed", "unsubscribed", "suppressed"]
EMAIL = "reader@example.org"


def _prepare(conn: Connection, list_ids: list[int], prior: str) -> None:
    if prior == "none":
        return
    if prior == "suppressed":
        add_subscriber(conn, EMAIL, list_ids=list_ids)
        suppress(conn, EMAIL, SuppressionReason.BOUNCED)
        return
    request_subscription(conn, EMAIL, list_ids=list_ids)
    found = find_by_email(conn, EMAIL)
    assert found is not None
    if prior in ("confirmed", "unsubscribed"):
        add_subscriber(conn, EMAIL, list_ids=list_ids)
    if prior == "unsubscribed":
        for list_id in list_ids:
            unsubscribe(conn, found.id, list_id)


def _state(engine: Engine, list_id: int) -> SubscriptionStatus | None:
    with engine.begin() as conn:
        found = find_by_email(conn, EMAIL)
    if found is None:
        return None
    sub = found.subscription(list_id)
    return None if sub is None else sub.status


@pytest.mark.parametrize("prior", PRIOR)
def test_add_and_import_follow_the_same_decision(
    engine: Engine, settings: Settings, tmp_path: Path, prior: str
) -> None:
    """`subscribers add` and a CSV import end in the same state, or both refuse."""
    with engine.begin() as conn:
        ids = ensure_lists(conn, settings)
        _prepare(conn, [ids["weekly"], ids["business"]], prior)

    added_refused = False
    try:
        with engine.begin() as conn:
            add_subscriber(conn, EMAIL, list_ids=[ids["weekly"]])
    except (SuppressedError, StoreError):
        added_refused = True

    csv = tmp_path / "people.csv"
    csv.write_text(f"email\n{EMAIL}\n", encoding="utf-8")
    rejects: list[Reject] = []
    import_csv(engine, csv, list_id=ids["business"], list_slug="business", on_reject=rejects.append)

    assert added_refused is bool(rejects)
    assert _state(engine, ids["weekly"]) == _state(engine, ids["business"])
    expected = {
        "none": S.CONFIRMED,
        "unconfirmed": S.CONFIRMED,  # the operator vouches for a pending request
        "confirmed": S.CONFIRMED,
        "unsubscribed": S.UNSUBSCRIBED,
        "suppressed": S.UNSUBSCRIBED,
    }
    assert _state(engine, ids["weekly"]) is expected[prior]
