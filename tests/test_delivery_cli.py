"""The delivery commands as a person runs them: send, --test, --dry-run, status, demo."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from newsletter.cli import main
from newsletter.config import load_settings
from newsletter.store.database import make_engine, migrate
from tests.conftest import REPO, TEST_SECRET, run_cli, write_config
from tests.smtpd import SMTPServer
from tests.test_delivery import ISSUE, add_people

ENV = {"NEWSLETTER_SECRET_KEY": TEST_SECRET}


@pytest.fixture
def store(project: Path, database_url: str, smtpd: SMTPServer) -> tuple[Path, Engine]:
    config = write_config(project, database_url=database_url, smtp_url=smtpd.url)
    engine = make_engine(database_url)
    migrate(engine)
    settings = load_settings(config, environ=ENV)
    add_people(engine, settings, [f"r{i}@example.org" for i in range(4)])
    yield config, engine
    engine.dispose()


def test_send_then_again_then_status(
    store: tuple[Path, Engine], smtpd: SMTPServer, project: Path
) -> None:
    config, _ = store
    issue = str(project / "issues" / ISSUE)
    result = run_cli(config, "send", issue, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "4 sent now" in result.output
    assert smtpd.handler.by_recipient() == {f"r{i}@example.org": 1 for i in range(4)}

    result = run_cli(config, "send", issue, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "already sent" in result.output
    assert len(smtpd.handler.messages) == 4

    result = run_cli(config, "status", issue)
    assert result.exit_code == 0, result.output
    assert "flood-barrier-vote to weekly: finished, 4 recipients" in result.output
    assert "sent" in result.output


def test_relay_down_exits_non_zero_and_says_run_again(
    store: tuple[Path, Engine], smtpd: SMTPServer, project: Path
) -> None:
    config, _ = store
    smtpd.stop()
    result = run_cli(config, "send", ISSUE, "--no-progress")
    assert result.exit_code == 75
    assert "relay unreachable, 4 pending, run `newsletter send" in result.output
    smtpd.start()
    result = run_cli(config, "send", ISSUE, "--no-progress")
    assert result.exit_code == 0, result.output
    assert len(smtpd.handler.messages) == 4


def test_bounce_is_listed_and_status_shows_last_error(
    store: tuple[Path, Engine], smtpd: SMTPServer
) -> None:
    config, _ = store
    smtpd.handler.faults.rcpt["r1@example.org"] = ["550 5.1.1 unknown user"]
    result = run_cli(config, "send", ISSUE, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "failed: r1@example.org: 550 5.1.1 unknown user" in result.output
    result = run_cli(config, "status", "flood-barrier-vote")
    assert "r1@example.org: bounced after 1 attempt(s): 550 5.1.1 unknown user" in result.output


def test_deferred_retry_exits_incomplete(store: tuple[Path, Engine], smtpd: SMTPServer) -> None:
    # the retry comes due after delivery.max_wait_minutes: send does not stay for it
    config, _ = store
    config.write_text(config.read_text() + "\n[delivery]\nmax_wait_minutes = 0.01\n")
    smtpd.handler.faults.rcpt["r2@example.org"] = ["451 4.3.0 later"]
    result = run_cli(config, "send", ISSUE, "--no-progress")
    assert result.exit_code == 75
    assert "1 deferred after temporary failures" in result.output
    assert len(smtpd.handler.messages) == 3


def test_send_stays_for_a_retry_due_within_max_wait(
    store: tuple[Path, Engine], smtpd: SMTPServer
) -> None:
    config, _ = store
    config.write_text(
        config.read_text() + "\n[delivery]\nretry_base_seconds = 1\nmax_wait_minutes = 1\n"
    )
    smtpd.handler.faults.rcpt["r2@example.org"] = ["451 4.3.0 later", "451 4.3.0 later"]
    result = run_cli(config, "send", ISSUE, "--no-progress")
    assert result.exit_code == 0, result.output
    assert smtpd.handler.by_recipient() == {f"r{i}@example.org": 1 for i in range(4)}
    assert "deferred" not in result.output


def test_dry_run_sends_and_records_nothing(store: tuple[Path, Engine], smtpd: SMTPServer) -> None:
    config, _ = store
    result = run_cli(config, "send", ISSUE, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "recipients: 4" in result.output
    assert smtpd.handler.messages == []
    result = run_cli(config, "status", "flood-barrier-vote")
    assert "not sent yet" in result.output


def test_test_copy_goes_to_one_address_marked(
    store: tuple[Path, Engine], smtpd: SMTPServer
) -> None:
    config, _ = store
    result = run_cli(config, "send", ISSUE, "--test", "Editor@Example.org")
    assert result.exit_code == 0, result.output
    assert [m.rcpt_tos for m in smtpd.handler.messages] == [["editor@example.org"]]
    assert str(smtpd.handler.messages[0].message["Subject"]).startswith("[TEST] ")
    result = run_cli(config, "status", "flood-barrier-vote")
    assert "not sent yet" in result.output


def test_issue_with_errors_is_not_sent(
    store: tuple[Path, Engine], smtpd: SMTPServer, project: Path
) -> None:
    config, _ = store
    bad = project / "issues" / "2026-12-11-broken.md"
    bad.write_text("---\ntitle: x\n---\n", encoding="utf-8")
    result = run_cli(config, "send", str(bad), "--no-progress")
    assert result.exit_code == 1
    assert "not sending" in result.output
    assert smtpd.handler.messages == []


def test_demo_from_a_fresh_directory(tmp_path: Path) -> None:
    """The README's main job: embedded defaults, nothing else running, and re-runnable."""
    root = tmp_path / "clone"
    root.mkdir()
    shutil.copy(REPO / "newsletter.toml", root / "newsletter.toml")
    shutil.copytree(REPO / "issues", root / "issues")
    if (REPO / "templates").exists():
        shutil.copytree(REPO / "templates", root / "templates")
    # no configuration from the environment: the embedded defaults only
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("NEWSLETTER_")}
    runner = CliRunner()
    cwd = os.getcwd()
    os.chdir(root)
    try:
        first = runner.invoke(main, ["demo"], env=env)
        second = runner.invoke(main, ["demo"], env=env)
    finally:
        os.chdir(cwd)
    assert first.exit_code == 0, first.output
    assert "5 message(s) delivered to the sink just now" in first.output
    maildir = root / "var" / "maildir" / "new"
    files = list(maildir.iterdir())
    assert len(files) == 5
    assert str(maildir) in first.output
    assert second.exit_code == 0, second.output
    assert "Nothing new" in second.output
    assert len(list(maildir.iterdir())) == 5


def test_hourly_cap_pauses_the_send_and_counts_earlier_runs(
    store: tuple[Path, Engine], smtpd: SMTPServer
) -> None:
    config, _ = store
    config.write_text(config.read_text().replace("timeout = 5", "timeout = 5\nhourly_cap = 3"))
    result = run_cli(config, "send", ISSUE, "--no-progress")
    assert result.exit_code == 75
    assert "hourly cap reached, 1 pending" in result.output
    assert len(smtpd.handler.messages) == 3
    # a new run remembers, through the ledger, the three sent within the hour
    result = run_cli(config, "send", ISSUE, "--no-progress")
    assert result.exit_code == 75
    assert "hourly cap reached, 1 pending" in result.output
    assert len(smtpd.handler.messages) == 3


def test_rows_held_under_another_senders_lease_are_reported_as_held(
    store: tuple[Path, Engine], smtpd: SMTPServer
) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from newsletter.store.schema import deliveries

    config, engine = store
    config.write_text(config.read_text() + "\n[delivery]\nmax_wait_minutes = 0\n")
    # the send begins, then two rows are leased by senders elsewhere: one renewing its lease
    # (alive), one that stopped renewing 200 s ago (a lease is renewed every 100 s)
    from newsletter.config import load_settings as load
    from newsletter.sending import prepare_issue

    settings = load(config, environ=ENV)
    ref, _, _ = prepare_issue(settings, engine, settings.issues_dir / ISSUE)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        ids = list(conn.execute(select(deliveries.c.subscriber_id).limit(3)).scalars())
        for sid, owner, expires in (
            (ids[0], "far.example:41:1.0:aaaa0000", now + timedelta(seconds=290)),
            (ids[1], "gone.example:42:1.0:bbbb0000", now + timedelta(seconds=100)),
            (ids[2], "gone.example:42:1.0:bbbb0000", now + timedelta(seconds=100)),
        ):
            conn.execute(
                deliveries.update()
                .where(deliveries.c.issue_id == ref.id, deliveries.c.subscriber_id == sid)
                .values(status="sending", lease_owner=owner, lease_expires_at=expires)
            )
    result = run_cli(config, "send", ISSUE, "--no-progress")
    assert result.exit_code == 75, result.output
    assert "1 held by another sender (far.example:41:1.0:aaaa0000)" in result.output
    assert "2 held by a sender that stopped at " in result.output
    assert ", back at " in result.output
    assert "deferred after temporary failures" not in result.output
    assert len(smtpd.handler.messages) == 1
