"""The DKIM signer process: issue copies are signed beside the event loop, in a process of its
own, and whatever becomes of that process no copy goes out unsigned or wrongly signed.

Every signature is checked by dkimpy and by OpenDKIM; the sends go through ``run_send`` and the
CLI to the aiosmtpd fixture.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from newsletter import dkim_worker
from newsletter.config import Dkim, Settings, load_settings
from newsletter.dkim import Signer, SigningTemplate, Slot
from newsletter.dkim_signers import IssueSigner, SignerProcess
from newsletter.errors import ConfigError
from newsletter.message import MessageTemplate, Personalization
from newsletter.sending import prepare_issue, run_send
from tests.conftest import TEST_SECRET
from tests.opendkim import OpenDkim, opendkim
from tests.smtpd import SMTPServer
from tests.test_crash import newsletter, wait_for
from tests.test_delivery import ISSUE, add_people, states
from tests.test_dkim import ed_key, issue_settings, judge, rsa_key, signer
from tests.test_message_dkim import (
    LOCALS,
    NAMES,
    TOKENS,
    assert_verifies,
    copy_for,
    dkim_config,
    key_files,
    unstuffed,
)
from tests.test_message_splice import HTML, TEXT, rendered_issue

__all__ = [
    "dkim_config",
    "ed_key",
    "issue_settings",
    "judge",
    "key_files",
    "opendkim",
    "rsa_key",
    "signer",
]


def signer_processes(parent: int) -> list[int]:
    """The pids of the signer processes whose parent is ``parent`` (zombies left out)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rpartition(")")[2].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == parent and stat[0] != "Z" and b"newsletter.dkim_worker" in cmdline:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The signatures made in this process (the thread path's), by thread name."""
    made: list[str] = []
    real = SigningTemplate.signature

    def recording(self: SigningTemplate, *args: object, **kwargs: object) -> bytes:
        import threading

        made.append(threading.current_thread().name)
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(SigningTemplate, "signature", recording)
    return made


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[SignerProcess]:
    """Every signer process this test starts."""
    processes: list[SignerProcess] = []
    real = SignerProcess.__init__

    def init(self: SignerProcess, signer: Signer) -> None:
        real(self, signer)
        processes.append(self)

    monkeypatch.setattr(SignerProcess, "__init__", init)
    return processes


def test_a_send_signs_every_copy_in_the_signer_process(
    settings: Settings,
    engine: Engine,
    smtpd: SMTPServer,
    project: Path,
    key_files: Dkim,
    signer: Signer,
    judge: OpenDkim,
    recorded: list[str],
    started: list[SignerProcess],
) -> None:
    signed = dataclasses.replace(settings, smtp_url=smtpd.url, dkim=key_files)
    people = [f"r{i}@example.org" for i in range(30)]
    add_people(engine, settings, people)
    report = run_send(signed, engine, project / "issues" / ISSUE)
    assert report.sent == 30
    # one process, started before the issue was prepared; no signature made in this one
    assert len(started) == 1
    assert started[0].pid != os.getpid()
    assert recorded == []
    # the send waited for it to exit
    assert not alive(started[0].pid)
    received = smtpd.handler.messages
    assert sorted(r for m in received for r in m.rcpt_tos) == sorted(people)
    for message in received:
        # each copy carries its own signature, answers matched to the copies they were for
        assert_verifies(message.data, signer, judge)


def test_a_signer_process_that_dies_mid_send_leaves_no_copy_unsigned(
    settings: Settings,
    engine: Engine,
    smtpd: SMTPServer,
    project: Path,
    key_files: Dkim,
    signer: Signer,
    judge: OpenDkim,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What the process still owed, and every copy after, is signed in the threads."""
    calls = 0
    real = IssueSigner.sign

    def sign(self: IssueSigner, template: MessageTemplate, person: Personalization) -> object:
        nonlocal calls
        calls += 1
        if calls == 6:
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGKILL)
        return real(self, template, person)

    monkeypatch.setattr(IssueSigner, "sign", sign)
    signed = dataclasses.replace(settings, smtp_url=smtpd.url, dkim=key_files)
    people = [f"k{i}@example.org" for i in range(25)]
    add_people(engine, settings, people)
    with caplog.at_level(logging.WARNING, logger="newsletter.dkim_signers"):
        report = run_send(signed, engine, project / "issues" / ISSUE)
    assert report.sent == 25
    assert "the DKIM signer process stopped" in caplog.text
    assert "signing in threads from here" in caplog.text
    assert set(states(engine).values()) == {"sent"}
    received = smtpd.handler.messages
    assert len(received) == 25
    for message in received:
        assert_verifies(message.data, signer, judge)


def test_one_core_or_no_event_loop_signs_in_threads(
    issue_settings: Settings, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = MessageTemplate(
        rendered_issue(HTML, TEXT), issue_settings, issue_settings.mailing_list(None)
    )
    # outside an event loop (tests, benchmarks): threads, and no process started
    outside = IssueSigner(signer)
    try:
        _, future = outside.sign(template, copy_for(0))
        assert isinstance(future, Future)
        assert outside.process is None
    finally:
        outside.close()

    monkeypatch.setattr(os, "cpu_count", lambda: 1)

    async def one_core() -> None:
        issue_signer = IssueSigner(signer)
        try:
            issue_signer.start()
            _, future = issue_signer.sign(template, copy_for(1))
            assert isinstance(future, Future)
            assert issue_signer.process is None
            header = await asyncio.wrap_future(future)
            assert header.startswith(b"DKIM-Signature: ")
        finally:
            issue_signer.close()

    asyncio.run(one_core())


def test_one_signer_process_serves_sends_in_successive_event_loops(
    issue_settings: Settings, signer: Signer, judge: OpenDkim
) -> None:
    template = MessageTemplate(
        rendered_issue(HTML, TEXT), issue_settings, issue_settings.mailing_list(None)
    )
    issue_signer = IssueSigner(signer, process=True)
    pids = []

    async def send(first: int) -> None:
        futures = [issue_signer.sign(template, copy_for(n)) for n in range(first, first + 5)]
        for data, future in futures:
            header = await asyncio.wrap_future(future)
            assert_verifies(header + unstuffed(data), signer, judge)
        assert issue_signer.process is not None
        pids.append(issue_signer.process.pid)

    try:
        asyncio.run(send(0))
        asyncio.run(send(5))
    finally:
        issue_signer.close()
    assert pids[0] == pids[1]


@pytest.fixture(scope="module")
def process_signer(signer: Signer) -> Iterator[IssueSigner]:
    issue_signer = IssueSigner(signer, process=True)
    yield issue_signer
    issue_signer.close()


PEOPLE = st.lists(st.tuples(NAMES, LOCALS, TOKENS), min_size=1, max_size=4)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(people=PEOPLE)
def test_random_personalisations_through_the_signer_process_verify_with_both(
    people: list[tuple[str, str, str]],
    process_signer: IssueSigner,
    signer: Signer,
    judge: OpenDkim,
    issue_settings: Settings,
) -> None:
    template = MessageTemplate(
        rendered_issue(HTML, TEXT + " \t \n"),
        issue_settings,
        issue_settings.mailing_list(None),
        feedback="issue:weekly:The-Test-Weekly:test.example",
        provider="mailgun",
    )

    async def sign_all() -> list[bytes]:
        copies = [
            process_signer.sign(
                template,
                copy_for(n, name=name.strip() or None, to=f"{local}@example.org", token=token),
            )
            for n, (name, local, token) in enumerate(people)
        ]
        return [await asyncio.wrap_future(f) + unstuffed(data) for data, f in copies]

    for message in asyncio.run(sign_all()):
        assert_verifies(message, signer, judge)
    assert process_signer.process is not None
    assert process_signer.process.running


def test_a_copy_the_process_cannot_sign_is_a_config_error(signer: Signer) -> None:
    signing = signer.template(
        [("From", b"From: a@test.example\r\n"), ("To", Slot("to"))], [b"hello\r\n"]
    )

    pool = ThreadPoolExecutor(1)

    async def ask(value: bytes) -> bytes:
        process = SignerProcess(signer)
        try:
            loop = asyncio.get_running_loop()
            return await process.submit(loop, signing, {"to": value}, lambda: pool)
        finally:
            process.close()

    try:
        assert asyncio.run(ask(b"To: b@example.org\r\n")).startswith(b"DKIM-Signature: ")
        with pytest.raises(ConfigError, match="must hold one to header line"):
            asyncio.run(ask(b"To: b@example.org\r\nBcc: c@example.org\r\n"))
    finally:
        pool.shutdown()


def test_the_signer_process_outlives_signals_and_exits_with_its_socket(
    issue_settings: Settings, signer: Signer, judge: OpenDkim
) -> None:
    """The sending process decides when it stops: a service manager's SIGTERM to every process
    of the service, or a Ctrl-C, does not take it away from under the send."""
    template = MessageTemplate(
        rendered_issue(HTML, TEXT), issue_settings, issue_settings.mailing_list(None)
    )
    issue_signer = IssueSigner(signer, process=True)

    async def one(n: int) -> None:
        data, future = issue_signer.sign(template, copy_for(n))
        assert_verifies(await asyncio.wrap_future(future) + unstuffed(data), signer, judge)

    try:
        asyncio.run(one(3))
        process = issue_signer.process
        assert process is not None
        assert os.getpgid(process.pid) == process.pid, "not in the sender's process group"
        os.kill(process.pid, signal.SIGINT)
        os.kill(process.pid, signal.SIGTERM)
        time.sleep(0.3)
        assert alive(process.pid)
        asyncio.run(one(4))
    finally:
        issue_signer.close()
    assert process._child.returncode == 0


@pytest.mark.parametrize("buffer_size", [1, 3, 7, 4096], ids=["byte", "three", "seven", "whole"])
def test_frames_come_out_whole_however_the_bytes_arrive(buffer_size: int) -> None:
    messages = [("keys", "d.example", []), ["x" * 5000, b"\x00" * 3], {"n": 1}]
    wire = b"".join(dkim_worker.frame(m) for m in messages)
    buffer = bytearray()
    out = []
    for start in range(0, len(wire), buffer_size):
        buffer += wire[start : start + buffer_size]
        out.extend(dkim_worker.frames(buffer))
    assert out == messages
    assert buffer == b""


# --- the sending process stopped ------------------------------------------------------------


def test_ctrl_c_to_a_signed_sends_process_group_stops_it_cleanly(
    engine: Engine,
    dkim_config: Path,
    project: Path,
    smtpd: SMTPServer,
    signer: Signer,
    judge: OpenDkim,
) -> None:
    settings_ = load_settings(dkim_config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})
    people = [f"g{i:03d}@example.org" for i in range(40)]
    add_people(engine, settings_, people)
    smtpd.handler.faults.data_delay = 0.1
    log = project / "ctrl-c.log"
    proc = newsletter(dkim_config, log, "send", ISSUE, "--no-progress", new_session=True)
    try:
        wait_for(lambda: len(smtpd.handler.messages) >= 5, proc, log)
        (worker,) = signer_processes(proc.pid)
        # as a terminal's Ctrl-C: the sender and its signer process both get it
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=20) == 130, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log.read_text()
    assert "stopped by SIGINT: " in output
    assert "given back to pending" in output
    assert "signer process stopped" not in output
    assert "Traceback" not in output
    wait_for(lambda: not alive(worker), timeout=5)
    assert "sending" not in states(engine).values()
    for message in smtpd.handler.messages:
        assert_verifies(message.data, signer, judge)


def test_kill_9_of_a_signed_send_leaves_no_signer_process_behind(
    engine: Engine, dkim_config: Path, project: Path, smtpd: SMTPServer
) -> None:
    settings_ = load_settings(dkim_config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})
    add_people(engine, settings_, [f"h{i:03d}@example.org" for i in range(30)])
    smtpd.handler.faults.data_delay = 0.1
    log = project / "kill.log"
    proc = newsletter(dkim_config, log, "send", ISSUE, "--no-progress")
    try:
        wait_for(lambda: len(smtpd.handler.messages) >= 3, proc, log)
        (worker,) = signer_processes(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # its socket closed with the sender: it exits by itself
    wait_for(lambda: not alive(worker), timeout=5)


def test_sigterm_to_every_process_of_a_signed_worker_stops_it_cleanly(
    engine: Engine,
    dkim_config: Path,
    project: Path,
    smtpd: SMTPServer,
    signer: Signer,
    judge: OpenDkim,
) -> None:
    """As systemd stops a service: SIGTERM to each of its processes, the signer's too."""
    settings_ = load_settings(dkim_config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})
    people = [f"w{i:03d}@example.org" for i in range(40)]
    add_people(engine, settings_, people)
    prepare_issue(settings_, engine, project / "issues" / ISSUE)
    smtpd.handler.faults.data_delay = 0.1
    log = project / "worker.log"
    proc = newsletter(dkim_config, log, "worker", "--poll", "0.2")
    try:
        wait_for(lambda: len(smtpd.handler.messages) >= 5, proc, log)
        (worker,) = signer_processes(proc.pid)
        os.kill(worker, signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 143, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log.read_text()
    assert "stopped by SIGTERM: " in output
    assert "signer process stopped" not in output
    assert "Traceback" not in output
    wait_for(lambda: not alive(worker), timeout=5)
    in_ledger = states(engine)
    assert "sending" not in in_ledger.values()
    received = smtpd.handler.messages
    assert {e for e, st in in_ledger.items() if st == "sent"} == {
        r for m in received for r in m.rcpt_tos
    }
    for message in received:
        assert_verifies(message.data, signer, judge)


def test_the_process_forgets_the_templates_of_issues_let_go(
    issue_settings: Settings, signer: Signer, judge: OpenDkim
) -> None:
    """A worker runs for weeks, one issue after another: the process keeps only the live ones."""
    import gc

    issue_signer = IssueSigner(signer, process=True)

    async def one(subject: str) -> None:
        template = MessageTemplate(
            rendered_issue(HTML, TEXT, subject),
            issue_settings,
            issue_settings.mailing_list(None),
        )
        data, future = issue_signer.sign(template, copy_for(7))
        assert_verifies(await asyncio.wrap_future(future) + unstuffed(data), signer, judge)

    try:
        for week in range(4):
            asyncio.run(one(f"Week {week}"))
            gc.collect()
        process = issue_signer.process
        assert process is not None
        # the last issue's template is all it still holds after the next one is sent
        asyncio.run(one("Week 5"))
        assert process.templates == 1
        assert process.running
    finally:
        issue_signer.close()
