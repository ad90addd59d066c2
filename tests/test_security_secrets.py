"""Secrets never reach what the CLI prints: the signing key, the SMTP password, a DB password."""

from __future__ import annotations

import base64
import logging
import multiprocessing
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from newsletter.cli import main
from newsletter.config import load_settings
from newsletter.errors import ConfigError
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


# --- the signing key: never short, never half-written (issue 15) ---------------------------

MINIMAL_CONFIG = """
[publication]
name = "Weekly"
sender = "Weekly <w@example.org>"
postal_address = "1 Street"
base_url = "https://news.example.org"
"""


def _config(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "newsletter.toml"
    path.write_text(MINIMAL_CONFIG, encoding="utf-8")
    return path


@pytest.mark.parametrize("content", [b"", b"\n", b"short-key", b"x" * 31 + b"\n"])
def test_a_short_key_file_is_refused_naming_the_file(tmp_path: Path, content: bytes) -> None:
    config = _config(tmp_path)
    key_file = tmp_path / "var" / "secret.key"
    key_file.parent.mkdir()
    key_file.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ={})
    message = str(info.value)
    assert str(key_file) in message
    assert "at least 32" in message
    assert "NEWSLETTER_SECRET_KEY" in message  # says the way out


@pytest.mark.parametrize("value", ["k" * 16, "k" * 31, "ключ" * 3])
def test_a_short_environment_key_is_refused_naming_the_variable(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(_config(tmp_path), environ={"NEWSLETTER_SECRET_KEY": value})
    assert info.value.key == "NEWSLETTER_SECRET_KEY"
    assert "at least 32" in str(info.value)
    assert value not in str(info.value)  # the key itself is never printed


def test_a_32_byte_key_is_accepted(tmp_path: Path) -> None:
    # 11 Cyrillic letters are 22 bytes: the count is in bytes, what the HMAC gets
    assert (
        len(
            load_settings(_config(tmp_path), environ={"NEWSLETTER_SECRET_KEY": "k" * 32}).secret_key
        )
        == 32
    )
    with pytest.raises(ConfigError):
        load_settings(_config(tmp_path), environ={"NEWSLETTER_SECRET_KEY": "ж" * 11})
    assert load_settings(_config(tmp_path), environ={"NEWSLETTER_SECRET_KEY": "ж" * 16}).secret_key


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_var_is_private_and_the_key_strong_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    config = _config(tmp_path)
    old = os.umask(umask)
    try:
        key = load_settings(config, environ={}).secret_key
    finally:
        os.umask(old)
    var = tmp_path / "var"
    assert stat.S_IMODE(var.stat().st_mode) == 0o700
    assert stat.S_IMODE((var / "secret.key").stat().st_mode) == 0o600
    assert len(key) >= 32
    # URL-safe base64 of 32 random bytes: at least 256 bits went in
    assert len(base64.urlsafe_b64decode(key + b"=" * (-len(key) % 4))) >= 32
    # no temporary file left beside it
    assert sorted(p.name for p in var.iterdir()) == ["secret.key"]


def test_a_symlinked_key_file_is_refused(tmp_path: Path) -> None:
    config = _config(tmp_path)
    (tmp_path / "var").mkdir()
    # a link could point anywhere (another project's key, /dev/zero): not followed at all
    elsewhere = tmp_path / "elsewhere.key"
    elsewhere.write_text("k" * 43)
    (tmp_path / "var" / "secret.key").symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(config, environ={})


def _load_key(config: str, barrier: Any, queue: Any) -> None:
    barrier.wait()
    try:
        queue.put(load_settings(config, environ={}).secret_key)
    except Exception as exc:  # reported to the parent, which fails the test with it
        queue.put(repr(exc))


def test_processes_starting_together_all_read_the_same_whole_key(tmp_path: Path) -> None:
    # fork: the children start at once and inherit the test's imports
    context = multiprocessing.get_context("fork")
    for attempt in range(5):
        config = _config(tmp_path / f"run{attempt}")
        barrier = context.Barrier(6)
        queue = context.Queue()
        workers = [
            context.Process(target=_load_key, args=(str(config), barrier, queue)) for _ in range(6)
        ]
        for worker in workers:
            worker.start()
        keys = [queue.get(timeout=30) for _ in workers]
        for worker in workers:
            worker.join(timeout=30)
            assert worker.exitcode == 0
        assert all(isinstance(key, bytes) for key in keys), keys
        assert len(set(keys)) == 1, keys
        (key,) = set(keys)
        assert len(key) >= 32
        assert (config.parent / "var" / "secret.key").read_bytes() == key
