"""``newsletter serve`` as a real process: binds loopback, serves the pages, refuses no schema."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import TEST_SECRET, free_port, write_config


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": TEST_SECRET}
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "--config", str(config), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_before_init_is_a_clear_error(project: Path, tmp_path: Path) -> None:
    config = write_config(project, database_url=f"sqlite:///{tmp_path / 's.db'}")
    result = run_cli(config, "serve", "--port", str(free_port()))
    assert result.returncode == 1
    assert "newsletter init" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_binds_loopback_and_serves(project: Path, tmp_path: Path) -> None:
    config = write_config(project, database_url=f"sqlite:///{tmp_path / 's.db'}")
    assert run_cli(config, "init").returncode == 0
    port = free_port()
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": TEST_SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--config", str(config), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/subscribe") as r:
                    body = r.read().decode()
                    status = r.status
                break
            except OSError:
                assert proc.poll() is None, "serve exited early"
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        assert status == 200
        assert "The Test Weekly" in body
        # bound to the loopback address only: another local address gets no answer
        with socket.socket() as s:
            s.settimeout(1)
            assert s.connect_ex(("127.0.0.2", port)) != 0
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=10)
    assert f"Uvicorn running on http://127.0.0.1:{port}" in output
