"""Secrets never reach what the CLI prints: the signing key, the SMTP password, a DB password."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from newsletter.cli import main
from newsletter.config import load_settings
from tests.conftest import TEST_SECRET, write_config
from tests.smtpd import SMTPServer

DB_PASSWORD = "db-pw-Zq81x"
SMTP_PASSWORD = "smtp-pw-K2v9w"


@pytest.mark.postgres
def test_cli_output_never_shows_a_secret(
    project: Path, postgres_url: str, smtpd: SMTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    # the test server trusts local connections, so the password is carried but not needed
    url = make_url(postgres_url).set(password=DB_PASSWORD).render_as_string(hide_password=False)
    config = write_config(project, database_url=url, smtp_url=smtpd.url)
    env = {"NEWSLETTER_SECRET_KEY": TEST_SECRET, "NEWSLETTER_SMTP_PASSWORD": SMTP_PASSWORD}
    settings = load_settings(config, environ=env)
    assert TEST_SECRET not in repr(settings)
    assert SMTP_PASSWORD not in repr(settings)

    caplog.set_level(logging.DEBUG)
    runner = CliRunner()
    outputs = []
    for args in (
        ["init"],
        ["subscribers", "add", "reader@example.org"],
        ["subscribers", "count"],
        ["send", "--dry-run", str(project / "issues" / "2026-11-20-flood-barrier-vote.md")],
        ["demo"],
        ["status", "flood-barrier-vote"],
    ):
        result = runner.invoke(main, ["--config", str(config), *args], env=env)
        outputs.append(f"$ {' '.join(args)} -> {result.exit_code}\n{result.output}")
    text = "\n".join(outputs) + caplog.text
    assert "Database ready" in text  # the commands did run
    assert "$ demo -> 0" in text
    for secret in (DB_PASSWORD, SMTP_PASSWORD, TEST_SECRET):
        assert secret not in text, text
