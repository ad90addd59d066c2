"""Scheduled sends end to end, with an injected clock, a real SMTP server and both databases."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from newsletter.autosend import RunOutcome, build_scheduler, plan, run_due, upcoming
from newsletter.cli import main as cli_main
from newsletter.config import Settings, load_settings
from newsletter.sending import issue_sent
from newsletter.slots import Action, Schedule, SlotTrigger, list_schedules
from newsletter.states import DeliveryStatus
from newsletter.store.database import make_engine
from newsletter.store.schema import deliveries, subscribers
from newsletter.store.subscribers import add_subscriber, ensure_lists
from tests.conftest import REPO, TEST_SECRET, write_config
from tests.smtpd import Received, SMTPServer

SAMPLE = REPO / "issues" / "2026-11-20-flood-barrier-vote.md"
EDITOR = "editor@test.example"
READERS = [f"reader{i}@example.org" for i in range(5)]
# Friday 2026-11-27 13:00 in Kyiv (EET, UTC+2)
SLOT = datetime(2026, 11, 27, 11, 0, tzinfo=UTC)
FRIDAY = date(2026, 11, 27)


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "issues").mkdir(parents=True)
    shutil.copytree(REPO / "issues" / "images", root / "issues" / "images")
    return root


@pytest.fixture
def live(project_dir: Path, database_url: str, smtpd: SMTPServer, engine: Engine) -> Settings:
    """Settings on the test database and SMTP server, with five confirmed readers."""
    path = write_config(project_dir, database_url=database_url, smtp_url=smtpd.url)
    settings = load_settings(path, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})
    with engine.begin() as conn:
        ids = ensure_lists(conn, settings)
        for reader in READERS:
            add_subscriber(conn, reader, list_ids=[ids["weekly"]])
    return settings


def write_issue(
    settings: Settings,
    day: date,
    slug: str,
    *,
    status: str = "ready",
    send_at: str | None = None,
    title: str | None = None,
    hero: str | None = None,
) -> Path:
    text = SAMPLE.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^date: .*$", f"date: {day.isoformat()}", text, count=1)
    text = re.sub(r"(?m)^status: .*$", f"status: {status}", text, count=1)
    send_line = f"send_at: {send_at}" if send_at else ""
    text = re.sub(r"(?m)^send_at: .*$", send_line, text, count=1)
    if title:
        text = re.sub(r"(?m)^title: .*$", f"title: {title}", text, count=1)
    if hero:
        text = re.sub(r"(?m)^  src: images/hero-river.png$", f"  src: {hero}", text, count=1)
    path = settings.issues_dir / f"{day.isoformat()}-{slug}.md"
    path.write_text(text, encoding="utf-8")
    return path


def readers_got(smtpd: SMTPServer) -> dict[str, int]:
    counts = smtpd.handler.by_recipient()
    return {r: counts.get(r, 0) for r in READERS}


def editor_mail(smtpd: SMTPServer) -> list[Received]:
    return [m for m in smtpd.handler.messages if m.rcpt_tos == [EDITOR]]


def run(settings: Settings, engine: Engine, now: datetime, **kwargs: object) -> RunOutcome:
    return run_due(settings, engine, now=now, **kwargs)  # type: ignore[arg-type]


def test_due_issue_is_sent_once_and_the_editor_gets_a_report(
    live: Settings, engine: Engine, smtpd: SMTPServer
) -> None:
    write_issue(live, FRIDAY, "river-week")
    write_issue(live, FRIDAY + timedelta(days=7), "next-week")

    early = run(live, engine, SLOT - timedelta(minutes=1))
    assert early.decisions == []
    assert smtpd.handler.messages == []

    outcome = run(live, engine, SLOT + timedelta(seconds=30))
    assert [d.action for d in outcome.decisions] == [Action.SEND]
    assert readers_got(smtpd) == dict.fromkeys(READERS, 1)
    [report] = editor_mail(smtpd)
    subject = report.message["Subject"]
    assert subject.startswith("[The Test Weekly] Sent: The flood barrier vote")
    assert "5 delivered, 0 failed" in subject
    body = report.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Recipients:   5" in body
    assert "Duration:" in body
    assert issue_sent(engine, "river-week", "weekly")
    assert outcome.ok


def test_running_twice_sends_once(live: Settings, engine: Engine, smtpd: SMTPServer) -> None:
    write_issue(live, FRIDAY, "river-week")
    run(live, engine, SLOT)
    before = len(smtpd.handler.messages)
    again = run(live, engine, SLOT + timedelta(minutes=5))
    assert again.decisions == []
    assert len(smtpd.handler.messages) == before
    assert readers_got(smtpd) == dict.fromkeys(READERS, 1)
    assert len(editor_mail(smtpd)) == 1


def test_draft_is_skipped_and_the_editor_told_once(
    live: Settings, engine: Engine, smtpd: SMTPServer
) -> None:
    path = write_issue(live, FRIDAY, "river-week", status="draft")
    outcome = run(live, engine, SLOT)
    assert [d.action for d in outcome.decisions] == [Action.SKIP_DRAFT]
    assert readers_got(smtpd) == dict.fromkeys(READERS, 0)
    [notice] = editor_mail(smtpd)
    assert "Not sent (draft)" in notice.message["Subject"]
    body = notice.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "river-week" in body
    assert "status: ready" in body

    # cron runs every few minutes: the editor hears once, not every run
    run(live, engine, SLOT + timedelta(minutes=5))
    assert len(editor_mail(smtpd)) == 1

    # made ready inside the grace: the next run sends it
    path.write_text(
        path.read_text(encoding="utf-8").replace("status: draft", "status: ready"),
        encoding="utf-8",
    )
    run(live, engine, SLOT + timedelta(minutes=10))
    assert readers_got(smtpd) == dict.fromkeys(READERS, 1)


def test_a_notice_that_could_not_be_mailed_is_tried_again(
    live: Settings, engine: Engine, smtpd: SMTPServer
) -> None:
    write_issue(live, FRIDAY, "river-week", status="draft")
    smtpd.stop()
    failed = run(live, engine, SLOT)
    assert not failed.ok
    assert "report to the editor failed" in failed.errors[0]
    smtpd.start()
    retried = run(live, engine, SLOT + timedelta(minutes=5))
    assert retried.ok
    [notice] = editor_mail(smtpd)
    assert "Not sent (draft)" in notice.message["Subject"]


def test_invalid_issue_is_skipped_with_the_checker_errors(
    live: Settings, engine: Engine, smtpd: SMTPServer
) -> None:
    write_issue(live, FRIDAY, "river-week", hero="images/missing.png")
    outcome = run(live, engine, SLOT)
    assert [d.action for d in outcome.decisions] == [Action.SKIP_INVALID]
    assert readers_got(smtpd) == dict.fromkeys(READERS, 0)
    [notice] = editor_mail(smtpd)
    body = notice.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "invalid" in body
    assert "missing.png" in body


def test_unreadable_issue_file_is_reported_not_sent(
    live: Settings, engine: Engine, smtpd: SMTPServer
) -> None:
    broken = live.issues_dir / f"{FRIDAY.isoformat()}-broken.md"
    broken.write_text("---\ntitle: [unclosed\n---\nbody\n", encoding="utf-8")
    outcome = run(live, engine, SLOT)
    assert [(d.slug, d.action) for d in outcome.decisions] == [("broken", Action.SKIP_INVALID)]
    [notice] = editor_mail(smtpd)
    body = notice.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"newsletter check {broken.name}" in body


def test_relay_outage_pauses_and_a_later_run_resumes_past_the_grace(
    live: Settings, engine: Engine, smtpd: SMTPServer
) -> None:
    write_issue(live, FRIDAY, "river-week")
    smtpd.stop()
    paused = run(live, engine, SLOT)
    assert [d.action for d in paused.decisions] == [Action.SEND]
    assert not paused.sent[0].finished
    assert not issue_sent(engine, "river-week", "weekly")
    smtpd.start()  # same port
    # three hours later, well past the grace: a send that began is finished regardless
    resumed = run(live, engine, SLOT + timedelta(hours=3))
    assert [d.action for d in resumed.decisions] == [Action.RESUME]
    assert readers_got(smtpd) == dict.fromkeys(READERS, 1)
    [report] = editor_mail(smtpd)
    assert "5 delivered" in report.message["Subject"]


def test_misfire_inside_the_grace_still_sends(
    live: Settings, engine: Engine, smtpd: SMTPServer
) -> None:
    write_issue(live, FRIDAY, "river-week")
    # down at 13:00, back at 13:20 local; the grace is 60 minutes
    outcome = run(live, engine, SLOT + timedelta(minutes=20))
    assert [d.action for d in outcome.decisions] == [Action.SEND]
    assert readers_got(smtpd) == dict.fromkeys(READERS, 1)


def test_misfire_outside_the_grace_reports_and_sends_only_when_told(
    live: Settings, engine: Engine, smtpd: SMTPServer
) -> None:
    write_issue(live, FRIDAY, "river-week")
    two_days_later = SLOT + timedelta(days=2)
    outcome = run(live, engine, two_days_later)
    assert [d.action for d in outcome.decisions] == [Action.SKIP_STALE]
    assert readers_got(smtpd) == dict.fromkeys(READERS, 0)
    [notice] = editor_mail(smtpd)
    assert "Not sent (stale)" in notice.message["Subject"]
    assert "--send-stale" in notice.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]

    told = run(live, engine, two_days_later + timedelta(minutes=1), send_stale=True)
    assert [d.action for d in told.decisions] == [Action.SEND]
    assert readers_got(smtpd) == dict.fromkeys(READERS, 1)


@pytest.mark.parametrize(
    ("day", "utc_hour"),
    [
        (date(2026, 10, 30), 11),  # first Friday after the autumn change: EET, UTC+2
        (date(2026, 4, 3), 10),  # first Friday after the spring change: EEST, UTC+3
    ],
)
def test_dst_week_sends_at_1300_local(
    live: Settings, engine: Engine, smtpd: SMTPServer, day: date, utc_hour: int
) -> None:
    write_issue(live, day, "dst-week")
    slot = datetime.combine(day, datetime.min.time(), tzinfo=UTC).replace(hour=utc_hour)
    # an hour early in UTC terms is 12:00 local: not yet
    assert run(live, engine, slot - timedelta(minutes=1)).decisions == []
    assert readers_got(smtpd) == dict.fromkeys(READERS, 0)
    outcome = run(live, engine, slot)
    assert [d.action for d in outcome.decisions] == [Action.SEND]
    assert outcome.decisions[0].due.hour == 13
    assert readers_got(smtpd) == dict.fromkeys(READERS, 1)


def test_send_at_overrides_the_slot(live: Settings, engine: Engine, smtpd: SMTPServer) -> None:
    # dated Friday, but to go out on Wednesday at 09:00 local (07:00 UTC)
    write_issue(live, FRIDAY, "early-bird", send_at="2026-11-25 09:00")
    wednesday = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
    assert run(live, engine, wednesday - timedelta(minutes=1)).decisions == []
    outcome = run(live, engine, wednesday + timedelta(minutes=1))
    assert [d.action for d in outcome.decisions] == [Action.SEND]
    assert readers_got(smtpd) == dict.fromkeys(READERS, 1)
    assert run(live, engine, SLOT).decisions == []


def test_two_schedulers_at_once_only_one_sends(
    live: Settings, engine: Engine, smtpd: SMTPServer, database_url: str
) -> None:
    write_issue(live, FRIDAY, "river-week")
    # a slow relay keeps the first run inside the lock while the second arrives
    smtpd.handler.faults.data_delay = 0.2
    barrier = threading.Barrier(2)
    outcomes: list[RunOutcome] = []

    def scheduler() -> None:
        own_engine = make_engine(database_url)  # a separate pool, as a second process has
        try:
            barrier.wait()
            outcomes.append(run(live, own_engine, SLOT))
        finally:
            own_engine.dispose()

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(o.lock_busy for o in outcomes) == [False, True]
    assert readers_got(smtpd) == dict.fromkeys(READERS, 1)
    assert len(editor_mail(smtpd)) == 1


def _scheduler_cmd(config: Path, *args: str) -> list[str]:
    return [sys.executable, str(REPO / "scheduler.py"), "--config", str(config), *args]


def _env() -> dict[str, str]:
    return {**os.environ, "NEWSLETTER_SECRET_KEY": TEST_SECRET}


@pytest.mark.slow
def test_two_scheduler_processes_at_once_only_one_sends(
    live: Settings, engine: Engine, smtpd: SMTPServer
) -> None:
    write_issue(live, FRIDAY, "river-week")
    smtpd.handler.faults.data_delay = 0.3
    assert live.source is not None
    cmd = _scheduler_cmd(live.source, "--once", "--now", (SLOT + timedelta(minutes=1)).isoformat())
    procs = [subprocess.Popen(cmd, env=_env(), stderr=subprocess.PIPE, text=True) for _ in range(2)]
    logs = []
    for proc in procs:
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        logs.append(err)
    assert readers_got(smtpd) == dict.fromkeys(READERS, 1)
    assert len(editor_mail(smtpd)) == 1
    joined = "\n".join(logs)
    # either the second found the lock taken, or it ran after the first and found nothing due
    assert joined.count("event=sent ") == 1
    assert re.search(r"^time=\S+ level=info event=sent list=weekly issue=river-week ", joined, re.M)


def _sent_in_ledger(engine: Engine) -> set[str]:
    query = (
        select(subscribers.c.email)
        .join(deliveries, deliveries.c.subscriber_id == subscribers.c.id)
        .where(deliveries.c.status == DeliveryStatus.SENT.value)
    )
    with engine.connect() as conn:
        return {row.email for row in conn.execute(query)}


@pytest.mark.slow
def test_restart_mid_send_resumes_from_the_ledger(
    live: Settings, engine: Engine, smtpd: SMTPServer
) -> None:
    write_issue(live, FRIDAY, "river-week")
    everyone = READERS + [f"late{i}@example.org" for i in range(15)]
    with engine.begin() as conn:
        ids = ensure_lists(conn, live)
        for reader in everyone[len(READERS) :]:
            add_subscriber(conn, reader, list_ids=[ids["weekly"]])
    smtpd.handler.faults.data_delay = 0.2
    assert live.source is not None
    now = SLOT + timedelta(minutes=1)
    cmd = _scheduler_cmd(live.source, "--once", "--now", now.isoformat())
    with subprocess.Popen(cmd, env=_env(), stderr=subprocess.DEVNULL) as proc:
        deadline = time.monotonic() + 60
        recorded: set[str] = set()
        while len(recorded) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
            recorded = _sent_in_ledger(engine)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert 2 <= len(recorded) < len(everyone)
    assert not issue_sent(engine, "river-week", "weekly")

    smtpd.handler.faults.data_delay = 0.0
    outcome = run(live, engine, now + timedelta(minutes=1))
    assert [d.action for d in outcome.decisions] == [Action.RESUME]
    got = smtpd.handler.by_recipient()
    assert set(got) >= set(everyone)
    # the ledger, not memory, says who still needs it: whoever it recorded as sent before
    # the kill is never sent again; only messages in flight at the kill may go out twice
    assert all(got[r] == 1 for r in recorded)
    assert all(1 <= got[r] <= 2 for r in everyone)
    assert issue_sent(engine, "river-week", "weekly")
    [report] = editor_mail(smtpd)
    assert f"{len(everyone)} delivered" in report.message["Subject"]


def test_cli_schedule_lists_upcoming_slots(live: Settings, engine: Engine) -> None:
    write_issue(live, FRIDAY, "river-week")
    write_issue(live, FRIDAY + timedelta(days=7), "december", status="draft")
    assert live.source is not None
    result = CliRunner().invoke(
        cli_main,
        ["--config", str(live.source), "schedule", "--count", "3", "--now", "2026-11-23T10:00Z"],
        env={"NEWSLETTER_SECRET_KEY": TEST_SECRET},
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "weekly: fri 13:00 Europe/Kyiv" in lines
    assert any(
        "2026-11-27 13:00" in ln and "2026-11-27-river-week.md  [ready]" in ln for ln in lines
    )
    assert any("2026-12-04 13:00" in ln and "[draft]" in ln for ln in lines)
    assert any("2026-12-11 13:00" in ln and "no issue yet" in ln for ln in lines)
    assert any(ln.startswith("business: no weekly slot") for ln in lines)


def test_bad_schedule_is_a_clear_error(project_dir: Path, tmp_path: Path) -> None:
    config = write_config(project_dir, database_url=f"sqlite:///{tmp_path / 'x.db'}")
    config.write_text(
        config.read_text().replace("fri 13:00 Europe/Kyiv", "5 13:00 Europe/Kyiv"),
        encoding="utf-8",
    )
    proc = subprocess.run(
        _scheduler_cmd(config, "--once"), env=_env(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "lists.weekly.schedule" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_before_init_the_scheduler_says_to_run_init(project_dir: Path, tmp_path: Path) -> None:
    config = write_config(project_dir, database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    proc = subprocess.run(
        _scheduler_cmd(config, "--once"), env=_env(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "run `newsletter init`" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_schedule_view_and_a_run_decide_alike(live: Settings, engine: Engine) -> None:
    """`newsletter schedule` and the scheduler take their actions from one decision."""
    write_issue(live, FRIDAY, "river-week")
    write_issue(live, FRIDAY, "still-draft", status="draft")
    write_issue(live, FRIDAY - timedelta(days=7), "last-week")  # missed by days: stale
    write_issue(live, FRIDAY, "broken", hero="images/missing.png")
    now = SLOT + timedelta(minutes=5)
    overdue, _, _ = upcoming(live, engine, now=now)
    planned = plan(
        live,
        engine,
        list_schedules(live),
        now=now,
        grace=timedelta(minutes=live.scheduler.misfire_grace_minutes),
        send_stale=False,
    )
    shown = {item.slug: item.action for item in overdue}
    decided = {decision.slug: decision.action for _, decision in planned}
    assert (
        shown
        == decided
        == {
            "river-week": Action.SEND,
            "still-draft": Action.SKIP_DRAFT,
            "last-week": Action.SKIP_STALE,
            "broken": Action.SKIP_INVALID,
        }
    )
    assert {item.slug: item.state for item in overdue}["still-draft"] == "draft"


def test_long_running_scheduler_jobs(live: Settings, engine: Engine) -> None:
    scheduler = build_scheduler(live, engine)
    try:
        job = scheduler.get_job("slot:weekly")
        assert isinstance(job.trigger, SlotTrigger)
        assert str(job.trigger.schedule) == "fri 13:00 Europe/Kyiv"
        assert job.coalesce is True
        assert job.max_instances == 1
        assert job.misfire_grace_time == 3600
        assert job.next_run_time.astimezone(job.trigger.schedule.tz).hour == 13
        assert scheduler.get_job("slot:business") is None
        assert scheduler.get_job("sweep") is not None
        first_next = job.next_run_time
    finally:
        scheduler.shutdown(wait=False)

    # restarted with the same schedule: the stored job (and its next run) is kept
    again = build_scheduler(live, engine)
    try:
        assert again.get_job("slot:weekly").next_run_time == first_next
    finally:
        again.shutdown(wait=False)


def test_apscheduler_fires_the_stored_job_and_it_sends(
    live: Settings, engine: Engine, smtpd: SMTPServer
) -> None:
    # real clock here: an issue whose send_at just passed, and the sweep due at once
    just_now = datetime.now(UTC).astimezone(ZoneInfo("Europe/Kyiv")) - timedelta(minutes=1)
    write_issue(live, just_now.date(), "right-now", send_at=just_now.strftime("%Y-%m-%d %H:%M"))
    scheduler = build_scheduler(live, engine)
    try:
        scheduler.modify_job("sweep", next_run_time=datetime.now(UTC))
        scheduler.resume()
        deadline = time.monotonic() + 30
        while not editor_mail(smtpd) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        scheduler.shutdown(wait=True)
    assert readers_got(smtpd) == dict.fromkeys(READERS, 1)
    assert "Sent:" in editor_mail(smtpd)[0].message["Subject"]


@pytest.mark.parametrize(
    ("late", "expected"),
    [
        (10, "executed"),
        (120, "missed"),
        # three weeks of missed Fridays coalesce into one run (of the latest), not three
        (60 * 24 * 21, "latest"),
    ],
)
def test_a_stored_slot_missed_while_down_fires_within_the_grace_only(
    live: Settings, engine: Engine, caplog: pytest.LogCaptureFixture, late: int, expected: str
) -> None:
    from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobExecutionEvent

    caplog.set_level(logging.INFO, logger="newsletter.scheduler")
    codes = {EVENT_JOB_EXECUTED: "executed", EVENT_JOB_MISSED: "missed"}
    seen: list[tuple[str, str]] = []

    def listener(event: JobExecutionEvent) -> None:
        seen.append((codes[event.code], event.job_id))

    if expected == "latest":
        # the coalesced run is the most recent Friday 13:00, normally days ago
        latest = Schedule("fri", 13, 0, "Europe/Kyiv").previous_slot(datetime.now(UTC))
        recent = datetime.now(UTC) - latest < timedelta(minutes=59)
        expected = "executed" if recent else "missed"
    scheduler = build_scheduler(live, engine)
    scheduler.add_listener(listener, EVENT_JOB_EXECUTED | EVENT_JOB_MISSED)
    try:
        # as if the scheduler had been down since the slot, `late` minutes ago (grace: 60)
        missed_slot = datetime.now(UTC) - timedelta(minutes=late)
        scheduler.modify_job("slot:weekly", next_run_time=missed_slot)
        scheduler.resume()
        deadline = time.monotonic() + 20

        def moved_on() -> datetime | None:
            # APScheduler moves next_run_time past now once it has dealt with every missed run
            nxt = scheduler.get_job("slot:weekly").next_run_time
            return nxt if nxt is not None and nxt > datetime.now(UTC) else None

        while not (seen and moved_on()) and time.monotonic() < deadline:
            time.sleep(0.02)
        after = moved_on()
    finally:
        # waits for every run it submitted: any further (uncoalesced) run is in `seen` after this
        scheduler.shutdown(wait=True)
    assert after is not None
    assert seen == [(expected, "slot:weekly")]
    assert ("event=slot_missed job=slot:weekly" in caplog.text) is (expected == "missed")
    # coalesced into one run; the job moves on to the next Friday 13:00 in Kyiv
    assert after > datetime.now(UTC)
    assert after.astimezone(ZoneInfo("Europe/Kyiv")).strftime("%a %H:%M") == "Fri 13:00"


def test_sigterm_stops_the_long_running_scheduler_cleanly(live: Settings) -> None:
    assert live.source is not None
    with subprocess.Popen(
        _scheduler_cmd(live.source), env=_env(), stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if "event=started" in line:
                break
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
    log = "".join(seen) + rest
    assert proc.returncode == 0, log
    assert "event=job_added job=slot:weekly" in log or "event=job_kept job=slot:weekly" in log
    assert "event=stopping signal=SIGTERM" in log
    assert log.rstrip().endswith("event=stopped")
