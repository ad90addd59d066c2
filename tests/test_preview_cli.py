"""``newsletter preview`` as a real process: serves on loopback, stops promptly on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from click.testing import CliRunner

from newsletter.cli import main
from tests.conftest import TEST_SECRET, free_port, write_config


def test_help_says_it_binds_loopback_by_default() -> None:
    result = CliRunner().invoke(main, ["preview", "--help"])
    assert result.exit_code == 0
    assert "127.0.0.1" in result.output
    assert "--port" in result.output


def test_bad_config_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    config = tmp_path / "newsletter.toml"
    config.write_text("[publication\n")
    result = CliRunner().invoke(main, ["--config", str(config), "preview"])
    assert result.exit_code == 1
    assert "not valid TOML" in result.output
    assert "Traceback" not in result.output


def test_serves_the_preview_and_stops_on_ctrl_c_with_a_reload_stream_open(
    project: Path, tmp_path: Path
) -> None:
    config = write_config(project, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    port = free_port()
    command = [sys.executable, "-m", "newsletter", "--config", str(config)]
    proc = subprocess.Popen(
        [*command, "preview", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={"NEWSLETTER_SECRET_KEY": TEST_SECRET, "PATH": "/usr/bin:/bin"},
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                index = httpx.get(url + "/", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "the preview did not start"
                time.sleep(0.1)
        assert index.status_code == 200
        assert 'data-issue="2026-11-20-flood-barrier-vote"' in index.text

        with httpx.Client(timeout=5) as client, client.stream("GET", url + "/__reload") as stream:
            # the stream is open (first bytes arrived); Ctrl-C must not wait for it to end
            next(stream.iter_raw())
            started = time.monotonic()
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=10)
            stopped_after = time.monotonic() - started
        assert proc.returncode == 0
        assert stopped_after < 5
        output = proc.stdout.read() if proc.stdout else ""
        assert f"at http://127.0.0.1:{port}/" in output
        assert "Traceback" not in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
