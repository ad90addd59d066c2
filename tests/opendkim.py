"""OpenDKIM's ``opendkim-testmsg`` as an outside judge of DKIM signatures, with no real DNS.

``opendkim-testmsg`` (Debian's opendkim-tools) verifies a message on stdin and looks the key up
in DNS through the system resolver; it has no option for a local key. So it runs in a private
network and mount namespace (``unshare``) where ``/etc/resolv.conf`` names 127.0.0.1 and a small
DNS server (``tests/opendkim_dns.py``, dnspython) answers TXT queries from the records a test
gives. Nothing leaves the machine and nothing outside the namespace changes.

Import with ``from tests.opendkim import opendkim``. Without the tool or namespaces the tests skip
with the reason, unless ``NEWSLETTER_REQUIRE_OPENDKIM=1`` (set by ``.ci/run``) makes that a
failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTMSG = Path(os.environ.get("NEWSLETTER_OPENDKIM_TESTMSG", "/usr/sbin/opendkim-testmsg"))
REQUIRE_OPENDKIM = os.environ.get("NEWSLETTER_REQUIRE_OPENDKIM") == "1"
SERVER = Path(__file__).with_name("opendkim_dns.py")


@dataclass(frozen=True)
class Verdict:
    """What ``opendkim-testmsg`` said: exit status 0 and no output means the signature holds."""

    returncode: int
    stderr: str
    queries: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.stderr


class OpenDkim:
    """One namespace with its DNS server, kept for many verifications."""

    def __init__(self, records: Mapping[str, str]) -> None:
        unshare = shutil.which("unshare")
        if unshare is None:
            raise OSError("unshare (util-linux) is not installed")
        # root gets the namespaces directly; others through a user namespace where allowed
        prefix = [unshare, "--net", "--mount"]
        if os.geteuid() != 0:
            prefix.insert(1, "--map-root-user")
        self.process = subprocess.Popen(
            [*prefix, sys.executable, str(SERVER), str(TESTMSG)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.records = dict(records)
        try:
            ready = self._call({"records": self.records})
        except OSError:
            self.close()
            raise
        if ready.get("error"):
            self.close()
            raise OSError(ready["error"])

    def add_records(self, records: Mapping[str, str]) -> None:
        self.records.update(records)
        self._call({"records": self.records})

    def verify(self, message: bytes) -> Verdict:
        """Run ``opendkim-testmsg`` on ``message`` (one signature passing is enough for it:
        strip the others to judge one)."""
        answer = self._call({"message": message.hex()})
        return Verdict(answer["returncode"], answer["stderr"], tuple(answer["queries"]))

    def close(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _call(self, request: dict[str, object]) -> dict[str, object] | dict[str, str]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        try:
            self.process.stdin.write(json.dumps(request).encode("ascii") + b"\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=10)
            assert self.process.stderr is not None
            error = self.process.stderr.read().decode(errors="replace").strip()
            raise OSError(f"the OpenDKIM namespace did not start: {error or 'no output'}")
        answer: dict[str, object] = json.loads(line)
        return answer


def require_opendkim() -> None:
    if TESTMSG.exists():
        return
    if REQUIRE_OPENDKIM:
        pytest.fail(f"NEWSLETTER_REQUIRE_OPENDKIM=1 but {TESTMSG} does not exist")
    pytest.skip(f"OpenDKIM tests need {TESTMSG} (apt-get install opendkim-tools)")


@pytest.fixture(scope="module")
def opendkim() -> Iterator[OpenDkim]:
    """An ``opendkim-testmsg`` judge; add the TXT records with ``add_records``."""
    require_opendkim()
    try:
        judge = OpenDkim({})
    except OSError as exc:
        if REQUIRE_OPENDKIM:
            pytest.fail(f"NEWSLETTER_REQUIRE_OPENDKIM=1 but OpenDKIM cannot run here: {exc}")
        pytest.skip(f"OpenDKIM tests need network and mount namespaces (unshare): {exc}")
    try:
        yield judge
    finally:
        judge.close()
