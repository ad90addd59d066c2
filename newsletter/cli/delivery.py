"""``newsletter send|worker|status|sink|demo``: delivering issues and watching them go out."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from sqlalchemy import Engine

from newsletter.addresses import normalize_email, sender_domain
from newsletter.cli import AppContext, main, pass_app
from newsletter.cli.progress import ProgressBar
from newsletter.config import Settings
from newsletter.delivery import Policy
from newsletter.emails import NO_LIST, NOBODY_UID, TEST_PREFIX, stand_in_joins, test_copy
from newsletter.errors import DeliveryInterrupted, IssueError, NewsletterError
from newsletter.images import derive_images, plan_images
from newsletter.joins import placeholders
from newsletter.message import MessageTemplate, Personalization
from newsletter.model import IssueStatus, RenderedIssue
from newsletter.preflight import Finding, preflight
from newsletter.sending import SendReport, run_send
from newsletter.sink import Sink, count_messages
from newsletter.states import DeliveryStatus
from newsletter.store.database import display_url, initialise, make_engine, open_current
from newsletter.store.issues import IssueRef, find_issue, issues_by_slug
from newsletter.store.ledger import Holder, SqlLedger
from newsletter.tokens import TokenPurpose, make_token
from newsletter.transport import send_single
from newsletter.urls import unsubscribe_mailto, unsubscribe_url
from newsletter.worker import run_worker

# EX_TEMPFAIL (sysexits.h): the send is not finished; running it again will continue it
EXIT_INCOMPLETE = 75
# a stop on SIGINT (Ctrl-C) or SIGTERM exits as a shell reports that signal: 128 + its number
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM


@contextlib.contextmanager
def _terminate_outside_the_loop() -> Iterator[None]:
    """SIGTERM before or after the delivery loop exits 143, also as PID 1 (which ignores it).

    While the loop runs the delivery engine handles SIGTERM itself (and stops cleanly).
    """

    def terminate(_signum: int, _frame: object) -> None:
        raise SystemExit(EXIT_TERMINATED)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


DEMO_SUBSCRIBERS = (
    ("ada@example.org", "Ada Lovelace"),
    ("grace@example.org", "Grace Hopper"),
    ("alan@example.org", "Alan Turing"),
    ("katherine@example.org", "Katherine Johnson"),
    ("edsger@example.org", "Edsger Dijkstra"),
)


def _open(settings: Settings) -> Engine:
    """An engine on a store whose schema is current; otherwise say to run ``init``."""
    return open_current(settings.database_url)


def _issue_path(settings: Settings, issue: str) -> Path:
    path = Path(issue)
    if path.exists():
        return path
    candidate = settings.issues_dir / issue
    if candidate.exists():
        return candidate
    matches = sorted(settings.issues_dir.glob(f"*{issue}*.md"))
    if len(matches) == 1:
        return matches[0]
    raise IssueError(f"no such issue file (looked in {settings.issues_dir})", path=issue)


def _check(settings: Settings, path: Path) -> None:
    from newsletter.checks import check_issue

    problems = check_issue(path, settings)
    errors = [p for p in problems if p.is_error]
    if errors:
        for problem in errors:
            click.secho(str(problem), fg="red", err=True)
        click.secho(
            f"not sending: {len(errors)} error(s) in {path}; fix them (see `newsletter check`)",
            fg="red",
            err=True,
        )
        sys.exit(1)


def _preflight(settings: Settings, path: Path, *, test_copy: bool, dry_run: bool) -> list[Finding]:
    """The preflight findings for sending ``path``; outside a dry run the warnings are printed
    and an error stops here (exit 1): nothing is recorded, sent or published."""
    from newsletter.issues import load_issue

    findings = preflight(settings, load_issue(path, settings).status, test_copy=test_copy)
    if dry_run:
        return findings
    for finding in findings:
        click.secho(str(finding), fg="red" if finding.is_error else "yellow", err=True)
    errors = [f for f in findings if f.is_error]
    if errors:
        click.secho(
            f"not sending {path.name}: {len(errors)} preflight error(s); nothing was recorded "
            "or sent (`newsletter send --dry-run` lists every finding)",
            fg="red",
            err=True,
        )
        sys.exit(1)
    return findings


def _print_findings(findings: list[Finding]) -> None:
    if not findings:
        click.echo("  preflight:  nothing in the way")
        return
    click.echo("  preflight:")
    for finding in findings:
        click.echo(f"    {finding}")
    if any(f.is_error for f in findings):
        click.echo("  a real send would refuse: nothing would be recorded or sent")


list_option = click.option(
    "--list",
    "list_slug",
    metavar="LIST",
    help="List to send to (default: the issue's `list`, else the publication's default).",
)


@main.command("send")
@click.argument("issue")
@list_option
@click.option("--test", "test_to", metavar="ADDR", help="Send one marked test copy to ADDR.")
@click.option("--dry-run", is_flag=True, help="Show what would be sent; send nothing.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@pass_app
def send_command(
    app: AppContext,
    issue: str,
    list_slug: str | None,
    test_to: str | None,
    dry_run: bool,
    no_progress: bool,
) -> None:
    """Send ISSUE (a file or slug) to every confirmed subscriber of the list.

    Safe to run again: a send that was interrupted continues where it stopped, and a finished
    one sends nothing.
    """
    settings = app.settings
    path = _issue_path(settings, issue)
    _check(settings, path)
    findings = _preflight(settings, path, test_copy=bool(test_to), dry_run=dry_run)
    if test_to:
        _send_test(settings, path, test_to, list_slug)
        return
    engine = _open(settings)
    rerun = f"newsletter send {issue}"
    try:
        if dry_run:
            _dry_run(settings, engine, path, list_slug)
            _print_findings(findings)
            if any(f.is_error for f in findings):
                sys.exit(1)
            return
        bar = None if no_progress else ProgressBar()
        policy = Policy.from_settings(settings).for_send(settings)
        with _terminate_outside_the_loop():
            report = run_send(
                settings, engine, path, list_slug=list_slug, progress=bar, policy=policy
            )
        held = _held(settings, engine, report)
    except DeliveryInterrupted as stop:
        click.secho(f"{stop}; run `{rerun}` again to continue", fg="yellow", err=True)
        sys.exit(stop.exit_code)
    except KeyboardInterrupt:
        click.secho(
            f"interrupted; the ledger keeps what was sent: run `{rerun}` again to continue",
            fg="yellow",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    finally:
        engine.dispose()
    _print_report(report, rerun=rerun, held=held)


def _held(settings: Settings, engine: Engine, report: SendReport) -> list[str]:
    """What the rows in ``sending`` wait for: other senders' leases, one line per sender."""
    if not report.counts.get(DeliveryStatus.SENDING):
        return []
    ref = find_issue(engine, report.issue_slug, report.list_slug)
    if ref is None:
        return []
    lease = settings.delivery.lease_seconds
    holders = SqlLedger(engine).holders(ref, lease_seconds=lease)
    return [_holder_line(h, lease, datetime.now(UTC)) for h in holders]


def _holder_line(holder: Holder, lease_seconds: float, now: datetime) -> str:
    # a live sender renews its lease every third of it; one that missed that has stopped
    # (or cannot reach the database), and its rows come back when the lease runs out
    silent = now - holder.renewed_at
    back = _when(holder.expires_at)
    if silent > timedelta(seconds=lease_seconds / 3 + 30):
        stopped = _when(holder.renewed_at)
        return f"{holder.rows} held by a sender that stopped {stopped}, back {back}"
    return f"{holder.rows} held by another sender ({holder.owner}), its lease ends {back}"


def _print_report(report: SendReport, *, rerun: str, held: Sequence[str] = ()) -> None:
    if report.created is None and report.sent_now == 0 and report.finished:
        click.echo(
            f"{report.issue_slug} was already sent to {report.list_slug}; nothing new to send."
        )
    else:
        click.echo(
            f"{report.issue_slug} to {report.list_slug}: {report.sent_now} sent now "
            f"in {report.duration_seconds:.1f} s ({report.rate:.0f} msg/s)"
        )
    click.echo("  " + _counts_line(report.counts))
    for email, reply in report.failures[:10]:
        click.echo(f"  failed: {email}: {reply}")
    if len(report.failures) > 10:
        click.echo(f"  ... see `newsletter status {report.issue_slug}` for all failures")
    if report.paused is not None:
        what = "hourly cap reached" if report.quota else "relay unreachable"
        click.secho(
            f"{what}, {report.pending} pending, run `{rerun}` again ({report.paused})",
            fg="yellow",
            err=True,
        )
        sys.exit(EXIT_INCOMPLETE)
    deferred = report.counts.get(DeliveryStatus.PENDING, 0)
    for line in held:
        click.secho(line, fg="yellow", err=True)
    if deferred:
        when = _when(report.next_attempt_at)
        click.secho(
            f"{deferred} deferred after temporary failures; next retry {when}. "
            f"Run `{rerun}` again then, or keep `newsletter worker` running.",
            fg="yellow",
            err=True,
        )
    if report.pending:
        if not deferred:
            click.secho(
                f"Run `{rerun}` again after that to finish the send.", fg="yellow", err=True
            )
        sys.exit(EXIT_INCOMPLETE)


def _counts_line(counts: Mapping[DeliveryStatus, int]) -> str:
    return ", ".join(f"{status.value} {counts.get(status, 0)}" for status in DeliveryStatus)


def _when(value: datetime | None) -> str:
    if value is None:
        return "when a lease expires"
    return "at " + value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _dry_run(settings: Settings, engine: Engine, path: Path, list_slug: str | None) -> None:
    from newsletter.issues import load_issue
    from newsletter.rendering import Renderer
    from newsletter.store.subscribers import count_deliverable, list_ids

    issue = load_issue(path, settings)
    slug = list_slug or issue.list or settings.publication.default_list
    mailing_list = settings.mailing_list(slug)
    # a dry run writes nothing, image copies included: the links are the same without them
    rendered = Renderer(settings).render(issue, plan_images(issue, settings))
    ledger = SqlLedger(engine)
    with engine.connect() as conn:
        list_id = list_ids(conn).get(slug)
        recipients = count_deliverable(conn, list_id) if list_id is not None else 0
    size = len(_sample(settings, rendered, mailing_list.slug))
    click.echo("Dry run: nothing is sent or recorded.")
    click.echo(f"  issue:      {issue.slug} ({path})")
    click.echo(f"  subject:    {rendered.subject}")
    click.echo(f"  from:       {settings.publication.sender}")
    click.echo(f"  list:       {slug} ({mailing_list.name})")
    click.echo(f"  relay:      {settings.smtp_url} ({settings.smtp.connections} connections)")
    click.echo(f"  message:    about {size / 1024:.0f} KiB each")
    ref = find_issue(engine, issue.slug, slug)
    if ref is None:
        click.echo(f"  recipients: {recipients} (confirmed, not suppressed)")
    else:
        counts = ledger.counts(ref)
        click.echo(f"  already begun: {_counts_line(counts)}")
        open_rows = counts[DeliveryStatus.PENDING] + counts[DeliveryStatus.SENDING]
        click.echo(f"  would send: {open_rows} (the rest of the recorded send)")


def _sample(settings: Settings, rendered: RenderedIssue, list_slug: str) -> bytes:
    """One recipient's bytes as the bulk path builds them, for a stand-in reader."""
    template = MessageTemplate(
        rendered, settings, settings.mailing_list(list_slug), placeholders=placeholders(rendered)
    )
    token = make_token(settings.secret_key, TokenPurpose.UNSUBSCRIBE, NOBODY_UID, NO_LIST)
    domain = sender_domain(settings.publication.sender)
    person = Personalization(
        to="reader@example.org",
        unsubscribe_url=unsubscribe_url(settings.publication.base_url, token),
        unsubscribe_mailto=unsubscribe_mailto(domain, token),
        message_id=f"<{token[:32]}@{domain}>",
        values=stand_in_joins(rendered, settings),
    )
    return template.render(person)


def _send_test(settings: Settings, path: Path, to: str, list_slug: str | None) -> None:
    from newsletter.issues import load_issue
    from newsletter.rendering import Renderer

    address = normalize_email(to)
    issue = load_issue(path, settings)
    slug = list_slug or issue.list or settings.publication.default_list
    rendered = Renderer(settings).render(issue, derive_images(issue, settings))
    message = test_copy(rendered, settings, settings.mailing_list(slug), to=address)
    asyncio.run(send_single(settings, message))
    click.echo(
        f"Test copy of {issue.slug} sent to {address} (subject starts with {TEST_PREFIX.strip()})."
    )


@main.command("worker")
@click.option("--until-done", is_flag=True, help="Exit once no send is left open.")
@click.option("--poll", default=5.0, show_default=True, help="Seconds between looks for work.")
@pass_app
def worker_command(app: AppContext, until_done: bool, poll: float) -> None:
    """Deliver every open send; run as many as you like against one PostgreSQL database."""
    settings = app.settings
    engine = _open(settings)

    def say(message: str) -> None:
        stamp = datetime.now(UTC).astimezone().strftime("%H:%M:%S")
        click.echo(f"[{stamp}] {message}")

    say(f"worker started; relay {settings.smtp_url}, {settings.smtp.connections} connections")
    try:
        with _terminate_outside_the_loop():
            total = run_worker(
                settings, engine, until_done=until_done, poll_seconds=poll, on_event=say
            )
    except DeliveryInterrupted as stop:
        say(f"{stop}; the other workers (or the next start) take the rest")
        sys.exit(stop.exit_code)
    except KeyboardInterrupt:
        say("stopped; unfinished rows go back to the queue when their lease expires")
        sys.exit(EXIT_INTERRUPTED)
    finally:
        engine.dispose()
    say(f"no open sends left; {total} messages sent")


@main.command("status")
@click.argument("issue")
@list_option
@pass_app
def status_command(app: AppContext, issue: str, list_slug: str | None) -> None:
    """Counts by state and the last errors of ISSUE's sends (a file or slug)."""
    settings = app.settings
    slug = issue
    path = Path(issue)
    if path.suffix == ".md" or path.exists():
        from newsletter.issues import slug_for

        slug = slug_for(path)
    engine = _open(settings)
    try:
        ledger = SqlLedger(engine)
        refs = [r for r in issues_by_slug(engine, slug) if list_slug in (None, r.list_slug)]
        if not refs:
            click.echo(f"{slug}: not sent yet")
            return
        for ref in refs:
            _show_status(ledger, ref)
    finally:
        engine.dispose()


def _show_status(ledger: SqlLedger, ref: IssueRef) -> None:
    counts = ledger.counts(ref)
    total = sum(counts.values())
    click.echo(f"{ref.slug} to {ref.list_slug}: {ref.status.value}, {total} recipients")
    for status in DeliveryStatus:
        click.echo(f"  {status.value:<8} {counts[status]:>8}")
    if counts[DeliveryStatus.PENDING] or counts[DeliveryStatus.SENDING]:
        click.echo(f"  next attempt {_when(ledger.next_attempt_at(ref))}")
    from newsletter.inbound.policy import rate_levels
    from newsletter.store.events import issue_feedback

    with ledger.engine.connect() as conn:
        feedback = issue_feedback(conn, ref.id)
    click.echo(f"  what came back (of {feedback.sent:,} sent):")
    for rate in rate_levels(
        sent=feedback.sent, hard=feedback.hard, soft=feedback.soft, complaints=feedback.complaints
    ):
        line = f"    {rate.line()}"
        if rate.level.value == "ok":
            click.echo(line)
        else:
            click.secho(line, fg="red" if rate.level.value == "alarm" else "yellow")
    if feedback.auto_replies:
        click.echo(f"    auto-replies: {feedback.auto_replies:,} (never counted)")
    failures = ledger.failures(ref, limit=10)
    if failures:
        click.echo("  last errors:")
        for f in failures:
            code = f"{f.code} " if f.code else ""
            click.echo(
                f"    {f.email}: {f.status.value} after {f.attempts} attempt(s): {code}{f.reply}"
            )


@main.command("sink")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8025, show_default=True, type=int)
@click.option("--maildir", type=click.Path(path_type=Path, file_okay=False), default=None)
@pass_app
def sink_command(app: AppContext, host: str, port: int, maildir: Path | None) -> None:
    """Run a local SMTP server that stores every message it gets in a Maildir."""
    settings = app.settings
    target = maildir or settings.maildir
    sink = Sink(target, host=host, port=port)
    sink.start()
    click.echo(f"SMTP sink on {sink.url}, storing into {target}/new (Ctrl-C to stop)")
    click.echo(f'Point newsletter at it with smtp_url = "{sink.url}"')
    seen = 0
    try:
        while True:
            time.sleep(1)
            if sink.handler.received != seen:
                seen = sink.handler.received
                click.echo(f"  {seen} message(s) received")
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()
    click.echo(f"sink stopped; {sink.handler.received} message(s) received")


@main.command("demo")
@pass_app
def demo_command(app: AppContext) -> None:
    """Set up the local store, add demo subscribers and send the newest ready issue to a sink."""
    from newsletter.store.subscribers import add_subscriber

    settings = app.settings
    engine = make_engine(settings.database_url)
    try:
        ids = initialise(engine, settings)
        where = display_url(settings.database_url)
        click.echo(f"1. Database ready ({where}); lists: {', '.join(sorted(ids))}")
        path = _newest_ready(settings)
        from newsletter.issues import load_issue

        issue = load_issue(path, settings)
        slug = issue.list or settings.publication.default_list
        added = 0
        with engine.begin() as conn:
            for email, name in DEMO_SUBSCRIBERS:
                try:
                    add_subscriber(conn, email, list_ids=[ids[slug]], name=name, source="demo")
                    added += 1
                except NewsletterError as exc:
                    click.echo(f"   skipped {email}: {exc}")
        click.echo(f"2. Demo subscribers on {slug}: {', '.join(e for e, _ in DEMO_SUBSCRIBERS)}")
        with Sink(settings.maildir) as sink:
            click.echo(f"3. SMTP sink listening on {sink.url}, storing into {sink.maildir}")
            report = run_send(replace(settings, smtp_url=sink.url), engine, path)
            received = sink.handler.received
    finally:
        engine.dispose()
    click.echo(f"4. Sent {issue.slug} ({path.name}) to {slug}:")
    click.echo("   " + _counts_line(report.counts))
    if received == 0 and report.finished:
        click.echo("   Nothing new: this issue already went to everyone on the list.")
    else:
        click.echo(f"   {received} message(s) delivered to the sink just now.")
    new = settings.maildir / "new"
    click.echo(f"5. The messages are in {new} ({count_messages(settings.maildir)} in total).")
    sample = sorted(new.iterdir(), key=lambda p: p.stat().st_mtime)[-1:] if new.exists() else []
    for file in sample:
        click.echo(f"   Open one: {file}")
    if report.paused is not None or report.pending:
        sys.exit(EXIT_INCOMPLETE)


def _newest_ready(settings: Settings) -> Path:
    from newsletter.issues import load_issue

    for path in sorted(settings.issues_dir.glob("*.md"), reverse=True):
        try:
            issue = load_issue(path, settings)
        except NewsletterError:
            continue
        if issue.status is IssueStatus.READY:
            return path
    raise IssueError(f"no issue with `status: ready` in {settings.issues_dir}")
