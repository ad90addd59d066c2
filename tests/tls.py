"""Throwaway TLS for tests: a private CA and a loopback server certificate, and an SMTP login.

The certificates come from trustme (a CA and leaf certificates made in memory, written to
files because ``smtp.ca_file`` names a file); :func:`make_pki` runs once per test session.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.smtpd import encrypted


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


def make_pki(directory: Path, *, names: Sequence[str] = ("127.0.0.1", "localhost")) -> Pki:
    """A CA and a server certificate it signed for ``names`` (host names or IP addresses)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="Newsletter Test CA")
    leaf = ca.issue_cert(*names)
    ca_cert, cert, key = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca.cert_pem.write_to_path(str(ca_cert))
    leaf.private_key_pem.write_to_path(str(key))
    # the leaf first, then the CA that signed it: what a relay presents
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
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
