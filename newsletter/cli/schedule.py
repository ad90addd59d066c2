"""``newsletter schedule``: the upcoming weekly slots per list and the issue each would send."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import click

from newsletter.autosend import PlannedIssue, upcoming
from newsletter.cli import AppContext, main, pass_app
from newsletter.slots import fmt_time, list_schedules
from newsletter.store.database import open_current


@main.command()
@click.option(
    "--count",
    default=4,
    show_default=True,
    type=click.IntRange(1, 52),
    help="How many upcoming slots to show per list.",
)
@click.option(
    "--now",
    "now_text",
    metavar="ISO-TIME",
    help="Show the schedule as of this moment instead of now (e.g. 2026-11-27T12:00+02:00).",
)
@pass_app
def schedule(app: AppContext, count: int, now_text: str | None) -> None:
    """Show upcoming slots per list and which issue each would send."""
    settings = app.settings
    now = _parse_now(now_text)
    schedules = list_schedules(settings)
    engine = open_current(settings.database_url)
    try:
        overdue, slots, timed = upcoming(settings, engine, now=now, count=count)
    finally:
        engine.dispose()
    grace = settings.scheduler.misfire_grace_minutes
    click.echo(f"As of {fmt_time(now.astimezone(UTC))}; misfire grace {grace:g} min.")
    if overdue:
        click.echo("\nDue now (the next scheduler run acts on these):")
        for item in overdue:
            click.echo("  " + _line(item))
    for slug, sched in schedules.items():
        click.echo("")
        if sched is None:
            click.echo(f"{slug}: no weekly slot (set lists.{slug}.schedule); send_at issues only")
        else:
            click.echo(f"{slug}: {sched}")
        zone = sched.tz if sched is not None else ZoneInfo(settings.publication.timezone)
        timeline: list[tuple[datetime, str]] = []
        for slot in (s for s in slots if s.list_slug == slug):
            when = _when(slot.at, zone)
            if not slot.issues:
                timeline.append((slot.at, f"  {when}  no issue yet"))
            for item in slot.issues:
                timeline.append((slot.at, f"  {when}  {item.file}  [{item.state}]"))
        for item in (t for t in timed if t.list_slug == slug):
            line = f"  {_when(item.due, zone)}  {item.file}  [{item.state}] (its own send_at)"
            timeline.append((item.due, line))
        for _, line in sorted(timeline, key=lambda entry: entry[0]):
            click.echo(line)


def _when(moment: datetime, zone: ZoneInfo) -> str:
    return f"{fmt_time(moment.astimezone(zone))} ({moment.astimezone(UTC):%H:%M} UTC)"


def _line(item: PlannedIssue) -> str:
    return f"{item.file} (list {item.list_slug}, due {fmt_time(item.due)})  [{item.state}]"


def _parse_now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO time", param_hint="--now") from None
    if moment.tzinfo is None:
        raise click.BadParameter("give a UTC offset, e.g. +02:00", param_hint="--now")
    return moment
