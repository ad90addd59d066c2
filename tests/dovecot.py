"""A real IMAP server on loopback for tests: Debian's Dovecot with its own config directory.

``dovecot -c DIR/dovecot.conf`` with IMAPS only on a free port of 127.0.0.1, a certificate from
the test CA, one user in a passwd-file and a Maildir the test fills. Its mail processes run as
``nobody``, its login processes as ``dovenull``. Without Dovecot the tests that need it skip,
unless ``NEWSLETTER_REQUIRE_DOVECOT=1`` (set by ``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from newsletter.sink import free_port
from tests.tls import Pki

DOVECOT = "/usr/sbin/dovecot"
REQUIRE = os.environ.get("NEWSLETTER_REQUIRE_DOVECOT") == "1"
USER = "reports"

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u
mail_uid = nobody
mail_gid = nogroup
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""


def require_dovecot() -> None:
    if Path(DOVECOT).exists():
        return
    if REQUIRE:
        pytest.fail(
            f"NEWSLETTER_REQUIRE_DOVECOT=1 but {DOVECOT} is missing (apt-get install dovecot-imapd)"
        )
    pytest.skip(f"needs Debian's dovecot-imapd ({DOVECOT})")


class Dovecot:
    """One Dovecot instance under ``root`` serving IMAPS for :data:`USER` with ``password``."""

    def __init__(self, root: Path, pki: Pki, password: str) -> None:
        self.root = root
        self.pki = pki
        self.password = password
        self.port = free_port()
        self.conf = root / "dovecot.conf"

    @property
    def maildir(self) -> Path:
        return self.root / "mail" / USER

    def start(self) -> None:
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for sub in ("new", "cur", "tmp"):
            (self.maildir / sub).mkdir(parents=True, exist_ok=True)
        for path in [
            self.root / "mail",
            self.maildir,
            *(self.maildir / s for s in ("new", "cur", "tmp")),
        ]:
            shutil.chown(path, "nobody", "nogroup")
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{self.password}\n", encoding="ascii")
        self.conf.write_text(
            CONFIG.format(
                root=self.root, cert=self.pki.server_cert, key=self.pki.server_key, port=self.port
            ),
            encoding="ascii",
        )
        # the daemon keeps what it inherits open: no pipes, or run() would wait for it
        result = subprocess.run(
            [DOVECOT, "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"dovecot failed to start: {self.log()}")
        self._wait_listening()

    def _wait_listening(self, timeout: float = 20.0) -> None:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with (
                    socket.create_connection(("127.0.0.1", self.port), timeout=1) as raw,
                    context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
                ):
                    if sock.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"dovecot did not answer on port {self.port}: {self.log()}")

    def deliver(self, name: str, data: bytes) -> None:
        """Put a message in the user's INBOX, as the local delivery agent would."""
        path = self.maildir / "new" / name
        path.write_bytes(data)
        shutil.chown(path, "nobody", "nogroup")

    def stop(self) -> None:
        subprocess.run(
            [DOVECOT, "-c", str(self.conf), "stop"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        pid_file = self.root / "run" / "master.pid"
        deadline = time.monotonic() + 10
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""
