"""``newsletter inbound`` and ``newsletter bounces import|list|show``: what comes back."""

from __future__ import annotations

import re
import signal
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from newsletter.cli import AppContext, main, pass_app
from newsletter.cli.subscribers import _shown, open_store
from newsletter.errors import ConfigError, StoreError
from newsletter.inbound.intake import Intake
from newsletter.inbound.mailboxes import ImapMailbox, Item, local_items, parse_imap_url
from newsletter.states import EventSource
from newsletter.store.events import (
    Applied,
    list_events,
    prune_raw,
    raw_report,
    review_reports,
)
from newsletter.store.issues import issues_by_slug

_SINCE = re.compile(r"(\d+)\s*([dhw])")


def parse_since(value: str | None, *, now: datetime | None = None) -> datetime | None:
    """``7d``, ``24h``, ``2w`` ago, or a date/time (``2026-11-01``, ISO 8601, UTC if no zone)."""
    if not value:
        return None
    now = now or datetime.now(UTC)
    match = _SINCE.fullmatch(value.strip())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        hours = {"h": 1, "d": 24, "w": 24 * 7}[unit]
        return now - timedelta(hours=amount * hours)
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: use 7d, 24h, 2w or a date such as 2026-11-01", param_hint="--since"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _describe(applied: Applied) -> str:
    if applied.duplicate:
        return "already received"
    parts = [applied.outcome.value]  # type: ignore[union-attr]
    if applied.effect is not None and applied.outcome.value != "review":  # type: ignore[union-attr]
        parts.append(applied.effect.value)
    if applied.email:
        parts.append(applied.email)
    if applied.suppressed:
        parts.append("suppressed")
    if applied.reason and applied.outcome.value == "review":  # type: ignore[union-attr]
        parts.append(applied.reason)
    return ": ".join(parts[:1]) + (" (" + ", ".join(parts[1:]) + ")" if parts[1:] else "")


@main.group("bounces")
def bounces_group() -> None:
    """Take in and look at bounces, complaints and other reports."""


@bounces_group.command("import")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--imap", "imap_url", metavar="URL", help="Poll an IMAP folder: imaps://user@host/INBOX."
)
@click.option("--quiet", is_flag=True, help="Only the totals.")
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Processes that parse files (the store is written by one).",
)
@pass_app
def import_command(
    app: AppContext, paths: tuple[Path, ...], imap_url: str | None, quiet: bool, jobs: int
) -> None:
    """Take in reports from Maildir folders, mbox files, .eml files or an IMAP mailbox.

    Each message is parsed and matched to the delivery its signed token names; what cannot be
    matched is kept for review (`newsletter bounces list --review`). Running it again over the
    same messages changes nothing.
    """
    if not paths and not imap_url:
        raise click.UsageError("give Maildir/mbox/.eml PATHS or --imap URL")
    settings = app.settings
    totals: Counter[str] = Counter()

    def show(name: str, applied: Applied) -> None:
        what = _describe(applied)
        totals[what.split(" (")[0]] += 1
        if not quiet:
            click.echo(f"{_shown(name)}: {what}")

    with open_store(settings) as engine:
        intake = Intake(settings, engine)
        if paths:
            items = list(local_items(paths))
            results = intake.take_many(
                ((item.data, None) for item in items), EventSource.IMPORT, workers=jobs
            )
            for item, applied in zip(items, results, strict=True):
                show(item.name, applied)
        if imap_url:
            source = parse_imap_url(imap_url, user=settings.bounces.imap_user)
            with ImapMailbox(
                source, settings.imap_password, ca_file=settings.bounces.imap_ca_file
            ) as box:
                taken: list[bytes] = []
                for uid, item in box.unseen():
                    show(item.name, intake.take(item.data, EventSource.IMAP))
                    taken.append(uid)
                box.mark_seen(taken)
        with engine.begin() as conn:
            prune_raw(conn, before=datetime.now(UTC) - timedelta(days=settings.bounces.raw_days))
    summary = ", ".join(f"{n} {what}" for what, n in sorted(totals.items())) or "no messages"
    click.echo(summary)


@bounces_group.command("list")
@click.option("--since", metavar="WHEN", help="Only events since WHEN: 7d, 24h, 2w or a date.")
@click.option("--issue", "issue_slug", metavar="ISSUE", help="Only events about this issue (slug).")
@click.option(
    "--review", is_flag=True, help="Reports that could not be matched, waiting for a person."
)
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@pass_app
def list_command(
    app: AppContext, since: str | None, issue_slug: str | None, review: bool, limit: int
) -> None:
    """Events newest first: bounces (hard/soft), delays, complaints, auto-replies, unsubscribes."""
    settings = app.settings
    when = parse_since(since)
    with open_store(settings) as engine:
        if review:
            with engine.connect() as conn:
                rows = review_reports(conn, since=when, limit=limit)
            for r in rows:
                click.echo(
                    f"#{r.id} {r.received_at.isoformat(timespec='seconds')} {r.source.value} "
                    f"{r.kind}: {_shown(r.reason or '-')} ({r.raw_size:,} bytes; "
                    f"`newsletter bounces show {r.id}`)"
                )
            click.echo(f"{len(rows)} report(s) in review")
            return
        issue_ids = None
        if issue_slug:
            issue_ids = [ref.id for ref in issues_by_slug(engine, issue_slug)]
            if not issue_ids:
                raise StoreError(f"{issue_slug}: not sent yet")
        with engine.connect() as conn:
            events = list_events(conn, since=when, issue_ids=issue_ids, limit=limit)
    for e in events:
        kind = f"{e.severity.value} {e.kind.value}" if e.severity else e.kind.value
        about = f"{e.issue_slug}/{e.list_slug}" if e.issue_slug else (e.list_slug or "-")
        detail = " ".join(p for p in (e.status, e.diagnostic) if p) or e.feedback_type or ""
        effect = f" -> {e.effect}" if e.effect else ""
        counted = "" if e.counted or not e.severity else " (counted before)"
        click.echo(
            f"{e.occurred_at.isoformat(timespec='seconds')} {e.source.value:<8} {kind:<14} "
            f"{_shown(e.email or '-')} {about}{effect}{counted}"
            + (f"\n    {_shown(detail)}" if detail else "")
        )
    click.echo(f"{len(events)} event(s)")


@bounces_group.command("show")
@click.argument("report_id", type=int)
@pass_app
def show_command(app: AppContext, report_id: int) -> None:
    """Print a stored report as it arrived (escapes shown, never interpreted)."""
    with open_store(app.settings) as engine, engine.connect() as conn:
        data = raw_report(conn, report_id)
    if data is None:
        raise StoreError(
            f"report #{report_id}: no stored bytes (unknown, pruned, or a webhook event)"
        )
    for line in data.decode("utf-8", "replace").splitlines():
        click.echo(_shown(line))


@main.command("inbound")
@click.option("--host", default=None, help="Interface to bind (default: bounces.listen_host).")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="Default: bounces.listen_port."
)
@pass_app
def inbound_command(app: AppContext, host: str | None, port: int | None) -> None:
    """Receive bounces, complaints and mailto unsubscribes by SMTP for the bounce domain.

    Run it behind Postfix (a transport map sends the bounce domain here) or as that domain's
    MX. It takes mail only for the VERP, feedback and unsubscribe addresses and answers 550
    to anything else.
    """
    from newsletter.inbound.server import InboundServer

    settings = app.settings
    if settings.bounce_domain is None:
        raise ConfigError("bounces.domain", "set the bounce domain the receiver takes mail for")
    stop = threading.Event()

    def stopping(signum: int, frame: object) -> None:
        stop.set()

    with open_store(settings) as engine:
        server = InboundServer(settings, Intake(settings, engine), host=host, port=port)
        server.start()
        signal.signal(signal.SIGTERM, stopping)
        click.echo(
            f"Taking reports for {settings.bounce_domain} on {server.host}:{server.port} "
            "(Ctrl-C stops)"
        )
        try:
            while not stop.wait(3600):
                # raw reports are bounded in time too: older ones lose their bytes, not rows
                with engine.begin() as conn:
                    prune_raw(
                        conn, before=datetime.now(UTC) - timedelta(days=settings.bounces.raw_days)
                    )
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    click.echo(f"stopped; {server.handler.received} message(s) taken")
    sys.exit(0)


__all__ = ["Item", "parse_since"]
