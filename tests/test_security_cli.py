"""What the CLI prints from the store cannot drive the operator's terminal."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from newsletter.cli import main
from newsletter.config import load_settings
from newsletter.store.database import make_engine, migrate
from tests.conftest import TEST_SECRET, write_config
from tests.smtpd import SMTPServer
from tests.test_delivery import ISSUE, add_people

# colours, then OSC 52 (write the clipboard) and a window-title change, then a bare CR
ESCAPES = "\x1b[31mred\x1b[0m \x1b]52;c;ZXZpbA==\x07 \x1b]0;pwned\x07 \rover"


def test_show_escapes_control_characters_from_imported_attributes(
    project: Path, database_url: str, tmp_path: Path
) -> None:
    config = write_config(project, database_url=database_url)
    env = {"NEWSLETTER_SECRET_KEY": TEST_SECRET}
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, ["--config", str(config), *args], env=env)
        assert result.exit_code == 0, result.output
        return result.output

    csv = tmp_path / "people.csv"
    csv.write_text(
        f'email,name,city,"note{ESCAPES}"\nann@example.org,"Ann{ESCAPES}","Lyon{ESCAPES}","x"\n',
        encoding="utf-8",
    )
    run("init")
    run("subscribers", "import", str(csv), "--no-progress")
    for out in (run("subscribers", "show", "ann@example.org"), run("subscribers", "list")):
        assert "\x1b" not in out
        assert "\x07" not in out
        assert "\r" not in out
    shown = run("subscribers", "show", "ann@example.org")
    assert "Lyon\\x1b[31mred" in shown  # still there for the operator to see, as text


def test_status_escapes_control_characters_in_a_remote_reply(
    project: Path, database_url: str, smtpd: SMTPServer
) -> None:
    # the reply text comes from the recipient's side of the world; it lands in the ledger,
    # the suppression list, `newsletter status` and the editor's report
    config = write_config(project, database_url=database_url, smtp_url=smtpd.url)
    env = {"NEWSLETTER_SECRET_KEY": TEST_SECRET}
    engine = make_engine(database_url)
    try:
        migrate(engine)
        add_people(
            engine, load_settings(config, environ=env), ["evil@example.org", "ok@example.org"]
        )
    finally:
        engine.dispose()
    smtpd.handler.faults.rcpt = {"evil@example.org": [f"550 5.1.1 {ESCAPES} gone"]}
    runner = CliRunner()
    issue = str(project / "issues" / ISSUE)
    sent = runner.invoke(main, ["--config", str(config), "send", issue, "--no-progress"], env=env)
    assert sent.exit_code == 0, sent.output
    status = runner.invoke(main, ["--config", str(config), "status", issue], env=env)
    assert status.exit_code == 0, status.output
    assert "evil@example.org: bounced" in status.output
    for out in (sent.output, status.output):
        assert "\x1b" not in out
        assert "\x07" not in out
    assert "\\x1b]52;c;ZXZpbA==" in status.output  # kept, as text
