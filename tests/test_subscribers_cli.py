"""``newsletter init`` and ``newsletter subscribers ...`` end to end on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli, write_config


@pytest.fixture
def config(project: Path, database_url: str) -> Path:
    return write_config(project, database_url=database_url)


def test_commands_before_init_say_to_run_init(config: Path) -> None:
    result = run_cli(config, "subscribers", "count")
    assert result.exit_code == 1
    assert "newsletter init" in result.output
    assert "Traceback" not in result.output


def test_init_is_idempotent(config: Path) -> None:
    for _ in range(2):
        result = run_cli(config, "init")
        assert result.exit_code == 0, result.output
        assert "Lists: business, weekly" in result.output


def test_add_list_count_show_remove(config: Path) -> None:
    run_cli(config, "init")
    r = run_cli(config, "subscribers", "add", "Ann@Example.org", "--name", "Ann")
    assert r.exit_code == 0, r.output
    r = run_cli(config, "subscribers", "add", "ann@example.org", "--list", "business")
    assert r.exit_code == 0, r.output
    run_cli(config, "subscribers", "add", "bo@example.org", "--unconfirmed")

    r = run_cli(config, "subscribers", "list")
    assert r.output.splitlines() == [
        "ann@example.org  confirmed  Ann",
        "bo@example.org  unconfirmed",
    ]
    r = run_cli(config, "subscribers", "count")
    assert "weekly: 1 unconfirmed, 1 confirmed, 0 unsubscribed" in r.output
    r = run_cli(config, "subscribers", "show", "ANN@example.org")
    assert "list:       weekly: confirmed" in r.output
    assert "list:       business: confirmed" in r.output

    r = run_cli(config, "subscribers", "remove", "ann@example.org", "--list", "business")
    assert r.output.strip() == "ann@example.org: unsubscribed from business"
    r = run_cli(config, "subscribers", "add", "ann@example.org", "--list", "business")
    assert r.exit_code == 1
    assert "only they can re-join" in r.output

    r = run_cli(config, "subscribers", "remove", "ann@example.org")
    assert "suppressed" in r.output
    r = run_cli(config, "subscribers", "add", "ann@example.org")
    assert r.exit_code == 1
    assert "suppressed" in r.output
    r = run_cli(config, "subscribers", "remove", "ann@example.org", "--erase")
    assert "personal data deleted" in r.output
    r = run_cli(config, "subscribers", "show", "ann@example.org")
    assert r.output.strip() == "suppressed: unsubscribed"


def test_removing_the_last_list_says_it_suppressed(config: Path) -> None:
    run_cli(config, "init")
    run_cli(config, "subscribers", "add", "cy@example.org")
    r = run_cli(config, "subscribers", "remove", "cy@example.org", "--list", "weekly")
    assert r.exit_code == 0, r.output
    assert r.output.strip() == "cy@example.org: unsubscribed from weekly, the last list; suppressed"
    r = run_cli(config, "subscribers", "show", "cy@example.org")
    assert "suppressed" in r.output


def test_bad_input_is_one_clear_line(config: Path) -> None:
    run_cli(config, "init")
    r = run_cli(config, "subscribers", "add", "x@example.org\nBcc: y@example.org")
    assert r.exit_code == 1
    assert r.output.startswith("error: ")
    r = run_cli(config, "subscribers", "add", "x@example.org", "--list", "nope")
    assert r.exit_code == 1
    assert "no list named 'nope'" in r.output
    r = run_cli(config, "subscribers", "show", "nobody@example.org")
    assert r.exit_code == 1
    assert "not in the store" in r.output


def test_import_and_export(config: Path, tmp_path: Path) -> None:
    run_cli(config, "init")
    source = tmp_path / "people.csv"
    source.write_bytes(
        b"email;name;town\nann@example.org;Ann;Kyiv\nbroken;B;C\nREN\xc9@example.org;Ren\xe9;X\n"
    )
    r = run_cli(config, "subscribers", "import", str(source), "--list", "business")
    assert r.exit_code == 0, r.output
    assert "note: the file uses semicolons" in r.output
    assert "3 rows: 2 new subscribers, 2 joined business" in r.output
    assert "1 rejected" in r.output
    assert "were read as Windows-1252" in r.output
    rejects = tmp_path / "people.rejects.csv"
    assert rejects.read_text(encoding="utf-8").splitlines()[1].startswith("3,invalid address")

    r = run_cli(config, "subscribers", "import", str(source), "--list", "business")
    assert "0 new subscribers, 0 joined business, 2 already on it" in r.output

    out = tmp_path / "out.csv"
    r = run_cli(config, "subscribers", "export", "--list", "business", "-o", str(out))
    assert r.exit_code == 0, r.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "email,name,status,subscribed_at,confirmed_at,town"
    assert lines[1].startswith("ann@example.org,Ann,confirmed,")
    assert lines[2].startswith("RENÉ@example.org,René,confirmed,")

    r = run_cli(config, "subscribers", "import", str(tmp_path / "missing.csv"))
    assert r.exit_code == 1
    assert "missing.csv: cannot open" in r.output
