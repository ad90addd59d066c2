"""``newsletter init`` and ``newsletter subscribers add|import|export|list|count|remove|show``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from sqlalchemy import Connection, Engine

from newsletter.addresses import normalize_email
from newsletter.cli import AppContext, main, pass_app
from newsletter.config import Settings
from newsletter.errors import StoreError
from newsletter.inbound.mailto import MailRequest
from newsletter.states import SubscriptionStatus, SuppressionReason
from newsletter.store.database import display_url, initialise, make_engine, open_current
from newsletter.store.importing import ImportReport, RejectsWriter, export_csv, import_csv
from newsletter.store.subscribers import (
    add_subscriber,
    count_subscribers,
    counts_by_status,
    erase,
    find_by_email,
    is_suppressed,
    iter_subscribers,
    resolve_lists,
    suppress,
    suppression_reason,
    unsubscribe,
)

STATUS_CHOICES = [s.value for s in SubscriptionStatus] + ["all"]


def _shown(value: object) -> str:
    """``value`` for the terminal: control characters from imported data appear escaped.

    Attributes come from CSV cells as they were; an escape sequence in one would otherwise
    recolour the terminal, retitle it or (OSC 52) write the operator's clipboard.
    """
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


@contextmanager
def open_store(settings: Settings) -> Iterator[Engine]:
    """An engine on a database whose schema is current (otherwise: run ``init``), disposed after."""
    engine = open_current(settings.database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _one_list(conn: Connection, settings: Settings, slug: str | None) -> tuple[str, int]:
    """(slug, id) of ``slug`` or of the default list."""
    ((found, list_id),) = resolve_lists(conn, settings, [slug] if slug else []).items()
    return found, list_id


def _status(value: str | None) -> SubscriptionStatus | None:
    return None if value in (None, "all") else SubscriptionStatus(value)


@main.command("init")
@pass_app
def init(app: AppContext) -> None:
    """Create or upgrade the database and the configured lists (safe to run again)."""
    settings = app.settings
    engine = make_engine(settings.database_url)
    try:
        ids = initialise(engine, settings)
    finally:
        engine.dispose()
    click.echo(f"Database ready: {display_url(settings.database_url)}")
    click.echo("Lists: " + ", ".join(sorted(ids)))


@main.group("subscribers")
def subscribers_group() -> None:
    """Add, import, export, list, count, remove and show subscribers."""


list_option = click.option(
    "--list",
    "list_slug",
    metavar="LIST",
    help="List slug from newsletter.toml (default: the publication's default list).",
)


@subscribers_group.command("add")
@click.argument("email")
@click.option("--name", help="Display name.")
@click.option("--list", "list_slugs", multiple=True, metavar="LIST", help="List slug (repeatable).")
@click.option(
    "--unconfirmed",
    is_flag=True,
    help="Add as waiting for confirmation instead of confirmed.",
)
@pass_app
def add(
    app: AppContext, email: str, name: str | None, list_slugs: tuple[str, ...], unconfirmed: bool
) -> None:
    """Subscribe EMAIL on your authority (they agreed elsewhere). Suppressed addresses refused."""
    settings = app.settings
    with open_store(settings) as engine:
        status = SubscriptionStatus.UNCONFIRMED if unconfirmed else SubscriptionStatus.CONFIRMED
        with engine.begin() as conn:
            ids = resolve_lists(conn, settings, list_slugs)
            subscriber = add_subscriber(
                conn, email, list_ids=ids.values(), name=name, source="cli", status=status
            )
        click.echo(f"{subscriber.email_normalized}: {status.value} on {', '.join(ids)}")


@subscribers_group.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@list_option
@click.option(
    "--rejects",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write rejected rows (default: FILE.rejects.csv beside FILE).",
)
@click.option("--delimiter", help="Field delimiter (default: detected from the header).")
@click.option(
    "--encoding",
    help=(
        "Read the whole file in this encoding, e.g. shift_jis, cp1251 (default: UTF-8, "
        "lines that are not UTF-8 as Windows-1252 if they read as text, else refused)."
    ),
)
@click.option("--no-progress", is_flag=True, help="Do not show a progress bar.")
@pass_app
def import_(
    app: AppContext,
    file: Path,
    list_slug: str | None,
    rejects: Path | None,
    delimiter: str | None,
    encoding: str | None,
    no_progress: bool,
) -> None:
    """Import FILE.csv (header row with an 'email' column; 'name'; other columns = attributes).

    Exports of Mailchimp, Substack, Buttondown, Ghost and listmonk are read as they are.
    Valid rows join LIST as confirmed; every other row goes to the rejects file with its
    line(s) and the reason. Running the same import again changes nothing.
    """
    settings = app.settings
    with open_store(settings) as engine:
        with engine.begin() as conn:
            slug, list_id = _one_list(conn, settings, list_slug)
        rejects_path = rejects or file.with_name(file.stem + ".rejects.csv")
        console = Console(stderr=True)
        size = file.stat().st_size if file.exists() else 0
        sink = RejectsWriter(rejects_path)
        with (
            closing(sink),
            Progress(
                TextColumn("[bold]importing"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
                disable=no_progress or not console.is_terminal,
            ) as progress,
        ):
            task = progress.add_task("import", total=size)
            report = import_csv(
                engine,
                file,
                list_id=list_id,
                list_slug=slug,
                on_reject=sink,
                on_header=sink.set_header,
                delimiter=delimiter,
                encoding=encoding,
                progress=lambda done: progress.update(task, completed=done),
            )
    _print_report(report, slug, rejects_path)


def _print_report(report: ImportReport, slug: str, rejects_path: Path) -> None:
    if report.delimiter != ",":
        names = {";": "semicolons", "\t": "tabs", "|": "pipes"}
        click.echo(f"note: the file uses {names.get(report.delimiter, report.delimiter)}")
    if report.fallback_count:
        shown = ", ".join(str(n) for n in report.fallback_lines)
        more = "" if report.fallback_count <= len(report.fallback_lines) else ", ..."
        click.secho(
            f"warning: {report.fallback_count} line(s) were not UTF-8 and were read as "
            f"Windows-1252/Latin-1 (lines {shown}{more}); check the names look right, or pass "
            "--encoding",
            fg="yellow",
            err=True,
        )
    for problem in report.problems:
        click.secho(f"warning: line {problem.lines}: {problem.reason}", fg="yellow", err=True)
    if report.problem_count > len(report.problems):
        left = report.problem_count - len(report.problems)
        click.secho(f"warning: {left} more such row(s) in the rejects file", fg="yellow", err=True)
    click.echo(
        f"{report.rows} rows: {report.added} new subscribers, {report.subscribed} joined {slug}, "
        f"{report.already} already on it, {report.duplicates} repeated in the file, "
        f"{report.rejected} rejected"
        + (f", {report.blank} blank lines skipped" if report.blank else "")
    )
    if report.rejected:
        click.echo(f"rejected rows (with line numbers and reasons): {rejects_path}")


@subscribers_group.command("export")
@list_option
@click.option(
    "--status",
    type=click.Choice(STATUS_CHOICES),
    default="confirmed",
    show_default=True,
    help="Which subscriptions to export.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File to write (default: standard output).",
)
@click.option(
    "--excel-safe",
    is_flag=True,
    help=(
        "For opening in a spreadsheet: a cell starting with = + - @ gets a leading ' so it is "
        "never run as a formula (not for re-import)."
    ),
)
@pass_app
def export(
    app: AppContext, list_slug: str | None, status: str, output: Path | None, excel_safe: bool
) -> None:
    """Write the subscribers of LIST as CSV; `subscribers import` reads it back exactly."""
    settings = app.settings
    with open_store(settings) as engine:
        with engine.begin() as conn:
            _, list_id = _one_list(conn, settings, list_slug)
            if output is None:
                count = export_csv(
                    conn,
                    sys.stdout,
                    list_id=list_id,
                    status=_status(status),
                    excel_safe=excel_safe,
                )
            else:
                with output.open("w", encoding="utf-8", newline="") as fh:
                    count = export_csv(
                        conn, fh, list_id=list_id, status=_status(status), excel_safe=excel_safe
                    )
        if output is not None:
            click.echo(f"{count} subscribers written to {output}", err=True)


@subscribers_group.command("list")
@list_option
@click.option("--status", type=click.Choice(STATUS_CHOICES), default="all", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0)
@pass_app
def list_(app: AppContext, list_slug: str | None, status: str, limit: int, offset: int) -> None:
    """Show subscribers of LIST, oldest first."""
    settings = app.settings
    with open_store(settings) as engine, engine.begin() as conn:
        _, list_id = _one_list(conn, settings, list_slug)
        for sub in iter_subscribers(
            conn, list_id=list_id, status=_status(status), limit=limit, offset=offset
        ):
            current = sub.subscription(list_id)
            state = current.status.value if current else "-"
            name = f"  {sub.name}" if sub.name else ""
            click.echo(f"{sub.email_normalized}  {state}{name}")


@subscribers_group.command("count")
@list_option
@pass_app
def count(app: AppContext, list_slug: str | None) -> None:
    """Count subscribers of LIST by status."""
    settings = app.settings
    with open_store(settings) as engine:
        with engine.begin() as conn:
            slug, list_id = _one_list(conn, settings, list_slug)
            counts = counts_by_status(conn, list_id)
            total = count_subscribers(conn)
        parts = ", ".join(f"{n} {status.value}" for status, n in counts.items())
        click.echo(f"{slug}: {parts} ({total} subscribers in the store)")


@subscribers_group.command("remove")
@click.argument("email")
@list_option
@click.option(
    "--erase",
    "erase_data",
    is_flag=True,
    help="Delete all personal data (GDPR); only a hash stays, so they are never re-added.",
)
@pass_app
def remove(app: AppContext, email: str, list_slug: str | None, erase_data: bool) -> None:
    """Unsubscribe EMAIL from LIST, or (without --list) from everything, for good."""
    settings = app.settings
    with open_store(settings) as engine:
        normalized = normalize_email(email)
        with engine.begin() as conn:
            if erase_data:
                deleted = erase(conn, normalized)
                what = "personal data deleted" if deleted else "no subscriber record"
                click.echo(f"{normalized}: {what}; address hash kept on the suppression list")
                return
            if list_slug:
                ((slug, list_id),) = resolve_lists(conn, settings, [list_slug]).items()
                subscriber = find_by_email(conn, normalized)
                if subscriber is None or not unsubscribe(conn, subscriber.id, list_id):
                    raise StoreError(f"{normalized} is not subscribed to {slug}")
                if is_suppressed(conn, normalized):
                    # that was the last list: leaving everything suppresses (store.unsubscribe)
                    click.echo(f"{normalized}: unsubscribed from {slug}, the last list; suppressed")
                else:
                    click.echo(f"{normalized}: unsubscribed from {slug}")
                return
            suppress(conn, normalized, SuppressionReason.UNSUBSCRIBED, "removed with the CLI")
            click.echo(f"{normalized}: unsubscribed from all lists and suppressed")


@subscribers_group.command("show")
@click.argument("email")
@pass_app
def show(app: AppContext, email: str) -> None:
    """Everything the store holds about EMAIL."""
    settings = app.settings
    with open_store(settings) as engine:
        with engine.begin() as conn:
            subscriber = find_by_email(conn, email)
            reason = suppression_reason(conn, email)
        if subscriber is None and reason is None:
            raise StoreError(f"{normalize_email(email)} is not in the store")
        if subscriber is not None:
            click.echo(f"email:      {subscriber.email}")
            click.echo(f"name:       {subscriber.name or '-'}")
            click.echo(f"source:     {_shown(subscriber.source or '-')}")
            click.echo(f"created:    {subscriber.created_at.isoformat(timespec='seconds')}")
            confirmed = subscriber.confirmed_at
            click.echo(
                f"confirmed:  {confirmed.isoformat(timespec='seconds') if confirmed else '-'}"
            )
            for key, value in subscriber.attributes.items():
                click.echo(f"attribute:  {_shown(key)} = {_shown(value)}")
            for sub in subscriber.subscriptions:
                when = sub.unsubscribed_at or sub.confirmed_at or sub.created_at
                click.echo(
                    f"list:       {sub.list_slug}: {sub.status.value} "
                    f"since {when.isoformat(timespec='seconds')}"
                )
        if reason is not None:
            click.echo(f"suppressed: {reason.value}")
        if subscriber is not None:
            from newsletter.store.events import subscriber_events

            with engine.connect() as conn:
                events = subscriber_events(conn, subscriber.id, limit=50)
            for event in events:
                kind = (
                    f"{event.severity.value} {event.kind.value}"
                    if event.severity
                    else event.kind.value
                )
                about = f" {event.issue_slug}" if event.issue_slug else ""
                detail = " ".join(p for p in (event.status, event.diagnostic) if p)
                effect = f" -> {event.effect}" if event.effect else ""
                click.echo(
                    f"event:      {event.occurred_at.isoformat(timespec='seconds')} "
                    f"{event.source.value} {kind}{about}{effect}"
                    + (f": {_shown(detail)}" if detail else "")
                )


@subscribers_group.command("unsubscribe-mail")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@pass_app
def unsubscribe_mail(app: AppContext, paths: tuple[Path, ...]) -> None:
    """Honour unsubscribe requests sent to the List-Unsubscribe mailto: address.

    PATHS are .eml files or Maildir folders (their new/ and cur/ messages). Each request is
    acted on by the signed token in its subject, never by its sender; running it again over
    the same messages changes nothing. Every message goes through the same intake as
    `newsletter bounces import`, so a bounce or complaint in the same mailbox is taken too.
    """
    from newsletter.inbound.intake import Intake
    from newsletter.inbound.mailto import unsubscribe_request
    from newsletter.inbound.model import ReportKind
    from newsletter.inbound.reports import parse_report
    from newsletter.states import EventSource

    settings = app.settings
    counts: dict[MailRequest, int] = dict.fromkeys(MailRequest, 0)
    with open_store(settings) as engine:
        intake = Intake(settings, engine)
        for path in _message_files(paths):
            data = path.read_bytes()
            report = parse_report(data)
            with engine.begin() as conn:
                if report.kind is ReportKind.UNSUBSCRIBE:
                    outcome = unsubscribe_request(
                        conn, settings.token_keys, report, source=EventSource.IMPORT, raw=data
                    )
                    result, where = outcome.result, outcome.list_slug
                else:
                    applied = intake.take_report(report, EventSource.IMPORT, raw=data, conn=conn)
                    result = MailRequest.NOT_A_REQUEST
                    where = "already received" if applied.duplicate else None
                    if applied.outcome is not None:
                        where = f"{report.kind.value}: {applied.outcome.value}"
            counts[result] += 1
            click.echo(f"{path.name}: {result.value}" + (f" ({where})" if where else ""))
    click.echo(", ".join(f"{n} {result.value}" for result, n in counts.items()))


def _message_files(paths: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            for sub in ("new", "cur"):
                if (path / sub).is_dir():
                    files.extend(sorted(p for p in (path / sub).iterdir() if p.is_file()))
        else:
            files.append(path)
    return files
