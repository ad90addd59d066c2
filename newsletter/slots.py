"""Weekly slots: parse ``fri 13:00 Europe/Kyiv``, compute slots and decide which issues are due.

Pure: values in, values out, the clock is always a parameter. The job that acts on these
decisions (loads files, takes the lock, sends, reports) lives in :mod:`newsletter.autosend`.

An issue is *due* at its ``send_at`` when it has one, otherwise at the first slot of its list on
or after the issue's date (midnight in the schedule's time zone). A run at ``now`` sends a due,
ready, valid, unsent issue when ``now - due`` is within the misfire grace; later than that it is
*stale* and is only reported, unless the operator passes ``--send-stale``. A send that already
started always resumes, however late: half the list has it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger

from newsletter.config import Settings
from newsletter.errors import ConfigError
from newsletter.model import Issue, IssueStatus

# Index is ``date.weekday()`` (Monday = 0), the numbering APScheduler 3 also uses. Schedules
# only ever carry the names: a number means Monday = 0 to APScheduler but Monday = 1 to cron,
# and a one-off error there sends the newsletter on the wrong day.
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_LONG_NAMES = {
    "monday": "mon",
    "tuesday": "tue",
    "wednesday": "wed",
    "thursday": "thu",
    "friday": "fri",
    "saturday": "sat",
    "sunday": "sun",
}
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")

# How far back a run looks for due issues. A little over a week: a scheduler that was down for a
# few days still sees (and reports, or with --send-stale sends) the issue it missed, while the
# archive of long-sent issues is never reconsidered.
LOOKBACK = timedelta(days=8)


@dataclass(frozen=True)
class Schedule:
    """One weekly slot: a named weekday, a wall-clock time and a named time zone."""

    weekday: str
    hour: int
    minute: int
    timezone: str

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def __str__(self) -> str:
        return f"{self.weekday} {self.hour:02d}:{self.minute:02d} {self.timezone}"

    def trigger(self) -> SlotTrigger:
        """The APScheduler trigger that fires at exactly these slots."""
        return SlotTrigger(self)

    def slot_on(self, day: date) -> datetime:
        """The slot on ``day`` (which must be the slot's weekday), as an aware local datetime.

        A wall-clock time that does not exist that day (inside a spring-forward gap) moves
        forward by the gap, as the clocks do.
        """
        local = datetime.combine(day, time(self.hour, self.minute), tzinfo=self.tz)
        return local.astimezone(UTC).astimezone(self.tz)

    def previous_slot(self, now: datetime) -> datetime:
        """The most recent slot at or before ``now``."""
        _require_aware(now)
        local_day = now.astimezone(self.tz).date()
        for back in range(8):
            day = local_day - timedelta(days=back)
            if WEEKDAYS[day.weekday()] == self.weekday:
                slot = self.slot_on(day)
                if slot <= now:
                    return slot
        raise AssertionError("a weekly slot always exists within eight days")  # pragma: no cover

    def slots_from(self, moment: datetime) -> Iterator[datetime]:
        """Slots at or after ``moment``, in order, without end."""
        _require_aware(moment)
        day = moment.astimezone(self.tz).date()
        while WEEKDAYS[day.weekday()] != self.weekday:
            day += timedelta(days=1)
        while True:
            slot = self.slot_on(day)
            if slot >= moment:
                yield slot
            day += timedelta(days=7)

    def next_slot(self, moment: datetime) -> datetime:
        """The first slot at or after ``moment``."""
        return next(self.slots_from(moment))


class SlotTrigger(BaseTrigger):  # type: ignore[misc]
    """An APScheduler trigger firing at a :class:`Schedule`'s slots, as the schedule computes them.

    APScheduler 3's ``CronTrigger`` skips a week around DST changes: asked on Monday
    2032-03-22 02:00 in Kyiv for the next Monday 00:00, it answers 2032-04-05, missing
    2032-03-29 (the day after the clocks went forward). The slot jobs fire from the same
    computation as the due dates and the sweep, so they cannot disagree.
    """

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        start = now
        if previous_fire_time is not None:
            # strictly after the slot that just fired, even if the clock reads it still
            start = max(now, previous_fire_time + timedelta(seconds=1))
        return self.schedule.next_slot(start)

    def __getstate__(self) -> dict[str, object]:
        # the job store pickles triggers; keep the state plain so it outlives code changes
        s = self.schedule
        return {"version": 1, "slot": (s.weekday, s.hour, s.minute, s.timezone)}

    def __setstate__(self, state: dict[str, object]) -> None:
        slot = state["slot"]
        assert isinstance(slot, tuple | list)
        assert len(slot) == 4
        weekday, hour, minute, zone = slot
        self.schedule = Schedule(str(weekday), int(hour), int(minute), str(zone))

    def __str__(self) -> str:
        return f"weekly slot[{self.schedule}]"

    def __repr__(self) -> str:
        return f"<SlotTrigger {self.schedule}>"


def parse_schedule(text: str, *, default_timezone: str, key: str = "schedule") -> Schedule:
    """Parse ``"fri 13:00 Europe/Kyiv"`` (the zone may be left out: ``default_timezone``)."""
    parts = text.split()
    if len(parts) not in (2, 3):
        raise ConfigError(
            key,
            f"{text!r} is not a weekly slot; write it as "
            "'<weekday> <HH:MM> [<time zone>]', e.g. 'fri 13:00 Europe/Kyiv'",
        )
    day_text, time_text = parts[0].lower(), parts[1]
    zone = parts[2] if len(parts) == 3 else default_timezone
    if day_text.isdigit():
        raise ConfigError(
            key,
            f"weekday {parts[0]!r} is a number; use a name (mon, tue, ... sun), because "
            "APScheduler counts Monday as 0 and cron counts it as 1",
        )
    weekday = _LONG_NAMES.get(day_text, day_text)
    if weekday not in WEEKDAYS:
        raise ConfigError(key, f"unknown weekday {parts[0]!r}; use one of {', '.join(WEEKDAYS)}")
    match = _TIME.match(time_text)
    if not match:
        raise ConfigError(key, f"time {time_text!r} must be HH:MM on a 24-hour clock")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            key, f"unknown time zone {zone!r}; use an IANA name such as Europe/Kyiv"
        ) from None
    return Schedule(weekday, int(match.group(1)), int(match.group(2)), zone)


def list_schedules(settings: Settings) -> dict[str, Schedule | None]:
    """Each configured list's parsed schedule (None: no automatic slot for that list)."""
    result: dict[str, Schedule | None] = {}
    for slug, mailing_list in settings.lists.items():
        if mailing_list.schedule is None or not mailing_list.schedule.strip():
            result[slug] = None
        else:
            result[slug] = parse_schedule(
                mailing_list.schedule,
                default_timezone=settings.publication.timezone,
                key=f"lists.{slug}.schedule",
            )
    return result


def issue_list(issue: Issue, settings: Settings) -> str:
    return issue.list or settings.publication.default_list


def due_at(
    issue_date: date,
    send_at: datetime | None,
    schedule: Schedule | None,
    *,
    default_tz: tzinfo,
) -> datetime | None:
    """When an issue becomes due; None when its list has no slot and it has no ``send_at``."""
    if send_at is not None:
        # a naive send_at is wall-clock time in the list's (or publication's) zone
        if send_at.tzinfo is None:
            zone = schedule.tz if schedule is not None else default_tz
            return send_at.replace(tzinfo=zone)
        return send_at
    if schedule is None:
        return None
    return schedule.next_slot(datetime.combine(issue_date, time(0), tzinfo=schedule.tz))


class Action(enum.Enum):
    """What a run does with one issue; a skip's value is the reason the editor is told."""

    SEND = "send"  # due, ready, within the grace: check it, then send it
    RESUME = "resume"  # a send already started: finish it whatever the time
    SKIP_DRAFT = "draft"
    SKIP_STALE = "stale"
    SKIP_INVALID = "invalid"

    @property
    def skipped(self) -> bool:
        return self in (Action.SKIP_DRAFT, Action.SKIP_STALE, Action.SKIP_INVALID)


@dataclass(frozen=True)
class Decision:
    """One issue's fate in one run, with the reasons the editor is told."""

    slug: str
    list_slug: str
    due: datetime
    action: Action
    reasons: tuple[str, ...] = ()
    title: str = ""

    @property
    def skipped(self) -> bool:
        return self.action.skipped


def classify(
    *,
    status: IssueStatus,
    due: datetime,
    now: datetime,
    grace: timedelta,
    send_stale: bool,
    started: bool,
) -> Action:
    """What a run at ``now`` does with an unsent issue due at ``due``, the time aside.

    :func:`decide` applies it to issues that are due; ``newsletter schedule`` to upcoming ones
    too, so both say the same. Validity is not judged here (it needs the checker): a SEND is
    checked before it goes out and may still turn into SKIP_INVALID.
    """
    if started:
        return Action.RESUME
    if status is IssueStatus.DRAFT:
        return Action.SKIP_DRAFT
    if now - due > grace and not send_stale:
        return Action.SKIP_STALE
    return Action.SEND


def decide(
    *,
    slug: str,
    list_slug: str,
    status: IssueStatus,
    due: datetime | None,
    now: datetime,
    grace: timedelta,
    send_stale: bool,
    started: bool,
    title: str = "",
) -> Decision | None:
    """The decision for one unsent issue at ``now``; None when it is not this run's business.

    Not due yet, or due longer ago than :data:`LOOKBACK` and never started: None. Otherwise
    :func:`classify`'s action, with the reasons the editor reads for a skip.
    """
    _require_aware(now)
    if due is None or due > now:
        return None
    if not started and now - due > LOOKBACK:
        return None
    action = classify(
        status=status, due=due, now=now, grace=grace, send_stale=send_stale, started=started
    )
    reasons: tuple[str, ...] = ()
    if action is Action.SKIP_DRAFT:
        reasons = (
            f"it is still a draft (status: draft); it was due {fmt_time(due)}. Set "
            "'status: ready' and it goes out at the next run within the grace period.",
        )
    elif action is Action.SKIP_STALE:
        reasons = (
            f"it was due {fmt_time(due)} and the scheduler only ran {fmt_delta(now - due)} "
            f"later, beyond the misfire grace of {fmt_delta(grace)}. Nothing was sent; to "
            "send it anyway run 'python scheduler.py --once --send-stale' (or "
            "'newsletter send').",
        )
    return Decision(slug, list_slug, due, action, reasons, title)


def fmt_time(moment: datetime) -> str:
    return moment.strftime("%a %Y-%m-%d %H:%M %Z").strip()


def fmt_delta(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes / 60
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


def _require_aware(moment: datetime) -> None:
    if moment.tzinfo is None:
        raise ValueError("the scheduler's clock must be timezone-aware")
