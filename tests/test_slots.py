"""Schedule parsing, weekly slots across DST changes, and the per-issue due decision (pure)."""

from __future__ import annotations

import pickle
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from hypothesis import given
from hypothesis import strategies as st

from newsletter.errors import ConfigError
from newsletter.model import IssueStatus
from newsletter.slots import (
    WEEKDAYS,
    Action,
    Schedule,
    decide,
    due_at,
    parse_schedule,
)

KYIV = ZoneInfo("Europe/Kyiv")
FRI_1300 = Schedule("fri", 13, 0, "Europe/Kyiv")


def test_parse_full_form() -> None:
    assert parse_schedule("fri 13:00 Europe/Kyiv", default_timezone="UTC") == FRI_1300


def test_parse_uses_the_default_zone_and_long_names() -> None:
    schedule = parse_schedule("Friday 9:05", default_timezone="Europe/Kyiv")
    assert schedule == Schedule("fri", 9, 5, "Europe/Kyiv")
    assert str(schedule) == "fri 09:05 Europe/Kyiv"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("4 13:00 Europe/Kyiv", "is a number"),
        ("fry 13:00", "unknown weekday"),
        ("fri 25:00", "HH:MM"),
        ("fri 13:60", "HH:MM"),
        ("fri 1pm", "HH:MM"),
        ("fri 13:00 Mars/Olympus", "unknown time zone"),
        ("fri", "weekly slot"),
        ("fri 13:00 Europe/Kyiv extra", "weekly slot"),
    ],
)
def test_parse_errors_name_the_key_and_the_fix(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_schedule(text, default_timezone="UTC", key="lists.weekly.schedule")
    assert info.value.key == "lists.weekly.schedule"
    assert str(info.value).startswith("lists.weekly.schedule: ")
    assert needle in str(info.value)


def test_trigger_uses_the_weekday_name_and_fires_on_friday() -> None:
    trigger = FRI_1300.trigger()
    assert "fri 13:00 Europe/Kyiv" in str(trigger)
    # Thursday 2026-11-19 noon UTC -> Friday 2026-11-20 13:00 Kyiv (EET, UTC+2) = 11:00 UTC
    fire = trigger.get_next_fire_time(None, datetime(2026, 11, 19, 12, tzinfo=UTC))
    assert fire.astimezone(UTC) == datetime(2026, 11, 20, 11, 0, tzinfo=UTC)
    assert fire.weekday() == 4


def test_previous_and_next_slot() -> None:
    now = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)  # a Sunday
    assert FRI_1300.previous_slot(now).astimezone(UTC) == datetime(2026, 11, 20, 11, tzinfo=UTC)
    assert FRI_1300.next_slot(now).astimezone(UTC) == datetime(2026, 11, 27, 11, tzinfo=UTC)
    slot = datetime(2026, 11, 20, 11, tzinfo=UTC)
    assert FRI_1300.previous_slot(slot) == slot
    assert FRI_1300.next_slot(slot) == slot


@pytest.mark.parametrize(
    ("before", "after", "utc_before", "utc_after"),
    [
        # autumn: last Sunday of October 2026 is the 25th; EEST (UTC+3) -> EET (UTC+2)
        (date(2026, 10, 23), date(2026, 10, 30), 10, 11),
        # spring: last Sunday of March 2026 is the 29th; EET (UTC+2) -> EEST (UTC+3)
        (date(2026, 3, 27), date(2026, 4, 3), 11, 10),
    ],
)
def test_slot_stays_at_1300_local_across_dst(
    before: date, after: date, utc_before: int, utc_after: int
) -> None:
    first = FRI_1300.next_slot(datetime.combine(before, datetime.min.time(), tzinfo=KYIV))
    second = FRI_1300.next_slot(first + timedelta(minutes=1))
    assert (first.date(), second.date()) == (before, after)
    assert first.hour == second.hour == 13
    assert first.astimezone(UTC).hour == utc_before
    assert second.astimezone(UTC).hour == utc_after
    # the slots are one week apart on the wall clock, not 168 hours apart
    assert second.astimezone(UTC) - first.astimezone(UTC) != timedelta(days=7)
    # and APScheduler's CronTrigger agrees on both sides of the change
    trigger = FRI_1300.trigger()
    fire = trigger.get_next_fire_time(None, first - timedelta(hours=1))
    assert fire == first
    assert trigger.get_next_fire_time(first, first + timedelta(minutes=1)) == second


def test_slot_inside_a_spring_forward_gap_moves_with_the_clocks() -> None:
    # Sunday 2026-03-29 03:30 does not exist in Kyiv (03:00 -> 04:00)
    sunday = Schedule("sun", 3, 30, "Europe/Kyiv")
    slot = sunday.slot_on(date(2026, 3, 29))
    assert slot.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert (slot.hour, slot.minute) == (4, 30)


@given(
    st.sampled_from(WEEKDAYS),
    st.integers(0, 23),
    st.integers(0, 59),
    st.sampled_from(["Europe/Kyiv", "America/New_York", "Australia/Sydney", "UTC"]),
    st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
    ),
)
def test_next_slot_matches_the_cron_trigger(
    weekday: str, hour: int, minute: int, zone: str, now: datetime
) -> None:
    schedule = Schedule(weekday, hour, minute, zone)
    ours = schedule.next_slot(now)
    assert ours >= now
    assert WEEKDAYS[ours.weekday()] == weekday
    assert schedule.previous_slot(now) <= now
    assert now - schedule.previous_slot(now) <= timedelta(days=7, hours=2)
    assert schedule.trigger().get_next_fire_time(None, now) == ours
    # APScheduler's own CronTrigger, an independent implementation, agrees except inside a DST
    # gap (the slot moves with the clocks) and where it skips the week of a DST change
    cron = CronTrigger(
        day_of_week=weekday, hour=hour, minute=minute, second=0, timezone=ZoneInfo(zone)
    ).get_next_fire_time(None, now)
    if (ours.hour, ours.minute) == (hour, minute) and cron != ours:
        assert cron - ours == timedelta(days=7)
        assert _dst_change_between(now, cron, ZoneInfo(zone))


def _dst_change_between(start: datetime, end: datetime, zone: ZoneInfo) -> bool:
    offsets = {(start + timedelta(hours=h)).astimezone(zone).utcoffset() for h in range(0, 24 * 15)}
    return len(offsets) > 1 and end - start <= timedelta(days=15)


def test_slot_trigger_fires_in_the_week_cron_skips_after_a_dst_change() -> None:
    monday = Schedule("mon", 0, 0, "Europe/Kyiv")
    now = datetime(2032, 3, 22, 0, 0, tzinfo=UTC)  # Monday 02:00 in Kyiv; clocks go forward 28th
    cron = CronTrigger(day_of_week="mon", hour=0, minute=0, second=0, timezone=monday.tz)
    assert cron.get_next_fire_time(None, now) == datetime(2032, 4, 5, tzinfo=monday.tz)
    fire = monday.trigger().get_next_fire_time(None, now)
    assert fire == datetime(2032, 3, 29, tzinfo=monday.tz)
    # after firing it moves on a week, never re-firing the same slot
    assert monday.trigger().get_next_fire_time(fire, fire) == datetime(2032, 4, 5, tzinfo=monday.tz)


def test_slot_trigger_survives_the_job_store() -> None:
    trigger = FRI_1300.trigger()
    copy = pickle.loads(pickle.dumps(trigger))
    now = datetime(2026, 11, 19, 12, tzinfo=UTC)
    assert str(copy) == str(trigger)
    assert copy.get_next_fire_time(None, now) == trigger.get_next_fire_time(None, now)


def test_due_at_is_the_first_slot_on_or_after_the_issue_date() -> None:
    utc = ZoneInfo("UTC")
    friday = due_at(date(2026, 11, 20), None, FRI_1300, default_tz=utc)
    assert friday == datetime(2026, 11, 20, 13, tzinfo=KYIV)
    saturday = due_at(date(2026, 11, 21), None, FRI_1300, default_tz=utc)
    assert saturday == datetime(2026, 11, 27, 13, tzinfo=KYIV)
    assert due_at(date(2026, 11, 20), None, None, default_tz=utc) is None


def test_send_at_overrides_the_slot() -> None:
    send_at = datetime(2026, 11, 18, 8, 30, tzinfo=KYIV)
    assert due_at(date(2026, 11, 20), send_at, FRI_1300, default_tz=KYIV) == send_at
    naive = datetime(2026, 11, 18, 8, 30)
    assert due_at(date(2026, 11, 20), naive, None, default_tz=KYIV) == send_at


DUE = datetime(2026, 11, 20, 11, tzinfo=UTC)
GRACE = timedelta(minutes=60)


def _decide(
    now: datetime,
    *,
    status: IssueStatus = IssueStatus.READY,
    send_stale: bool = False,
    started: bool = False,
) -> Action | None:
    decision = decide(
        slug="river-week",
        list_slug="weekly",
        status=status,
        due=DUE,
        now=now,
        grace=GRACE,
        send_stale=send_stale,
        started=started,
    )
    return None if decision is None else decision.action


def test_not_due_yet() -> None:
    assert _decide(DUE - timedelta(seconds=1)) is None


def test_due_inside_the_grace_is_sent() -> None:
    assert _decide(DUE) is Action.SEND
    assert _decide(DUE + timedelta(minutes=20)) is Action.SEND
    assert _decide(DUE + GRACE) is Action.SEND


def test_later_than_the_grace_is_stale_unless_told() -> None:
    two_days = DUE + timedelta(days=2)
    assert _decide(DUE + GRACE + timedelta(seconds=1)) is Action.SKIP_STALE
    assert _decide(two_days) is Action.SKIP_STALE
    assert _decide(two_days, send_stale=True) is Action.SEND


def test_a_started_send_always_resumes() -> None:
    assert _decide(DUE + timedelta(days=3), started=True) is Action.RESUME


def test_draft_is_skipped_with_a_reason() -> None:
    decision = decide(
        slug="river-week",
        list_slug="weekly",
        status=IssueStatus.DRAFT,
        due=DUE,
        now=DUE,
        grace=GRACE,
        send_stale=False,
        started=False,
    )
    assert decision is not None
    assert decision.action is Action.SKIP_DRAFT
    assert "status: ready" in decision.reasons[0]


def test_the_archive_is_not_reconsidered() -> None:
    assert _decide(DUE + timedelta(days=30)) is None
    assert _decide(DUE + timedelta(days=30), send_stale=True) is None


def test_the_clock_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        _decide(datetime(2026, 11, 20, 12))


@given(st.text(max_size=40))
def test_parser_never_fails_with_anything_but_a_config_error(text: str) -> None:
    problem: ConfigError | None = None
    try:
        schedule = parse_schedule(text, default_timezone="Europe/Kyiv")
    except ConfigError as exc:
        problem = exc
    if problem is not None:
        assert str(problem).startswith("schedule: ")
    else:
        # whatever parsed round-trips through its canonical form
        assert parse_schedule(str(schedule), default_timezone="UTC") == schedule


@given(
    st.sampled_from([*WEEKDAYS, "Monday", "FRIDAY", "sun"]),
    st.integers(0, 23),
    st.integers(0, 59),
)
def test_every_named_slot_parses(day: str, hour: int, minute: int) -> None:
    schedule = parse_schedule(f"  {day}\t{hour}:{minute:02d}  UTC ", default_timezone="Europe/Kyiv")
    assert (schedule.hour, schedule.minute, schedule.timezone) == (hour, minute, "UTC")
    assert schedule.weekday in WEEKDAYS
