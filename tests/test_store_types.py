"""``UtcDateTime``: aware UTC in and out, one instant stored one way, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import StatementError

from newsletter.store.schema import lists

KYIV_WINTER = timezone(timedelta(hours=2))


def test_values_come_back_aware_utc_whatever_zone_they_were_written_in(engine: Engine) -> None:
    local = datetime(2026, 11, 27, 13, 0, tzinfo=KYIV_WINTER)
    with engine.begin() as conn:
        conn.execute(insert(lists).values(slug="a", name="A", created_at=local))
        stored = conn.execute(select(lists.c.created_at)).scalar_one()
        # the same instant written from another zone matches it exactly
        found = conn.execute(
            select(lists.c.slug).where(lists.c.created_at == local.astimezone(UTC))
        ).scalar_one()
    assert stored == datetime(2026, 11, 27, 11, 0, tzinfo=UTC)
    assert stored.tzinfo is UTC
    assert found == "a"


def test_a_naive_datetime_is_refused(engine: Engine) -> None:
    with pytest.raises(StatementError, match="naive datetime"), engine.begin() as conn:
        conn.execute(insert(lists).values(slug="b", name="B", created_at=datetime(2026, 1, 1)))
