"""kill -9 the sender in the middle of a send, run it again: nobody lost, few repeated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from newsletter.config import load_settings
from newsletter.sending import run_send
from tests.conftest import REPO, TEST_SECRET, write_config
from tests.smtpd import SMTPServer
from tests.test_delivery import ISSUE, bulk_people, states

RECIPIENTS = 60
CONNECTIONS = 2


def newsletter(config: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``newsletter ARGS`` in a child process, output to ``log``."""
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": TEST_SECRET}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "newsletter", "--config", str(config), *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for(
    predicate: object,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
    timeout: float = 30.0,
) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            out = log.read_text() if log else ""
            raise AssertionError(f"child exited early ({proc.returncode}): {out}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.slow
def test_kill_9_mid_send_then_rerun_finishes_the_issue(
    engine: Engine, database_url: str, project: Path, smtpd: SMTPServer
) -> None:
    config = write_config(project, database_url=database_url, smtp_url=smtpd.url)
    text = config.read_text().replace("connections = 2", f"connections = {CONNECTIONS}")
    config.write_text(text)
    settings = load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})
    people = [f"p{i:03d}@example.org" for i in range(RECIPIENTS)]
    bulk_people(engine, settings, people)
    smtpd.handler.faults.data_delay = 0.03  # slow enough to be killed in the middle

    log = project / "sender.log"
    proc = newsletter(config, log, "send", ISSUE, "--no-progress")
    try:
        wait_for(lambda: len(smtpd.handler.messages) >= 15, proc, log)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)  # reaped, so its pid is gone when the rerun looks
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    before = len(smtpd.handler.messages)
    assert before < RECIPIENTS, "the sender finished before it could be killed"
    in_ledger = list(states(engine).values())
    assert in_ledger.count("sent") < RECIPIENTS

    smtpd.handler.faults.data_delay = 0
    report = run_send(settings, engine, project / "issues" / ISSUE)

    assert report.finished
    assert report.sent == RECIPIENTS
    counts = smtpd.handler.by_recipient()
    assert set(counts) == set(people), "somebody never got the issue"
    repeated = sum(n - 1 for n in counts.values())
    assert all(n <= 2 for n in counts.values())
    # only messages in flight at the kill can repeat: one per connection in DATA plus the
    # accepted ones whose outcome was not committed yet (outcomes are committed every 50 ms,
    # about 3 messages at this server's pace); the rest is slack for a loaded machine
    assert repeated <= CONNECTIONS + 8, counts


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_a_rerun_finishes(
    tmp_path: Path, project: Path, smtpd: SMTPServer
) -> None:
    from newsletter.store.database import make_engine, migrate

    database_url = f"sqlite:///{tmp_path / 'ctrlc.db'}"
    config = write_config(project, database_url=database_url, smtp_url=smtpd.url)
    settings = load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})
    engine = make_engine(database_url)
    try:
        migrate(engine)
        people = [f"c{i:03d}@example.org" for i in range(40)]
        bulk_people(engine, settings, people)
        smtpd.handler.faults.data_delay = 0.03
        log = project / "ctrlc.log"
        proc = newsletter(config, log, "send", ISSUE, "--no-progress")
        try:
            wait_for(lambda: len(smtpd.handler.messages) >= 5, proc, log)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=20) == 130
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        output = log.read_text()
        assert "interrupted; the ledger keeps what was sent" in output
        assert "Traceback" not in output
        smtpd.handler.faults.data_delay = 0
        report = run_send(settings, engine, project / "issues" / ISSUE)
        assert report.finished
        counts = smtpd.handler.by_recipient()
        assert set(counts) == set(people)
        assert sum(n - 1 for n in counts.values()) <= 6
    finally:
        engine.dispose()
