"""``newsletter new``: the folder it writes, what it refuses, and a publication that works."""

from __future__ import annotations

import email
import email.policy
import tempfile
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from newsletter.cli import main
from newsletter.config import load_settings
from newsletter.scaffold import SAMPLE_ISSUE, config_text, create_publication
from newsletter.web.preview import create_preview_app
from tests.conftest import REPO, TEST_SECRET
from tests.smtpd import SMTPServer

NAME = "The Valley Weekly"
SLUG = "flood-barrier-vote"


def newsletter(*args: str, env: dict[str, str | None] | None = None) -> Result:
    """``newsletter ARGS`` in the current folder, with no config named and no key set."""
    base: dict[str, str | None] = {"NEWSLETTER_CONFIG": None, "NEWSLETTER_SECRET_KEY": None}
    return CliRunner().invoke(main, list(args), env={**base, **(env or {})})


@pytest.fixture
def pub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``newsletter new pub --name ...`` run in a temporary folder, then ``cd pub``."""
    monkeypatch.chdir(tmp_path)
    result = newsletter("new", "pub", "--name", NAME)
    assert result.exit_code == 0, result.output
    monkeypatch.chdir(tmp_path / "pub")
    return tmp_path / "pub"


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_new_writes_the_publication(pub: Path) -> None:
    assert files_under(pub) == {
        "newsletter.toml",
        ".gitignore",
        "README.md",
        "templates/README.md",
        f"issues/{SAMPLE_ISSUE}",
        "issues/images/hero-river.png",
        "issues/images/footbridge.png",
        "issues/images/keeper.png",
        "issues/images/logo.png",
    }
    # the sample and its images are the package's, byte for byte
    assert (pub / "issues" / SAMPLE_ISSUE).read_bytes() == (
        REPO / "issues" / SAMPLE_ISSUE
    ).read_bytes()
    for image in (pub / "issues" / "images").iterdir():
        assert image.read_bytes() == (REPO / "issues" / "images" / image.name).read_bytes()
    settings = load_settings(
        pub / "newsletter.toml", environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET}
    )
    assert settings.publication.name == NAME
    assert settings.lists["weekly"].name == NAME
    assert settings.templates_dir == pub / "templates"
    assert settings.issues_dir == pub / "issues"
    # a commented file, not a bare dump
    config = (pub / "newsletter.toml").read_text(encoding="utf-8")
    assert sum(line.startswith("#") for line in config.splitlines()) > 20
    ignored = (pub / ".gitignore").read_text(encoding="utf-8").split()
    assert {"newsletter.db", "var/"} <= set(ignored)
    assert "templates/email/email.css.j2" in (pub / "templates" / "README.md").read_text()
    assert NAME in (pub / "README.md").read_text(encoding="utf-8")


def test_the_local_key_and_the_database_are_git_ignored(pub: Path) -> None:
    result = newsletter("init")
    assert result.exit_code == 0, result.output
    assert (pub / "var" / "secret.key").exists()
    assert (pub / "newsletter.db").exists()
    ignored = (pub / ".gitignore").read_text(encoding="utf-8").split()
    assert "var/" in ignored  # var/secret.key, var/maildir, var/images
    assert "newsletter.db" in ignored


def test_demo_check_build_in_the_new_folder(pub: Path) -> None:
    result = newsletter("demo")
    assert result.exit_code == 0, result.output
    assert "5 message(s) delivered to the sink" in result.output
    delivered = list((pub / "var" / "maildir" / "new").iterdir())
    assert len(delivered) == 5
    message = email.message_from_bytes(delivered[0].read_bytes(), policy=email.policy.default)
    assert NAME in str(message["From"])

    result = newsletter("check")
    assert result.exit_code == 0, result.output
    assert "1 file checked: 0 error(s), 0 warning(s)" in result.output

    result = newsletter("build")
    assert result.exit_code == 0, result.output
    html = (pub / "build" / f"{SLUG}.html").read_text(encoding="utf-8")
    assert NAME in html
    assert (pub / "build" / f"{SLUG}.txt").exists()
    assert (pub / "build" / f"{SLUG}.eml").exists()


def test_send_in_the_new_folder(pub: Path, smtpd: SMTPServer) -> None:
    env: dict[str, str | None] = {"NEWSLETTER_SMTP_URL": smtpd.url}
    assert newsletter("init", env=env).exit_code == 0
    result = newsletter("subscribers", "add", "reader@example.org", env=env)
    assert result.exit_code == 0, result.output
    result = newsletter("send", SAMPLE_ISSUE.removesuffix(".md"), "--no-progress", env=env)
    assert result.exit_code == 0, result.output
    assert smtpd.handler.by_recipient() == {"reader@example.org": 1}


def test_preview_in_the_new_folder(pub: Path) -> None:
    settings = load_settings(pub / "newsletter.toml")
    app = create_preview_app(settings, watch_files=False)
    with TestClient(app, base_url="http://127.0.0.1:8001") as client:
        index = client.get("/")
        assert index.status_code == 200
        assert f'data-issue="{SAMPLE_ISSUE.removesuffix(".md")}"' in index.text
        page = client.get(f"/issues/{SAMPLE_ISSUE.removesuffix('.md')}")
        assert page.status_code == 200, page.text
        assert client.get("/images/hero-river.png").status_code == 200


def test_an_override_in_templates_changes_the_build(pub: Path) -> None:
    theme = REPO / "templates" / "email" / "issue.txt.j2"
    override = pub / "templates" / "email" / "issue.txt.j2"
    override.parent.mkdir()
    override.write_text("Printed on recycled pixels.\n" + theme.read_text(encoding="utf-8"))
    result = newsletter("build")
    assert result.exit_code == 0, result.output
    text = (pub / "build" / f"{SLUG}.txt").read_text(encoding="utf-8")
    assert text.startswith("Printed on recycled pixels.")
    # only that file: the HTML still comes from the theme
    assert "recycled pixels" not in (pub / "build" / f"{SLUG}.html").read_text(encoding="utf-8")


def test_refuses_a_folder_that_is_not_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pub").mkdir()
    (tmp_path / "pub" / "notes.txt").write_text("mine")
    result = newsletter("new", "pub")
    assert result.exit_code == 1
    assert "pub: is not empty" in result.output
    assert "Traceback" not in result.output
    assert files_under(tmp_path / "pub") == {"notes.txt"}


def test_refuses_a_file_and_a_name_on_two_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").write_text("")
    result = newsletter("new", "taken")
    assert result.exit_code == 1
    assert "not a folder" in result.output
    result = newsletter("new", "fresh", "--name", "Two\nLines")
    assert result.exit_code == 1
    assert "--name" in result.output
    assert not (tmp_path / "fresh").exists()


def test_an_empty_folder_is_taken(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    written = create_publication(tmp_path / "empty", name=NAME)
    assert tmp_path / "empty" / "newsletter.toml" in written


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1).filter(lambda s: s.strip() and s.isprintable()))
def test_any_one_line_name_comes_back_from_the_config(name: str) -> None:
    # quotes, backslashes, commas and non-ASCII go through TOML and the From header intact
    text = config_text(name)
    config = tomllib.loads(text)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "newsletter.toml"
        path.write_text(text, encoding="utf-8")
        loaded = load_settings(path, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})
    assert loaded.publication.name == name.strip()
    assert config["publication"]["name"] == name.strip()
    sender = email.message_from_string(
        f"From: {config['publication']['sender']}\n\n", policy=email.policy.default
    )["From"]
    assert sender.addresses[0].display_name == name.strip()
    assert sender.addresses[0].addr_spec == "newsletter@example.org"
