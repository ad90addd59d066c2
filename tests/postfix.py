"""A real Postfix on loopback for tests: its own config, queue and data directories and ports.

Debian's ``postfix`` package, started as ``postfix -c DIR start`` with a minimal ``main.cf`` and
``master.cf``: one smtpd on a free port of 127.0.0.1, no local delivery, no DNS, no chroot,
and a transport map that sends each destination domain to a test server on loopback. Its
daemons drop to the unprivileged ``postfix`` user as on a real host. Without Postfix the tests
that need it skip, unless ``NEWSLETTER_REQUIRE_POSTFIX=1`` (set by ``.ci/run``) makes that a
failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from newsletter.sink import free_port

POSTFIX = "/usr/sbin/postfix"
REQUIRE = os.environ.get("NEWSLETTER_REQUIRE_POSTFIX") == "1"

MASTER_CF = """\
{port}    inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mail.test.example
mydomain = test.example
myorigin = test.example
mydestination =
local_transport = error:no local delivery in tests
alias_maps =
alias_database =
local_recipient_maps =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relay_domains =
transport_maps = texthash:{config}/transport
disable_dns_lookups = yes
smtp_host_lookup = native
smtp_dns_support_level = disabled
# tried once: a 4xx becomes a failure DSN at once instead of days of retries
maximal_queue_lifetime = 0
bounce_queue_lifetime = 0
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
smtp_tls_security_level = none
smtpd_tls_security_level = none
maillog_file = {data}/maillog
maillog_file_prefixes = {data}
biff = no
"""


def require_postfix() -> None:
    if Path(POSTFIX).exists():
        return
    if REQUIRE:
        pytest.fail(
            f"NEWSLETTER_REQUIRE_POSTFIX=1 but {POSTFIX} is missing (apt-get install postfix)"
        )
    pytest.skip(f"needs Debian's postfix ({POSTFIX})")


class Postfix:
    """One Postfix instance under ``root``; ``routes`` map a domain to a loopback port."""

    def __init__(self, root: Path, routes: Mapping[str, int]) -> None:
        self.root = root
        self.config = root / "etc"
        self.queue = root / "spool"
        self.data = root / "data"
        self.port = free_port()
        self.routes = dict(routes)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [POSTFIX, "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def start(self) -> None:
        for path in (self.config, self.queue, self.data):
            path.mkdir(parents=True, exist_ok=True)
        # the daemons run as the postfix user; they own the queue and data directories
        shutil.chown(self.queue, "root", "root")
        shutil.chown(self.data, "postfix", "postfix")
        (self.config / "main.cf").write_text(
            MAIN_CF.format(queue=self.queue, data=self.data, config=self.config), encoding="ascii"
        )
        (self.config / "master.cf").write_text(
            MASTER_CF.format(port=f"127.0.0.1:{self.port}"), encoding="ascii"
        )
        transport = "".join(
            f"{domain} smtp:[127.0.0.1]:{port}\n" for domain, port in self.routes.items()
        )
        (self.config / "transport").write_text(transport, encoding="ascii")
        # the root of the test's tree must be reachable by the unprivileged daemons
        self._run("check")
        result = self._run("start", check=False)
        if result.returncode != 0:
            raise RuntimeError(f"postfix start failed: {result.stdout}{result.stderr}{self.log()}")
        self._wait_listening()

    def _wait_listening(self, timeout: float = 20.0) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"220"):
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"postfix did not answer on port {self.port}: {self.log()}")

    def stop(self) -> None:
        self._run("stop", check=False)
        # the master finishes its children first; nothing of this instance may be left behind
        deadline = time.monotonic() + 10
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.running():
            self._run("abort", check=False)

    def running(self) -> bool:
        return self._run("status", check=False).returncode == 0

    def flush(self) -> None:
        """Ask the queue manager to try every deferred message now."""
        self._run("flush", check=False)

    def log(self) -> str:
        path = self.data / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""


def service_root(prefix: str) -> Path:
    """A fresh directory the services' unprivileged users can reach.

    Not under pytest's ``tmp_path``: pytest keeps ``/tmp/pytest-of-<user>`` at mode 0700 (and
    resets it whenever a session starts), so a daemon that dropped to ``postfix`` or
    ``nobody`` could not open its own files there.
    """
    import tempfile

    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o711)
    return root
