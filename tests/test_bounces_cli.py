"""``newsletter bounces import|list|show``, ``status`` and ``subscribers show`` as a person runs
them, on files, an mbox and a real IMAP server (Dovecot) on loopback."""

from __future__ import annotations

import mailbox
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from newsletter.config import Settings, load_settings
from newsletter.sending import run_send, with_smtp_url
from newsletter.store.database import make_engine
from newsletter.store.subscribers import suppression_reason
from tests.conftest import TEST_SECRET, run_cli, write_config
from tests.dovecot import Dovecot, require_dovecot
from tests.postfix import service_root
from tests.reports import arf, dsn, vacation
from tests.smtpd import Received, SMTPServer
from tests.test_delivery import FAST, add_people
from tests.tls import make_pki

PEOPLE = ["ann@example.org", "bob@example.org", "cy@example.org"]
IMAP_PASSWORD = "imap-password-0123456789"


@pytest.fixture
def config(project: Path, tmp_path: Path) -> Path:
    path = write_config(project, database_url=f"sqlite:///{tmp_path / 'b.db'}")
    with path.open("a", encoding="utf-8") as fh:
        fh.write('\n[bounces]\ndomain = "bounce.test.example"\n')
    assert run_cli(path, "init").exit_code == 0
    return path


@pytest.fixture
def cli_settings(config: Path) -> Settings:
    return load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})


@pytest.fixture
def cli_engine(cli_settings: Settings) -> Iterator[Engine]:
    engine = make_engine(cli_settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sent(
    cli_settings: Settings, cli_engine: Engine, smtpd: SMTPServer, project: Path
) -> dict[str, Received]:
    add_people(cli_engine, cli_settings, PEOPLE)
    issue = next((project / "issues").glob("2026-11-20-*.md"))
    assert run_send(with_smtp_url(cli_settings, smtpd.url), cli_engine, issue, policy=FAST).finished
    return {m.rcpt_tos[0]: m for m in smtpd.handler.messages}


def bounce(received: Received, status: str = "5.1.1") -> bytes:
    return dsn(
        to=received.mail_from,
        recipients=[(received.rcpt_tos[0], "failed", status)],
        original=received.data,
    )


def test_import_maildir_mbox_and_eml_then_again(
    config: Path, cli_engine: Engine, sent: dict[str, Received], tmp_path: Path
) -> None:
    maildir = mailbox.Maildir(str(tmp_path / "Maildir"), create=True)
    maildir.add(bounce(sent["ann@example.org"]))
    maildir.add(vacation(to=sent["bob@example.org"].mail_from))
    box = mailbox.mbox(str(tmp_path / "reports.mbox"))
    box.add(arf(original=sent["cy@example.org"].data))
    box.add(
        dsn(to="bounces@bounce.test.example", recipients=[("bob@example.org", "failed", "5.1.1")])
    )
    box.close()
    single = tmp_path / "soft.eml"
    single.write_bytes(bounce(sent["bob@example.org"], "4.2.2"))
    paths = [str(tmp_path / "Maildir"), str(tmp_path / "reports.mbox"), str(single)]

    result = run_cli(config, "bounces", "import", *paths)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "applied (hard bounce, ann@example.org, suppressed)" in out
    assert "recorded" in out
    assert "applied (complaint, cy@example.org, suppressed)" in out
    assert "review (no delivery token in it)" in out
    assert "soft.eml: applied (soft bounce, bob@example.org)" in out
    assert out.strip().endswith("3 applied, 1 recorded, 1 review")
    with cli_engine.connect() as conn:
        assert suppression_reason(conn, "ann@example.org").value == "bounced"  # type: ignore[union-attr]
        assert suppression_reason(conn, "cy@example.org").value == "complained"  # type: ignore[union-attr]
        # a report naming bob without a verifiable link changed nothing
        assert suppression_reason(conn, "bob@example.org") is None

    again = run_cli(config, "bounces", "import", "--quiet", "--jobs", "2", *paths)
    assert again.exit_code == 0, again.output
    assert again.output.strip() == "5 already received"

    listed = run_cli(config, "bounces", "list", "--issue", "flood-barrier-vote")
    assert listed.exit_code == 0, listed.output
    assert "hard bounce" in listed.output
    assert "ann@example.org flood-barrier-vote/weekly -> suppressed" in listed.output
    assert "soft bounce" in listed.output
    assert "complaint" in listed.output
    assert "4 event(s)" in listed.output
    review = run_cli(config, "bounces", "list", "--review")
    assert "no delivery token in it" in review.output
    report_id = review.output.split("#", 1)[1].split()[0]
    shown = run_cli(config, "bounces", "show", report_id)
    assert shown.exit_code == 0
    assert "Final-Recipient: rfc822; bob@example.org" in shown.output
    assert run_cli(config, "bounces", "list", "--since", "yesterday").exit_code == 2

    status = run_cli(config, "status", "flood-barrier-vote")
    assert status.exit_code == 0, status.output
    assert "hard bounces: 1 (33.33%; warn at 2%)  WARNING" in status.output
    assert "complaints: 1 (33.33%; warn at 0.1%, alarm at 0.3%)  ALARM" in status.output
    assert "soft bounces: 1" in status.output
    shown = run_cli(config, "subscribers", "show", "ann@example.org")
    assert "suppressed: bounced" in shown.output
    assert "smtp" not in shown.output
    assert "import hard bounce flood-barrier-vote -> suppressed: 5.1.1" in shown.output


def test_a_file_that_is_not_mail_storage_names_itself(config: Path, tmp_path: Path) -> None:
    folder = tmp_path / "notamaildir"
    folder.mkdir()
    result = run_cli(config, "bounces", "import", str(folder))
    assert result.exit_code == 1
    assert "notamaildir" in result.output
    assert "not a Maildir" in result.output


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    require_dovecot()
    root = service_root("newsletter-dovecot-")
    server = Dovecot(root / "dovecot", make_pki(root / "pki"), IMAP_PASSWORD)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_import_from_a_real_imap_server(
    config: Path, cli_engine: Engine, sent: dict[str, Received], dovecot: Dovecot, tmp_path: Path
) -> None:
    dovecot.deliver("1.eml", bounce(sent["ann@example.org"]))
    dovecot.deliver("2.eml", vacation(to=sent["bob@example.org"].mail_from))
    url = f"imaps://reports@127.0.0.1:{dovecot.port}/INBOX"
    env = {
        "NEWSLETTER_IMAP_PASSWORD": IMAP_PASSWORD,
        "NEWSLETTER_BOUNCES_IMAP_CA_FILE": str(dovecot.pki.ca_cert),
    }
    result = run_cli(config, "bounces", "import", "--imap", url, env=env)
    assert result.exit_code == 0, result.output + dovecot.log()
    assert "applied (hard bounce, ann@example.org, suppressed)" in result.output
    assert result.output.strip().endswith("1 applied, 1 recorded")
    assert IMAP_PASSWORD not in result.output
    # seen now: the next poll takes nothing again
    again = run_cli(config, "bounces", "import", "--imap", url, env=env)
    assert again.output.strip() == "no messages"
    with cli_engine.connect() as conn:
        assert suppression_reason(conn, "ann@example.org") is not None

    # the certificate is verified: without the test CA the login never happens
    untrusted = run_cli(
        config,
        "bounces",
        "import",
        "--imap",
        url,
        env={**env, "NEWSLETTER_BOUNCES_IMAP_CA_FILE": ""},
    )
    assert untrusted.exit_code == 1
    assert "does not verify" in untrusted.output
    wrong = run_cli(
        config,
        "bounces",
        "import",
        "--imap",
        url,
        env={**env, "NEWSLETTER_IMAP_PASSWORD": "wrong-password-0123"},
    )
    assert wrong.exit_code == 1
    assert "refused" in wrong.output
    assert "wrong-password" not in wrong.output
    inline = run_cli(
        config,
        "bounces",
        "import",
        "--imap",
        f"imaps://reports:pw@127.0.0.1:{dovecot.port}/",
        env=env,
    )
    assert inline.exit_code == 1
    assert "NEWSLETTER_IMAP_PASSWORD" in inline.output
