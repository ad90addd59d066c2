"""``newsletter report ISSUE`` and ``newsletter analytics prune``: how an issue did."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from newsletter.cli import AppContext, main, pass_app
from newsletter.report import OPENS_NOTE, IssueReport, Level, bounce_level, complaint_level
from newsletter.store.analytics import ATTRIBUTION_WINDOW, prune_hits
from newsletter.store.database import open_current
from newsletter.store.issues import issues_by_slug


def _slug(issue: str) -> str:
    path = Path(issue)
    if path.suffix == ".md" or path.exists():
        from newsletter.issues import slug_for

        return slug_for(path)
    return issue


@main.command("report")
@click.argument("issue")
@click.option("--list", "list_slug", metavar="LIST", help="Only the send to this list.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable (docs/analytics.md).")
@pass_app
def report_command(app: AppContext, issue: str, list_slug: str | None, as_json: bool) -> None:
    """How ISSUE (a file or slug) did: deliveries, bounces, complaints, unsubscribes, clicks."""
    from newsletter.report import issue_report

    settings = app.settings
    slug = _slug(issue)
    engine = open_current(settings.database_url)
    try:
        refs = [r for r in issues_by_slug(engine, slug) if list_slug in (None, r.list_slug)]
        reports = [issue_report(engine, ref) for ref in refs]
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps({"reports": [r.as_json() for r in reports]}, indent=2))
        return
    if not reports:
        click.echo(f"{slug}: not sent yet")
        sys.exit(1)
    for index, report in enumerate(reports):
        if index:
            click.echo()
        _print(report)


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.2f} %"


def _flag(level: Level, what: str) -> str:
    if level is Level.ALARM:
        return click.style(f"  ALARM: {what}", fg="red", bold=True)
    if level is Level.WARN:
        return click.style(f"  warning: {what}", fg="yellow")
    return ""


def _print(r: IssueReport) -> None:
    when = r.started_at.astimezone().strftime("%Y-%m-%d %H:%M")
    click.echo(f"{r.slug} to {r.list_slug} ({r.status}), started {when}")
    click.echo(f"  {r.title}")
    rows = [
        ("recipients", f"{r.recipients}"),
        (
            "delivered",
            f"{r.delivered} ({_pct(r.delivered / r.recipients if r.recipients else None)})",
        ),
    ]
    if r.pending:
        rows.append(("still to send", f"{r.pending}"))
    bl = bounce_level(r.hard_bounce_rate)
    cl = complaint_level(r.complaint_rate)
    rows += [
        (
            "hard bounces",
            f"{r.events.hard_bounces} ({_pct(r.hard_bounce_rate)} of attempted)"
            + _flag(bl, "2 % or more; clean the list"),
        ),
        ("soft bounces", f"{r.events.soft_bounces}"),
        (
            "complaints",
            f"{r.events.complaints} ({_pct(r.complaint_rate)} of delivered)"
            + _flag(cl, "providers act at 0.1 % and block at 0.3 %"),
        ),
        (
            "unsubscribes",
            f"{r.engagement.unsubscribes} within {ATTRIBUTION_WINDOW.days} days "
            f"({_pct(r.unsubscribe_rate)})",
        ),
    ]
    if r.tracking.clicks:
        unique = f", {r.unique_clickers} readers" if r.unique_clickers is not None else ""
        basis = (
            "distinct readers"
            if r.click_through_basis == "unique_recipients"
            else "clicks per delivered copy, not counted per reader"
        )
        rows.append(
            (
                "clicks",
                f"{r.clicks}{unique}, {r.clicks_automated} automated apart; click-through "
                f"{_pct(r.click_through_rate)} ({basis})",
            )
        )
    else:
        rows.append(("clicks", "not counted for this send ([analytics] clicks)"))
    if r.tracking.opens:
        g = r.engagement
        unique = f", {g.unique_opens} readers" if r.tracking.per_subscriber else ""
        rows.append(("opens (estimate)", f"{g.opens}{unique}, {g.opens_automated} automated"))
    for label, value in rows:
        click.echo(f"  {label:<17}{value}")
    if r.tracking.opens:
        click.echo(f"  note: {OPENS_NOTE}")
    if r.links:
        click.echo("  links:")
        click.echo(f"    {'clicks':>7} {'unique':>7} {'automated':>9}  link")
        for link in r.links:
            unique = "-" if link.unique is None else str(link.unique)
            where = " (text part)" if link.part == "text" else ""
            click.echo(
                f"    {link.clicks:>7} {unique:>7} {link.automated:>9}  "
                f"{link.label}{where} <{link.url}>"
            )


@main.group("analytics")
def analytics_group() -> None:
    """Analytics housekeeping."""


@analytics_group.command("prune")
@pass_app
def prune_command(app: AppContext) -> None:
    """Delete raw click and open rows older than [analytics] retention_days (totals stay)."""
    settings = app.settings
    engine = open_current(settings.database_url)
    try:
        days = settings.analytics.retention_days
        deleted = prune_hits(engine, now=datetime.now(UTC), retention_days=days)
    finally:
        engine.dispose()
    click.echo(f"deleted {deleted} raw click and open rows older than {days} days")
