"""DKIM: signatures made by the sender verify with dkimpy and cover List-Unsubscribe."""

from __future__ import annotations

import base64
import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import dkim
import pytest

from newsletter.config import Settings
from newsletter.errors import ConfigError
from newsletter.message import MessageTemplate
from newsletter.signing import DkimSigner
from tests.smtpd import SMTPServer
from tests.test_message_splice import HTML, TEXT, WHEN, person, rendered_issue


@pytest.fixture(scope="module")
def keypair() -> tuple[bytes, bytes]:
    """A fresh 2048-bit RSA key made for this test run (PEM private, DER public)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to generate a test key")
    private = subprocess.run([openssl, "genrsa", "2048"], check=True, capture_output=True).stdout
    public = subprocess.run(
        [openssl, "rsa", "-pubout", "-outform", "DER"],
        input=private,
        check=True,
        capture_output=True,
    ).stdout
    return private, public


def dns_for(public: bytes) -> object:
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"news._domainkey.test.example."
        return record

    return lookup


def test_signature_verifies_and_covers_list_unsubscribe(
    settings: Settings, keypair: tuple[bytes, bytes]
) -> None:
    private, public = keypair
    signer = DkimSigner(private_key=private, selector="news", domain="test.example")
    template = MessageTemplate(rendered_issue(HTML, TEXT), settings, settings.mailing_list(None))
    signed = signer.sign(template.render(person("ann@example.org"), date=WHEN))
    assert dkim.verify(signed, dnsfunc=dns_for(public))
    header = signed.split(b"\r\n\r\n", 1)[0].decode()
    signed_list = re.search(r"h=([^;]+);", header.replace("\r\n", "").replace(" ", ""))
    assert signed_list is not None
    names = signed_list.group(1).lower().split(":")
    assert "list-unsubscribe" in names
    assert "list-unsubscribe-post" in names

    # tampering with the one-click header breaks the signature
    tampered = signed.replace(b"List-Unsubscribe=One-Click", b"List-Unsubscribe=One-Klick")
    assert not dkim.verify(tampered, dnsfunc=dns_for(public))


def test_unreadable_key_is_a_config_error(settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from newsletter.config import Dkim

    with pytest.raises(ConfigError, match=r"dkim\.key_path"):
        DkimSigner.from_config(Dkim(tmp_path / "missing.pem", "news", "test.example"))
    assert DkimSigner.from_config(Dkim()) is None


def test_send_signs_every_message_when_dkim_is_configured(
    settings: Settings,
    keypair: tuple[bytes, bytes],
    tmp_path: Path,
    smtpd: SMTPServer,
    project: Path,
) -> None:
    from newsletter.config import Dkim
    from newsletter.sending import run_send
    from newsletter.store.database import make_engine, migrate
    from tests.test_delivery import ISSUE, add_people

    private, public = keypair
    key = tmp_path / "dkim.pem"
    key.write_bytes(private)
    signed = dataclasses.replace(
        settings,
        smtp_url=smtpd.url,
        dkim=Dkim(key_path=key, selector="news", domain="test.example"),
    )
    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
        add_people(engine, settings, ["a@example.org", "b@example.org"])
        report = run_send(signed, engine, project / "issues" / ISSUE)
    finally:
        engine.dispose()
    assert report.sent == 2
    for received in smtpd.handler.messages:
        assert received.data.startswith(b"DKIM-Signature:")
        assert dkim.verify(received.data, dnsfunc=dns_for(public))
