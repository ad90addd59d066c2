"""Stop the sender in the middle of a send, run it again: nobody lost, few or none repeated.

kill -9 (reaped, or still a zombie when the rerun starts) repeats at most the messages that
were in DATA at that moment, one per connection; SIGTERM and SIGINT repeat none.
"""

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


def newsletter(
    config: Path, log: Path, *args: str, new_session: bool = False
) -> subprocess.Popen[bytes]:
    """``newsletter ARGS`` in a child process, output to ``log``; ``new_session`` makes it
    the leader of a process group of its own (as a shell's job is)."""
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": TEST_SECRET}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "newsletter", "--config", str(config), *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
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
@pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "zombie"])
def test_kill_9_mid_send_then_rerun_finishes_the_issue(
    engine: Engine, database_url: str, project: Path, smtpd: SMTPServer, reaped: bool
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
        os.kill(proc.pid, signal.SIGKILL)
        if reaped:
            proc.wait(timeout=10)  # its pid is gone when the rerun looks
        else:
            # not reaped: the pid is a zombie's while the rerun runs, its rows still leased
            wait_for(lambda: _state(proc.pid) == "Z", timeout=10)
        before = len(smtpd.handler.messages)
        assert before < RECIPIENTS, "the sender finished before it could be killed"
        in_ledger = list(states(engine).values())
        assert in_ledger.count("sent") < RECIPIENTS

        smtpd.handler.faults.data_delay = 0
        report = run_send(settings, engine, project / "issues" / ISSUE)
        if not reaped:
            assert _state(proc.pid) == "Z"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    assert report.finished
    assert report.sent == RECIPIENTS
    counts = smtpd.handler.by_recipient()
    assert set(counts) == set(people), "somebody never got the issue"
    repeated = sum(n - 1 for n in counts.values())
    assert all(n <= 2 for n in counts.values())
    # only messages in DATA at the kill can repeat, one per connection: each accepted one was
    # journaled before its connection started the next, and the rerun replayed the journal
    assert repeated <= CONNECTIONS, counts


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return ""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "name"),
    [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")],
    ids=["sigterm", "sigint"],
)
def test_a_signal_stops_cleanly_and_a_rerun_sends_the_rest_exactly_once(
    engine: Engine,
    database_url: str,
    project: Path,
    smtpd: SMTPServer,
    signum: int,
    code: int,
    name: str,
) -> None:
    config = write_config(project, database_url=database_url, smtp_url=smtpd.url)
    settings = load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})
    people = [f"c{i:03d}@example.org" for i in range(40)]
    bulk_people(engine, settings, people)
    # a slow relay: messages are in DATA when the signal comes, and must finish
    smtpd.handler.faults.data_delay = 0.1
    log = project / "stop.log"
    proc = newsletter(config, log, "send", ISSUE, "--no-progress")
    try:
        wait_for(lambda: len(smtpd.handler.messages) >= 5, proc, log)
        proc.send_signal(signum)
        assert proc.wait(timeout=20) == code, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log.read_text()
    assert f"stopped by {name}: " in output
    assert "given back to pending" in output
    assert "Traceback" not in output
    in_ledger = states(engine)
    assert "sending" not in in_ledger.values(), "claimed rows were left leased"
    # what the relay took is recorded as sent, nothing more and nothing less
    received = smtpd.handler.by_recipient()
    assert {e for e, st in in_ledger.items() if st == "sent"} == set(received)
    assert len(received) < len(people)

    smtpd.handler.faults.data_delay = 0
    report = run_send(settings, engine, project / "issues" / ISSUE)
    assert report.finished
    assert smtpd.handler.by_recipient() == dict.fromkeys(people, 1)


@pytest.mark.slow
def test_a_second_signal_exits_at_once_and_loses_nothing(
    engine: Engine, project: Path, database_url: str, smtpd: SMTPServer
) -> None:
    config = write_config(project, database_url=database_url, smtp_url=smtpd.url)
    settings = load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})
    people = [f"d{i:03d}@example.org" for i in range(30)]
    bulk_people(engine, settings, people)
    # a relay that stalls in DATA: the first SIGTERM waits for it, the second does not
    smtpd.handler.faults.data_stalls = [0.0] * 5 + [30.0] * 100
    log = project / "twice.log"
    proc = newsletter(config, log, "send", ISSUE, "--no-progress")
    try:
        wait_for(lambda: len(smtpd.handler.messages) >= 5, proc, log)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert proc.poll() is None, "the first SIGTERM waits for the messages in DATA"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 143, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "SIGTERM again: exiting at once" in log.read_text()
    smtpd.handler.faults.data_stalls = []
    report = run_send(settings, engine, project / "issues" / ISSUE)
    assert report.finished
    counts = smtpd.handler.by_recipient()
    assert set(counts) == set(people)
