"""Scale-out on PostgreSQL: three ``newsletter worker`` processes share a send, one is killed."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select

from newsletter.config import Settings, load_settings
from newsletter.delivery import Policy
from newsletter.sending import issue_sent, prepare_issue, with_smtp_url
from newsletter.store.database import make_engine, migrate
from newsletter.store.schema import deliveries
from newsletter.worker import run_worker
from tests.conftest import TEST_SECRET, write_config
from tests.smtpd import SMTPServer
from tests.test_crash import newsletter, wait_for
from tests.test_delivery import ISSUE, bulk_people, states

RECIPIENTS = 150


@pytest.mark.postgres
@pytest.mark.slow
def test_three_workers_one_killed_nothing_lost(
    postgres_url: str, project: Path, smtpd: SMTPServer
) -> None:
    config = write_config(project, database_url=postgres_url, smtp_url=smtpd.url)
    config.write_text(
        config.read_text() + "\n[delivery]\nbatch_size = 10\nlease_seconds = 30\n",
        encoding="utf-8",
    )
    settings = load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})
    engine: Engine = make_engine(postgres_url)
    try:
        migrate(engine)
        people = [f"w{i:03d}@example.org" for i in range(RECIPIENTS)]
        bulk_people(engine, settings, people)
        # the send begins (ledger rows created); the workers deliver it
        prepare_issue(settings, engine, project / "issues" / ISSUE)
        smtpd.handler.faults.data_delay = 0.02

        logs = [project / f"worker{i}.log" for i in range(3)]
        workers = [
            newsletter(config, log, "worker", "--until-done", "--poll", "0.2") for log in logs
        ]
        try:
            victim = workers[0]

            def victim_is_sending() -> bool:
                # rows leased to the victim and some mail already out: it is mid-send
                with engine.connect() as conn:
                    leased = conn.execute(
                        select(func.count()).where(
                            deliveries.c.lease_owner.like(f"%:{victim.pid}:%")
                        )
                    ).scalar()
                return bool(leased) and len(smtpd.handler.messages) >= 20

            wait_for(victim_is_sending, victim, logs[0])
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            for proc, log in zip(workers[1:], logs[1:], strict=True):
                try:
                    assert proc.wait(timeout=60) == 0, log.read_text()
                except subprocess.TimeoutExpired:
                    raise AssertionError(log.read_text()) from None
        finally:
            for proc in workers:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

        counts = smtpd.handler.by_recipient()
        assert set(counts) == set(people), "somebody never got the issue"
        repeated = sum(n - 1 for n in counts.values())
        # only the killed worker's messages in flight can repeat (its 2 connections, plus
        # accepted ones not yet committed)
        assert repeated <= 10, counts
        assert set(states(engine).values()) == {"sent"}
        assert issue_sent(engine, "flood-barrier-vote", "weekly")
        with engine.connect() as conn:
            owners = conn.execute(select(func.count()).where(deliveries.c.lease_owner.is_not(None)))
            assert owners.scalar() == 0
        # the survivors finished what the killed worker left
        assert any(" sent, " in log.read_text() for log in logs[1:])
    finally:
        engine.dispose()


def test_worker_waits_for_the_relay_and_resumes(
    engine: Engine, settings: Settings, project: Path, smtpd: SMTPServer
) -> None:
    people = [f"q{i}@example.org" for i in range(5)]
    bulk_people(engine, settings, people)
    s = with_smtp_url(settings, smtpd.url)
    s = dataclasses.replace(s, smtp=dataclasses.replace(s.smtp, unreachable_after=0.2))
    prepare_issue(s, engine, project / "issues" / ISSUE)
    smtpd.stop()
    events: list[str] = []
    restart = threading.Timer(1.0, smtpd.start)
    restart.start()
    try:
        sent = run_worker(
            s,
            engine,
            until_done=True,
            poll_seconds=0.1,
            max_pause_seconds=0.3,
            on_event=events.append,
            policy=Policy(flush_interval=0.01),
        )
    finally:
        restart.join()
    assert sent == len(people)
    assert any(e.startswith("relay unreachable: cannot reach the SMTP server") for e in events)
    assert events[-1] == "flood-barrier-vote (weekly): finished"
    assert smtpd.handler.by_recipient() == dict.fromkeys(people, 1)
    assert issue_sent(engine, "flood-barrier-vote", "weekly")


def test_a_poll_does_not_reread_the_issue_bodies(
    engine: Engine, settings: Settings, project: Path, smtpd: SMTPServer
) -> None:
    """The worker polls every few seconds; the bodies (tens of KB) are read once per send."""
    people = [f"p{i}@example.org" for i in range(3)]
    bulk_people(engine, settings, people)
    s = with_smtp_url(settings, smtpd.url)
    prepare_issue(s, engine, project / "issues" / ISSUE)
    # one reader's first try is deferred, so the worker must look for work again to finish
    smtpd.handler.faults.rcpt["p0@example.org"] = ["451 4.3.0 try again later"]
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        sent = run_worker(
            s,
            engine,
            until_done=True,
            poll_seconds=0.05,
            policy=Policy(retry_base_seconds=0.05, flush_interval=0.01),
        )
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert sent == len(people)
    polls = [st for st in statements if "FROM issues JOIN lists" in st and "issues.status !=" in st]
    reads_of_bodies = [st for st in statements if "issues.html" in st]
    assert len(polls) >= 2, statements
    assert len(reads_of_bodies) == 1, reads_of_bodies


@pytest.mark.slow
def test_sigterm_stops_a_worker_cleanly(
    engine: Engine, database_url: str, project: Path, smtpd: SMTPServer
) -> None:
    config = write_config(project, database_url=database_url, smtp_url=smtpd.url)
    settings = load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})
    people = [f"t{i:03d}@example.org" for i in range(40)]
    bulk_people(engine, settings, people)
    prepare_issue(settings, engine, project / "issues" / ISSUE)
    smtpd.handler.faults.data_delay = 0.1
    log = project / "worker.log"
    proc = newsletter(config, log, "worker", "--poll", "0.2")
    try:
        wait_for(lambda: len(smtpd.handler.messages) >= 5, proc, log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 143, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log.read_text()
    assert "stopped by SIGTERM: " in output
    assert "Traceback" not in output
    in_ledger = states(engine)
    assert "sending" not in in_ledger.values()
    received = smtpd.handler.by_recipient()
    assert {e for e, st in in_ledger.items() if st == "sent"} == set(received)
    assert len(received) < len(people)
