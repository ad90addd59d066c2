"""The deployment recipe: ``/healthz`` over real HTTP, the systemd units under
``systemd-analyze verify``, the nginx site under ``nginx -t`` and in front of the real app.

``systemd-analyze`` and ``nginx`` are Debian's; without them those tests skip with the reason,
unless ``NEWSLETTER_REQUIRE_SYSTEMD=1`` / ``NEWSLETTER_REQUIRE_NGINX=1`` (set by ``.ci/run``)
make that a failure.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trustme
from click.testing import CliRunner
from sqlalchemy import Engine

from newsletter.cli import main
from newsletter.config import Settings
from newsletter.store.database import make_engine
from newsletter.web.app import create_app
from tests.conftest import REPO, free_port
from tests.serving import serving


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def test_healthz_answers_ok_when_the_database_does(web_settings: Settings, engine: Engine) -> None:
    with serving(create_app(web_settings, engine=engine)) as port:
        status, headers, body = get(f"http://127.0.0.1:{port}/healthz")
    assert status == 200
    assert json.loads(body) == {"status": "ok"}
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"


def test_healthz_is_503_without_a_database_and_says_nothing_more(
    web_settings: Settings, tmp_path: str
) -> None:
    # a SQLite file in a folder that does not exist: every connection fails
    url = f"sqlite:///{tmp_path}/missing/dir/secret-name.db"
    broken = make_engine(url)
    try:
        with serving(create_app(web_settings, engine=broken)) as port:
            status, _, body = get(f"http://127.0.0.1:{port}/healthz")
    finally:
        broken.dispose()
    assert status == 503
    assert json.loads(body) == {"status": "unavailable"}
    assert b"secret-name" not in body
    assert b"sqlite" not in body.lower()


# --- the systemd units ---------------------------------------------------------------------

DEPLOY = REPO / "deploy"
UNITS = sorted(DEPLOY.glob("*.service"))
REQUIRE_SYSTEMD = os.environ.get("NEWSLETTER_REQUIRE_SYSTEMD") == "1"
REQUIRE_NGINX = os.environ.get("NEWSLETTER_REQUIRE_NGINX") == "1"
# where the units expect the release: a checkout in /opt/newsletter with its venv in .venv
INSTALLED = {
    "/opt/newsletter/.venv/bin/newsletter": str(Path(sys.executable).with_name("newsletter")),
    "/opt/newsletter/.venv/bin/python": sys.executable,
    "/opt/newsletter/.venv/bin/newsletter-scheduler": str(
        Path(sys.executable).with_name("newsletter-scheduler")
    ),
}


def tool(name: str, *, require: bool, variable: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None
    )
    if found:
        return found
    if require:
        pytest.fail(f"{variable}=1 but {name} is not installed")
    pytest.skip(f"{name} is not installed (Debian: apt-get install {name.split('-')[0]})")


def unit_settings(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values]}}: keys may repeat, comments are dropped."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def installed_copy(unit: Path, directory: Path) -> Path:
    """The unit with its ExecStart pointing at this test run's venv and checkout."""
    text = unit.read_text(encoding="utf-8")
    replaced = 0
    for where, here in INSTALLED.items():
        replaced += text.count(where)
        text = text.replace(where, here)
    assert replaced, f"{unit.name} runs nothing from /opt/newsletter"
    copy = directory / unit.name
    copy.write_text(text, encoding="utf-8")
    return copy


def test_a_unit_for_each_long_running_command() -> None:
    assert [u.name for u in UNITS] == [
        "newsletter-inbound.service",
        "newsletter-scheduler.service",
        "newsletter-serve.service",
        "newsletter-worker@.service",
    ]


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_units_are_hardened(unit: Path) -> None:
    service = unit_settings(unit)["Service"]
    expected = {
        "User": ["newsletter"],
        "Group": ["newsletter"],
        "ProtectSystem": ["strict"],
        "ReadWritePaths": ["/srv/newsletter/var"],
        "NoNewPrivileges": ["yes"],
        "PrivateTmp": ["yes"],
        "ProtectHome": ["yes"],
        "EnvironmentFile": ["/etc/newsletter/env"],
        "Restart": ["on-failure"],
        "CapabilityBoundingSet": [""],
    }
    for key, value in expected.items():
        assert service.get(key) == value, (unit.name, key, service.get(key))
    # every service stops cleanly on SIGTERM (send and worker give their claims back)
    assert service["KillSignal"][0] == "SIGTERM"
    assert int(service["TimeoutStopSec"][0]) >= 30
    # secrets only from the environment file: nothing secret inline
    assert not [v for v in service.get("Environment", []) if "SECRET" in v or "PASSWORD" in v]
    assert unit_settings(unit)["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_commands_are_real(unit: Path) -> None:
    # each ExecStart, with --help added, parses: no option that the command does not know
    (command,) = unit_settings(unit)["Service"]["ExecStart"]
    argv = shlex.split(command)
    if argv[0].endswith("/newsletter"):
        result = CliRunner().invoke(main, [*argv[1:], "--help"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    else:
        # the installed package's scheduler (scheduler.py of a checkout is the same program)
        assert argv[0] == "/opt/newsletter/.venv/bin/newsletter-scheduler"
        run = subprocess.run(
            [INSTALLED[argv[0]], *argv[1:], "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 0, run.stderr


def verify(paths: list[Path], directory: Path) -> tuple[int, list[str]]:
    analyze = tool(
        "systemd-analyze", require=REQUIRE_SYSTEMD, variable="NEWSLETTER_REQUIRE_SYSTEMD"
    )
    run = subprocess.run(
        [analyze, "verify", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=directory,
    )
    # only what it says about our units (a container may have its own complaints)
    ours = [
        line for line in run.stderr.splitlines() if str(directory) in line or "newsletter" in line
    ]
    return run.returncode, ours


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    copies = [installed_copy(unit, tmp_path) for unit in UNITS]
    returncode, complaints = verify(copies, tmp_path)
    assert returncode == 0
    assert complaints == []


def test_systemd_analyze_verify_catches_a_mistake(tmp_path: Path) -> None:
    # the judge judges: a misspelt value and an unknown key in a copy are reported
    copy = installed_copy(DEPLOY / "newsletter-serve.service", tmp_path)
    text = copy.read_text().replace("ProtectSystem=strict", "ProtectSystem=strcit")
    copy.write_text(text.replace("PrivateTmp=yes", "PrivateTmp=yes\nProtectEverything=yes"))
    _, complaints = verify([copy], tmp_path)
    assert any("protect system" in line.lower() for line in complaints), complaints
    assert any("ProtectEverything" in line for line in complaints), complaints


# --- the nginx site ------------------------------------------------------------------------


@dataclasses.dataclass
class NginxPrefix:
    root: Path
    conf: Path
    https_port: int
    http_port: int
    ca: trustme.CA


def nginx_prefix(directory: Path, upstream_port: int = 8000) -> NginxPrefix:
    """The site in a throwaway prefix: a trustme certificate, loopback ports, temp paths."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tmp").mkdir()
    ca = trustme.CA(organization_name="Newsletter nginx test CA")
    leaf = ca.issue_cert("news.example.org", "localhost")
    leaf.private_key_pem.write_to_path(str(directory / "privkey.pem"))
    (directory / "fullchain.pem").write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    https_port, http_port = free_port(), free_port()
    site = (DEPLOY / "nginx-newsletter.conf").read_text(encoding="utf-8")
    for old, new in {
        "/etc/letsencrypt/live/news.example.org/": f"{directory}/",
        "/var/www/letsencrypt": f"{directory}/acme",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "listen [::]:443 ssl http2;": "",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen [::]:80;": "",
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{upstream_port};",
    }.items():
        assert old in site, f"the site no longer has {old!r}"
        site = site.replace(old, new)
    (directory / "site.conf").write_text(site, encoding="utf-8")
    temp = "\n".join(
        f"    {kind}_temp_path {directory}/tmp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = directory / "nginx.conf"
    conf.write_text(
        f"pid {directory}/nginx.pid;\nerror_log {directory}/error.log;\nevents {{}}\n"
        f"http {{\n    access_log {directory}/access.log;\n{temp}\n"
        f"    include {directory}/site.conf;\n}}\n",
        encoding="utf-8",
    )
    return NginxPrefix(directory, conf, https_port, http_port, ca)


def nginx_command(prefix: NginxPrefix, *args: str) -> list[str]:
    nginx = tool("nginx", require=REQUIRE_NGINX, variable="NEWSLETTER_REQUIRE_NGINX")
    root = str(prefix.root)
    return [nginx, "-p", root, "-c", str(prefix.conf), "-e", f"{root}/error.log", *args]


def test_nginx_site_passes_nginx_t(tmp_path: Path) -> None:
    prefix = nginx_prefix(tmp_path / "nginx")
    run = subprocess.run(
        nginx_command(prefix, "-t"), capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    assert "test is successful" in run.stderr


def test_nginx_t_catches_a_mistake(tmp_path: Path) -> None:
    prefix = nginx_prefix(tmp_path / "nginx")
    site = prefix.root / "site.conf"
    site.write_text(site.read_text().replace("client_max_body_size 3m;", "client_max_body 3m;"))
    run = subprocess.run(
        nginx_command(prefix, "-t"), capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode != 0
    assert 'unknown directive "client_max_body"' in run.stderr


def test_nginx_in_front_of_the_app(tmp_path: Path, web_settings: Settings, engine: Engine) -> None:
    """TLS at nginx, the forwarded headers as the app sees them, the redirect, the body cap."""
    seen: list[dict[str, Any]] = []
    app = create_app(web_settings, engine=engine)

    async def recording(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(scope)
        await app(scope, receive, send)

    with serving(recording) as app_port:
        prefix = nginx_prefix(tmp_path / "nginx", upstream_port=app_port)
        proc = subprocess.Popen(
            nginx_command(prefix, "-g", "daemon off; master_process off;"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for_port(prefix.https_port, proc)
            context = ssl.create_default_context()
            prefix.ca.configure_trust(context)
            base = f"https://localhost:{prefix.https_port}"

            request = urllib.request.Request(
                f"{base}/healthz", headers={"X-Forwarded-For": "203.0.113.9"}
            )
            with urllib.request.urlopen(request, context=context, timeout=10) as response:
                assert response.status == 200
                assert json.loads(response.read()) == {"status": "ok"}
            scope = seen[-1]
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            # the app saw https, the client nginx saw, and not what the client claimed
            assert scope["scheme"] == "https"
            assert headers["x-forwarded-for"] == "127.0.0.1"
            assert scope["client"][0] == "127.0.0.1"
            assert headers["x-forwarded-proto"] == "https"
            assert headers["host"] == "localhost"

            # plain HTTP answers with a redirect to https, nothing else
            plain = http.client.HTTPConnection("127.0.0.1", prefix.http_port, timeout=10)
            plain.request("GET", "/subscribe?list=weekly", headers={"Host": "news.example.org"})
            redirect = plain.getresponse()
            assert redirect.status == 301
            assert (
                redirect.getheader("Location") == "https://news.example.org/subscribe?list=weekly"
            )
            plain.close()

            # a body above the cap never reaches the app
            before = len(seen)
            big = urllib.request.Request(
                f"{base}/subscribe", data=b"x" * (4 * 1024 * 1024), method="POST"
            )
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(big, context=context, timeout=10)
            refused.value.close()
            assert refused.value.code == 413
            assert len(seen) == before
        finally:
            proc.terminate()
            _, stderr = proc.communicate(timeout=10)
    assert b"[emerg]" not in stderr, stderr


def wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "nginx exited"
        assert time.monotonic() < deadline, "nginx did not start"
        time.sleep(0.05)
