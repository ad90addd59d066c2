"""Preflight through the real CLI: drafts are not sent, a remote relay needs https links and
should have DKIM, ``--dry-run`` lists every finding; and the rules themselves."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from newsletter.config import load_settings
from newsletter.model import IssueStatus
from newsletter.preflight import is_loopback, preflight
from newsletter.store.schema import deliveries, issues
from newsletter.web.app import create_app
from tests.conftest import TEST_SECRET, run_cli, write_config
from tests.smtpd import RecordingHandler, SMTPServer
from tests.test_delivery import ISSUE, add_people
from tests.test_dkim import ed_key, rsa_key
from tests.test_message_dkim import dkim_table, key_files

__all__ = ["ed_key", "key_files", "rsa_key"]

DRAFT = "2026-12-04-budget-week.md"
READERS = [f"r{i}@example.org" for i in range(3)]


def configure(
    project: Path, database_url: str, smtp_url: str, *, base_url: str | None = None
) -> Path:
    config = write_config(project, database_url=database_url, smtp_url=smtp_url)
    if base_url is not None:
        text = config.read_text().replace('"https://news.test.example"', f'"{base_url}"')
        config.write_text(text)
    return config


def add_readers(engine: Engine, config: Path) -> None:
    add_people(
        engine, load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET}), READERS
    )


@pytest.fixture
def store(project: Path, engine: Engine, database_url: str, smtpd: SMTPServer) -> Path:
    config = configure(project, database_url, smtpd.url)
    add_people(
        engine, load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET}), READERS
    )
    return config


def recorded(engine: Engine) -> tuple[int, int]:
    """(issue rows, ledger rows): a refused send records neither."""
    with engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(issues)).scalar_one(),
            conn.execute(select(func.count()).select_from(deliveries)).scalar_one(),
        )


def archive_page(config: Path, engine: Engine) -> str:
    settings = load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})
    with TestClient(create_app(settings, engine=engine), base_url="https://news.test.example") as c:
        page = c.get("/archive")
    assert page.status_code == 200
    return page.text


# --- drafts -----------------------------------------------------------------------------------


def test_a_draft_is_refused_nothing_sent_recorded_or_published(
    store: Path, engine: Engine, smtpd: SMTPServer
) -> None:
    result = run_cli(store, "send", DRAFT, "--no-progress")
    assert result.exit_code == 1, result.output
    assert "error: status: the issue is a draft (status: draft)" in result.output
    assert "--test ADDR" in result.output
    assert "nothing was recorded or sent" in result.output
    assert smtpd.handler.messages == []
    assert recorded(engine) == (0, 0)
    assert "budget" not in archive_page(store, engine).lower()

    # the same issue once ready goes out, and is then in the archive
    draft = store.parent / "issues" / DRAFT
    draft.write_text(draft.read_text().replace("status: draft", "status: ready"))
    result = run_cli(store, "send", DRAFT, "--no-progress")
    assert result.exit_code == 0, result.output
    assert smtpd.handler.by_recipient() == dict.fromkeys(READERS, 1)
    assert "budget" in archive_page(store, engine).lower()


def test_a_test_copy_of_a_draft_is_sent(store: Path, engine: Engine, smtpd: SMTPServer) -> None:
    result = run_cli(store, "send", DRAFT, "--test", "editor@example.org")
    assert result.exit_code == 0, result.output
    assert [m.rcpt_tos for m in smtpd.handler.messages] == [["editor@example.org"]]
    assert smtpd.handler.messages[0].message["Subject"].startswith("[TEST]")
    assert recorded(engine) == (0, 0)


def test_dry_run_of_a_draft_lists_the_finding_and_exits_non_zero(
    store: Path, engine: Engine, smtpd: SMTPServer
) -> None:
    result = run_cli(store, "send", DRAFT, "--dry-run")
    assert result.exit_code == 1, result.output
    assert "Dry run: nothing is sent or recorded." in result.output
    assert "preflight:" in result.output
    assert "error: status: the issue is a draft" in result.output
    assert "a real send would refuse" in result.output
    assert smtpd.handler.messages == []
    assert recorded(engine) == (0, 0)

    ready = run_cli(store, "send", ISSUE, "--dry-run")
    assert ready.exit_code == 0, ready.output
    assert "preflight:  nothing in the way" in ready.output


# --- a relay that is not on this machine -------------------------------------------------------


def local_address() -> str | None:
    """An address of this machine that is not loopback (no packet is sent), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.123", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if is_loopback(address) else address


class RemoteServer(SMTPServer):
    """The aiosmtpd fixture listening on a non-loopback address of this machine."""

    def __init__(self, handler: RecordingHandler, host: str, **options: Any) -> None:
        super().__init__(handler, **options)
        self.host = host

    def start(self) -> None:
        with socket.socket() as s:
            s.bind((self.host, 0))
            self.port = int(s.getsockname()[1])
        self.controller = Controller(
            self.handler, hostname=self.host, port=self.port, ready_timeout=10, decode_data=False
        )
        self.controller.start()

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"


@pytest.fixture
def remote(smtp_handler: RecordingHandler) -> Iterator[RemoteServer]:
    host = local_address()
    if host is None:
        pytest.skip("this machine has no non-loopback address to listen on")
    server = RemoteServer(smtp_handler, host)
    server.start()
    yield server
    server.stop()


def test_a_remote_relay_with_an_http_base_url_is_refused(
    project: Path, engine: Engine, database_url: str, remote: RemoteServer
) -> None:
    config = configure(project, database_url, remote.url, base_url="http://news.test.example")
    add_people(
        engine, load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET}), READERS
    )
    result = run_cli(config, "send", ISSUE, "--no-progress")
    assert result.exit_code == 1, result.output
    assert "error: publication.base_url: http://news.test.example is not https" in result.output
    assert f"the relay {remote.host} is not on this machine" in result.output
    assert remote.handler.messages == []
    assert recorded(engine) == (0, 0)

    dry = run_cli(config, "send", ISSUE, "--dry-run")
    assert dry.exit_code == 1
    assert "error: publication.base_url" in dry.output
    assert "warning: dkim: messages through" in dry.output

    # a test copy to the editor is only warned about
    test = run_cli(config, "send", ISSUE, "--test", "editor@example.org")
    assert test.exit_code == 0, test.output
    assert "warning: publication.base_url" in test.output
    assert len(remote.handler.messages) == 1


def test_a_remote_relay_without_dkim_warns_and_sends(
    project: Path, engine: Engine, database_url: str, remote: RemoteServer
) -> None:
    config = configure(project, database_url, remote.url)
    add_people(
        engine, load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET}), READERS
    )
    result = run_cli(config, "send", ISSUE, "--no-progress")
    assert result.exit_code == 0, result.output
    assert f"warning: dkim: messages through {remote.host} go out without a DKIM" in result.output
    assert remote.handler.by_recipient() == dict.fromkeys(READERS, 1)


def test_a_remote_relay_with_dkim_and_https_has_nothing_to_say(
    project: Path, engine: Engine, database_url: str, remote: RemoteServer, key_files: object
) -> None:
    config = configure(project, database_url, remote.url)
    config.write_text(config.read_text() + dkim_table(key_files))  # type: ignore[arg-type]
    add_people(
        engine, load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET}), READERS
    )
    result = run_cli(config, "send", ISSUE, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    assert "error" not in result.output
    assert all(m.data.startswith(b"DKIM-Signature:") for m in remote.handler.messages)
    assert len(remote.handler.messages) == len(READERS)


def test_a_loopback_relay_with_an_http_base_url_is_fine(
    project: Path, engine: Engine, database_url: str, smtpd: SMTPServer
) -> None:
    """The local sink, a Postfix on this machine: the relay beyond is its business."""
    config = configure(project, database_url, smtpd.url, base_url="http://127.0.0.1:8000")
    add_people(
        engine, load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET}), READERS
    )
    result = run_cli(config, "send", ISSUE, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    assert len(smtpd.handler.messages) == len(READERS)


# --- the rules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("mail.localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("192.0.2.2", False),
        ("relay.example", False),
        ("localhost.example", False),
        ("", False),
    ],
)
def test_what_counts_as_this_machine(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_rules(project: Path, tmp_path: Path) -> None:
    def findings(smtp_url: str, base_url: str, status: IssueStatus, test: bool) -> list[str]:
        config = configure(project, f"sqlite:///{tmp_path / 'x.db'}", smtp_url, base_url=base_url)
        settings = load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})
        return [f"{f.severity.value}:{f.key}" for f in preflight(settings, status, test_copy=test)]

    local, remote = "smtp://127.0.0.1:2525", "smtps://smtp.relay.example"
    https, http = "https://news.test.example", "http://news.test.example"
    assert findings(local, http, IssueStatus.READY, False) == []
    assert findings(local, https, IssueStatus.DRAFT, False) == ["error:status"]
    assert findings(local, https, IssueStatus.DRAFT, True) == []
    assert findings(remote, https, IssueStatus.READY, False) == ["warning:dkim"]
    assert findings(remote, http, IssueStatus.DRAFT, False) == [
        "error:status",
        "error:publication.base_url",
        "warning:dkim",
    ]
    assert findings(remote, http, IssueStatus.READY, True) == [
        "warning:publication.base_url",
        "warning:dkim",
    ]
