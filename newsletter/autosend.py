"""Automatic sends: under the database lock, send what is due and tell the editor.

:func:`run_due` is one run (what ``scheduler.py --once`` does and what every APScheduler job
calls); :func:`build_scheduler` wires the long-running APScheduler with its job store in the
same database; :func:`upcoming` is what ``newsletter schedule`` shows. Decisions come from
:mod:`newsletter.slots`; sending is :func:`newsletter.sending.run_send`, whose ledger makes a
repeated or resumed send harmless. Events are logged through :mod:`newsletter.logfmt`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from newsletter import delivery, issues, sending
from newsletter.checks import check_issue
from newsletter.config import Settings
from newsletter.emails import SendSummary, Skipped, send_report_message, skipped_message
from newsletter.errors import IssueError, NewsletterError
from newsletter.locks import try_lock
from newsletter.logfmt import log_event
from newsletter.slots import (
    LOOKBACK,
    Action,
    Decision,
    Schedule,
    classify,
    decide,
    due_at,
    issue_list,
    list_schedules,
)
from newsletter.store import notices
from newsletter.store.issues import send_started
from newsletter.transport import send_single

_FILE_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})-")
SWEEP_SECONDS = 60


@dataclass
class RunOutcome:
    """What one run did, for the caller (exit status) and the tests."""

    now: datetime
    lock_busy: bool = False
    decisions: list[Decision] = field(default_factory=list)
    sent: list[SendSummary] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and all(s.error is None for s in self.sent)


def run_due(
    settings: Settings,
    engine: Engine,
    *,
    now: datetime,
    send_stale: bool = False,
    lists: Collection[str] | None = None,
    transport: delivery.Transport | None = None,
) -> RunOutcome:
    """Send every issue that is due at ``now``; report skips and sends to the editor.

    Holds the database lock for the whole run; if another scheduler holds it, returns at once
    with ``lock_busy`` set (that scheduler is doing this very work).
    """
    schedules = list_schedules(settings)
    outcome = RunOutcome(now=now)
    with try_lock(engine) as acquired:
        if not acquired:
            log_event("lock_busy", detail="another scheduler is running; skipping this run")
            outcome.lock_busy = True
            return outcome
        grace = timedelta(minutes=settings.scheduler.misfire_grace_minutes)
        for path, decision in plan(
            settings, engine, schedules, now=now, grace=grace, send_stale=send_stale, lists=lists
        ):
            outcome.decisions.append(decision)
            if decision.action in (Action.SEND, Action.RESUME):
                _send(settings, engine, path, decision, now=now, transport=transport, out=outcome)
            else:
                _skip(settings, engine, decision, now=now, out=outcome)
        _tell_editor_about_skips(settings, engine, outcome)
    return outcome


def plan(
    settings: Settings,
    engine: Engine,
    schedules: Mapping[str, Schedule | None],
    *,
    now: datetime,
    grace: timedelta,
    send_stale: bool,
    lists: Collection[str] | None = None,
) -> list[tuple[Path, Decision]]:
    """The decision for every issue file that is due and not yet sent, oldest first."""
    default_tz = ZoneInfo(settings.publication.timezone)
    horizon = (now - LOOKBACK - timedelta(days=31)).date()
    result: list[tuple[Path, Decision]] = []
    for path in sorted(settings.issues_dir.glob("*.md")):
        file_date = _file_date(path)
        # long-sent archive issues are not parsed every minute (send_at rarely strays a month)
        if file_date is not None and file_date < horizon:
            continue
        try:
            issue = issues.load_issue(path, settings)
        except IssueError as exc:
            decision = _unreadable(
                settings, engine, schedules, path, file_date, exc, now, default_tz
            )
            if decision is not None and (lists is None or decision.list_slug in lists):
                result.append((path, decision))
            continue
        list_slug = issue_list(issue, settings)
        if lists is not None and list_slug not in lists:
            continue
        due = due_at(issue.date, issue.send_at, schedules.get(list_slug), default_tz=default_tz)
        if due is None or due > now:
            continue
        if sending.issue_sent(engine, issue.slug, list_slug):
            continue
        maybe = decide(
            slug=issue.slug,
            list_slug=list_slug,
            status=issue.status,
            due=due,
            now=now,
            grace=grace,
            send_stale=send_stale,
            started=send_started(engine, issue.slug, list_slug),
            title=issue.title,
        )
        if maybe is None:
            continue
        if maybe.action is Action.SEND:
            errors = [p for p in check_issue(path, settings) if p.is_error]
            if errors:
                maybe = Decision(
                    maybe.slug,
                    list_slug,
                    due,
                    Action.SKIP_INVALID,
                    tuple(f"line {p.line}: {p.message}" for p in errors),
                    issue.title,
                )
        result.append((path, maybe))
    return result


def _unreadable(
    settings: Settings,
    engine: Engine,
    schedules: Mapping[str, Schedule | None],
    path: Path,
    file_date: date | None,
    exc: IssueError,
    now: datetime,
    default_tz: ZoneInfo,
) -> Decision | None:
    """A file that does not parse: reported on the default list when its name says it is due."""
    if file_date is None:
        return None
    list_slug = settings.publication.default_list
    due = due_at(file_date, None, schedules.get(list_slug), default_tz=default_tz)
    if due is None or due > now or now - due > LOOKBACK:
        return None
    if sending.issue_sent(engine, issues.slug_for(path), list_slug):
        return None  # went out before the file was broken; nothing to tell
    return Decision(
        issues.slug_for(path),
        list_slug,
        due,
        Action.SKIP_INVALID,
        (f"{exc}; run 'newsletter check {path.name}' to see every problem",),
        path.name,
    )


def _send(
    settings: Settings,
    engine: Engine,
    path: Path,
    decision: Decision,
    *,
    now: datetime,
    transport: delivery.Transport | None,
    out: RunOutcome,
) -> None:
    fields: dict[str, object] = {"list": decision.list_slug, "issue": decision.slug}
    log_event("send_start", fields, due=decision.due, resume=decision.action is Action.RESUME)
    clock = time.monotonic()
    error: str | None = None
    report: sending.SendReport | None = None
    try:
        report = sending.run_send(
            settings, engine, path, list_slug=decision.list_slug, transport=transport, now=now
        )
    except NewsletterError as exc:
        error = str(exc)
    except Exception as exc:
        # one issue's crash must not hold up the others; the ledger keeps its place
        log_event("send_crashed", fields, level=logging.ERROR, exc_info=True)
        error = f"unexpected {type(exc).__name__}: {exc}"
    elapsed = timedelta(seconds=time.monotonic() - clock)
    summary = _summary(decision, report, started=now, finished=now + elapsed, error=error)
    out.sent.append(summary)
    if error is not None:
        log_event("send_failed", fields, level=logging.ERROR, error=error)
        # one email per failing issue, not one per minute while the cause lasts
        if not notices.claim_notice(
            engine,
            list_slug=decision.list_slug,
            issue_slug=decision.slug,
            due_at=decision.due,
            reason="error",
            now=now,
        ):
            return
    else:
        log_event(
            "sent" if summary.finished else "send_paused",
            fields,
            recipients=summary.recipients,
            delivered=summary.sent,
            failed=summary.failed,
            pending=summary.pending,
            seconds=round(summary.duration_seconds, 2),
        )
        if not summary.finished:
            # retries are pending; the run that finishes the issue sends the report
            return
    _deliver(settings, send_report_message(settings, summary), fields, out)


def _summary(
    decision: Decision,
    report: sending.SendReport | None,
    *,
    started: datetime,
    finished: datetime,
    error: str | None,
) -> SendSummary:
    if report is None:
        return SendSummary(
            decision.slug,
            decision.title,
            decision.list_slug,
            recipients=0,
            sent=0,
            failed=0,
            pending=0,
            started_at=started,
            finished_at=finished,
            finished=False,
            error=error,
        )
    return SendSummary(
        slug=decision.slug,
        title=decision.title,
        list_slug=decision.list_slug,
        recipients=report.recipients,
        sent=report.sent,
        failed=report.failed,
        pending=report.pending,
        started_at=started,
        finished_at=started + timedelta(seconds=report.duration_seconds),
        failures=report.failures,
        finished=report.finished,
        error=error if error is not None else report.paused,
    )


def _skip(
    settings: Settings, engine: Engine, decision: Decision, *, now: datetime, out: RunOutcome
) -> None:
    reason = decision.action.value
    fields: dict[str, object] = {
        "list": decision.list_slug,
        "issue": decision.slug,
        "reason": reason,
        "due": decision.due,
    }
    if not notices.claim_notice(
        engine,
        list_slug=decision.list_slug,
        issue_slug=decision.slug,
        due_at=decision.due,
        reason=reason,
        now=now,
    ):
        log_event("skipped", fields, notified="earlier")
        return
    log_event("skipped", fields, level=logging.WARNING)
    out.skipped.append(
        Skipped(
            decision.slug,
            decision.title,
            decision.list_slug,
            decision.due,
            reason,
            decision.reasons,
        )
    )


def _tell_editor_about_skips(settings: Settings, engine: Engine, out: RunOutcome) -> None:
    if not out.skipped:
        return
    message = skipped_message(settings, out.skipped)
    if _deliver(settings, message, {"issues": len(out.skipped)}, out):
        return
    # the editor did not hear; let the next run try again
    for item in out.skipped:
        notices.forget_notice(
            engine,
            list_slug=item.list_slug,
            issue_slug=item.slug,
            due_at=item.due,
            reason=item.reason,
        )


def _deliver(
    settings: Settings, message: Any, fields: Mapping[str, object], out: RunOutcome
) -> bool:
    if message is None:
        log_event("report_skipped", fields, detail="no publication.editor_email configured")
        return True
    try:
        asyncio.run(send_single(settings, message))
    except NewsletterError as exc:
        log_event("report_failed", fields, level=logging.ERROR, error=str(exc))
        out.errors.append(f"report to the editor failed: {exc}")
        return False
    log_event("report_sent", fields, to=settings.publication.editor_email)
    return True


def _file_date(path: Path) -> date | None:
    match = _FILE_DATE.match(path.name)
    if not match:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        return None


@dataclass
class Runtime:
    """What APScheduler's jobs run against, installed by :func:`build_scheduler`.

    APScheduler's database job store keeps a job's callable as a ``module:function`` name and
    its arguments pickled, so the wiring (settings, engine) cannot travel with the job; the
    job looks it up here.
    """

    settings: Settings
    engine: Engine
    send_stale: bool = False
    transport: delivery.Transport | None = None
    current: ClassVar[Runtime | None] = None


def scheduled_run(list_slug: str | None) -> None:
    """APScheduler's job: one run for one list (a slot) or for all lists (the sweep)."""
    runtime = Runtime.current
    if runtime is None:
        log_event("run_failed", level=logging.ERROR, error="scheduler runtime not installed")
        return
    try:
        run_due(
            runtime.settings,
            runtime.engine,
            now=datetime.now(UTC),
            send_stale=runtime.send_stale,
            lists=None if list_slug is None else [list_slug],
            transport=runtime.transport,
        )
    except Exception as exc:
        # keep the scheduler alive; the next slot or sweep tries again
        log_event("run_failed", level=logging.ERROR, exc_info=True, list=list_slug, error=exc)


def build_scheduler(
    settings: Settings,
    engine: Engine,
    *,
    send_stale: bool = False,
    transport: delivery.Transport | None = None,
) -> Any:
    """A started-but-paused APScheduler with one slot job per scheduled list and a sweep.

    ``resume()`` it to begin. A slot job whose schedule did not change is kept from the job
    store as it was, so a slot missed while the scheduler was down fires once (coalesced) on
    start; APScheduler drops it when later than the misfire grace, and the sweep then reports
    the stale issue to the editor. The sweep runs every minute for ``send_at`` issues and for
    issues made ready or fixed after their slot, within the grace.
    """
    from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    schedules = list_schedules(settings)
    grace_seconds = max(1, int(settings.scheduler.misfire_grace_minutes * 60))
    Runtime.current = Runtime(settings, engine, send_stale=send_stale, transport=transport)
    scheduler = BackgroundScheduler(
        timezone=UTC,
        jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs")},
        # one worker: slot jobs and the sweep take turns instead of contending for the lock
        executors={"default": ThreadPoolExecutor(max_workers=1)},
        job_defaults={"coalesce": True, "max_instances": 1},
    )

    def _missed(event: JobExecutionEvent) -> None:
        log_event(
            "slot_missed",
            level=logging.WARNING,
            job=event.job_id,
            slot=event.scheduled_run_time,
            detail="later than the misfire grace; the sweep reports what was not sent",
        )

    scheduler.add_listener(_missed, EVENT_JOB_MISSED)
    scheduler.start(paused=True)
    wanted = {f"slot:{slug}": (slug, s) for slug, s in schedules.items() if s is not None}
    for job in scheduler.get_jobs():
        if job.id.startswith("slot:") and job.id not in wanted:
            scheduler.remove_job(job.id)
            log_event("job_removed", job=job.id)
    for job_id, (slug, schedule) in wanted.items():
        trigger = schedule.trigger()
        existing = scheduler.get_job(job_id)
        if existing is not None and _same_trigger(existing.trigger, trigger):
            scheduler.modify_job(job_id, misfire_grace_time=grace_seconds)
            log_event("job_kept", job=job_id, list=slug, next_run=existing.next_run_time)
            continue
        job = scheduler.add_job(
            scheduled_run,
            trigger=trigger,
            args=[slug],
            id=job_id,
            name=f"weekly slot of {slug} ({schedule})",
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=grace_seconds,
        )
        log_event(
            "job_added", job=job_id, list=slug, schedule=str(schedule), next_run=job.next_run_time
        )
    scheduler.add_job(
        scheduled_run,
        trigger=IntervalTrigger(seconds=SWEEP_SECONDS, timezone=UTC),
        args=[None],
        id="sweep",
        name="due-issue sweep",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        # the sweep itself applies the issue-level grace; a late sweep is still useful
        misfire_grace_time=None,
    )
    return scheduler


def _same_trigger(old: Any, new: Any) -> bool:
    return (str(old), str(getattr(old, "timezone", ""))) == (
        str(new),
        str(getattr(new, "timezone", "")),
    )


@dataclass(frozen=True)
class PlannedIssue:
    """An unsent issue as ``newsletter schedule`` shows it."""

    file: str
    slug: str
    title: str
    list_slug: str
    due: datetime
    # what a run at its due time would do (what a run now does, when it is due already)
    action: Action
    send_at: bool
    # why it is invalid, when it is
    problem: str = ""

    @property
    def state(self) -> str:
        """The few words ``newsletter schedule`` prints for the issue."""
        if self.action is Action.RESUME:
            return "sending (resumes at the next run)"
        if self.action is Action.SKIP_DRAFT:
            return "draft"
        if self.action is Action.SKIP_STALE:
            return "stale: missed by more than the grace; send with --send-stale"
        if self.action is Action.SKIP_INVALID:
            return f"invalid: {self.problem}"
        return "ready"


@dataclass(frozen=True)
class UpcomingSlot:
    list_slug: str
    at: datetime
    issues: tuple[PlannedIssue, ...]


def upcoming(
    settings: Settings, engine: Engine, *, now: datetime, count: int = 4
) -> tuple[list[PlannedIssue], list[UpcomingSlot], list[PlannedIssue]]:
    """What the scheduler would do: overdue issues, the next ``count`` slots per list with the
    issues each would send, and ``send_at`` issues in that window. Reads; never sends.

    Each issue's action comes from the same :func:`slots.classify` a run uses.
    """
    schedules = list_schedules(settings)
    default_tz = ZoneInfo(settings.publication.timezone)
    grace = timedelta(minutes=settings.scheduler.misfire_grace_minutes)
    pending: list[PlannedIssue] = []
    for path in sorted(settings.issues_dir.glob("*.md")):
        try:
            issue = issues.load_issue(path, settings)
        except IssueError as exc:
            file_date = _file_date(path)
            list_slug = settings.publication.default_list
            due = (
                due_at(file_date, None, schedules.get(list_slug), default_tz=default_tz)
                if file_date
                else None
            )
            if due is not None and now - due <= LOOKBACK:
                pending.append(
                    PlannedIssue(
                        path.name,
                        issues.slug_for(path),
                        path.name,
                        list_slug,
                        due,
                        Action.SKIP_INVALID,
                        False,
                        problem=exc.message,
                    )
                )
            continue
        list_slug = issue_list(issue, settings)
        due = due_at(issue.date, issue.send_at, schedules.get(list_slug), default_tz=default_tz)
        if due is None or now - due > LOOKBACK:
            continue
        if sending.issue_sent(engine, issue.slug, list_slug):
            continue
        action = classify(
            status=issue.status,
            due=due,
            now=now,
            grace=grace,
            send_stale=False,
            started=send_started(engine, issue.slug, list_slug),
        )
        problem = ""
        if action is Action.SEND:
            errors = [p for p in check_issue(path, settings) if p.is_error]
            if errors:
                action = Action.SKIP_INVALID
                problem = f"{len(errors)} error(s), run 'newsletter check'"
        pending.append(
            PlannedIssue(
                path.name,
                issue.slug,
                issue.title,
                list_slug,
                due,
                action,
                issue.send_at is not None,
                problem=problem,
            )
        )
    overdue = [p for p in pending if p.due <= now]
    slots: list[UpcomingSlot] = []
    horizon = now + timedelta(weeks=count)
    slot_times: set[tuple[str, datetime]] = set()
    for list_slug, schedule in schedules.items():
        if schedule is None:
            continue
        stream = schedule.slots_from(now)
        for _ in range(count):
            at = next(stream)
            slot_times.add((list_slug, at))
            on_slot = tuple(p for p in pending if p.list_slug == list_slug and p.due == at)
            slots.append(UpcomingSlot(list_slug, at, on_slot))
    timed = [
        p
        for p in pending
        if p.send_at and now < p.due <= horizon and (p.list_slug, p.due) not in slot_times
    ]
    return overdue, slots, timed
