"""Throwaway TLS for tests: a private CA and a loopback server certificate, and an SMTP login.

The keys come from the ``openssl`` command line (the ``cryptography`` package is not a
dependency); :func:`make_pki` runs once per test session and takes a fraction of a second.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.smtpd import encrypted

# EC keys: generating them is instant, unlike RSA
_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
_SERVER_EXTENSIONS = """\
subjectAltName = {names}
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path

    def server_context(self) -> ssl.SSLContext:
        """What the test relay presents, for STARTTLS or implicit TLS."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.server_cert, self.server_key)
        return context


def make_pki(directory: Path, *, names: str = "IP:127.0.0.1, DNS:localhost") -> Pki:
    """A CA and a certificate it signed for ``names`` (subjectAltName), valid for two days."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the TLS tests need the openssl command line tool")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    extensions = directory / "server.ext"
    extensions.write_text(_SERVER_EXTENSIONS.format(names=names), encoding="ascii")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=directory)

    run(
        "req", "-x509", *_KEY, "-keyout", str(ca_key), "-out", str(ca_cert), "-days", "2",
        "-subj", "/CN=Newsletter Test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    run("req", *_KEY, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    run(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-set_serial", "0x5eed", "-days", "2", "-sha256", "-extfile", str(extensions),
        "-out", str(cert),
    )  # fmt: skip
    return Pki(ca_cert=ca_cert, server_cert=cert, server_key=key)


@dataclass
class Login:
    """An aiosmtpd authenticator that accepts one user and password and records every try."""

    username: str
    password: str
    # (mechanism, user, session encrypted?, accepted?) for each AUTH the server saw
    attempts: list[tuple[str, str, bool, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        user = auth_data.login.decode()
        ok = user == self.username and auth_data.password.decode() == self.password
        with self.lock:
            self.attempts.append((mechanism, user, encrypted(server, session), ok))
        # auth_data becomes session.auth_data, which the recording handler reports as the login
        # handled=False: aiosmtpd sends the 235 or 535 reply itself
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)
