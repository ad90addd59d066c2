"""What the CLI prints from the store cannot drive the operator's terminal."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from newsletter.cli import main
from tests.conftest import TEST_SECRET, write_config

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
