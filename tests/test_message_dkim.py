"""DKIM on every message the project sends: issue copies, test copies, confirmations, reports.

Each goes out through the real paths (``run_send`` and the CLI to the aiosmtpd fixture, the web
app's subscribe form, the scheduler's editor report) with ``[dkim]`` configured with an RSA and
an Ed25519 key, and what the SMTP server received is judged by dkimpy and by OpenDKIM, each
signature alone.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import os
import re
import threading
import time
from concurrent.futures import Future
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from starlette.testclient import TestClient

from newsletter import dkim_signers
from newsletter.config import Dkim, Settings, load_settings
from newsletter.dkim import OVERSIGNED, Signer, SigningTemplate
from newsletter.dkim_signers import IssueSigner, sign_single
from newsletter.errors import ConfigError
from newsletter.message import MessageTemplate, Personalization
from newsletter.sending import engine_for, prepare_issue, run_send
from newsletter.states import DeliveryStatus
from newsletter.store.ledger import SqlLedger
from newsletter.transport import SmtpPool, send_single
from newsletter.web.app import create_app
from tests.conftest import TEST_SECRET, run_cli, write_config
from tests.opendkim import OpenDkim, opendkim
from tests.smtpd import SMTPServer
from tests.test_delivery import ISSUE, add_people
from tests.test_dkim import (
    dkimpy_verdicts,
    ed_key,
    issue_settings,
    judge,
    opendkim_verdicts,
    rsa_key,
    signer,
)
from tests.test_message_splice import HTML, TEXT, rendered_issue

__all__ = ["ed_key", "issue_settings", "judge", "opendkim", "rsa_key", "signer"]

DOMAIN = "test.example"


@pytest.fixture(scope="module")
def key_files(
    tmp_path_factory: pytest.TempPathFactory,
    rsa_key: rsa.RSAPrivateKey,
    ed_key: ed25519.Ed25519PrivateKey,
) -> Dkim:
    """``[dkim]`` with the keys of tests.test_dkim's ``signer`` (selectors news and ed)."""
    root = tmp_path_factory.mktemp("keys")
    pkcs8 = serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()
    (root / "rsa.pem").write_bytes(rsa_key.private_bytes(serialization.Encoding.PEM, pkcs8, none))
    (root / "ed.pem").write_bytes(ed_key.private_bytes(serialization.Encoding.PEM, pkcs8, none))
    return Dkim(
        key_path=root / "rsa.pem",
        selector="news",
        domain=DOMAIN,
        ed25519_key_path=root / "ed.pem",
        ed25519_selector="ed",
    )


def dkim_table(config: Dkim) -> str:
    return (
        f'\n[dkim]\nkey_path = "{config.key_path}"\nselector = "{config.selector}"\n'
        f'domain = "{config.domain}"\ned25519_key_path = "{config.ed25519_key_path}"\n'
        f'ed25519_selector = "{config.ed25519_selector}"\n'
    )


def assert_verifies(data: bytes, signer: Signer, judge: OpenDkim) -> None:
    """Both signatures (RSA first, then Ed25519) hold for dkimpy and for OpenDKIM."""
    assert data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;"), data[:200]
    assert dkimpy_verdicts(data, signer) == [True, True], data[:2000]
    assert opendkim_verdicts(data, judge) == [True, True], data[:2000]


def signed_names(data: bytes) -> list[str]:
    header = data.split(b"\r\n\r\n", 1)[0].decode()
    names = re.search(r"h=([^;]+);", re.sub(r"\s", "", header))
    assert names is not None
    return names.group(1).lower().split(":")


def unstuffed(data: bytes) -> bytes:
    """What a server stores of bytes sent after DATA with leading dots doubled."""
    data = data.replace(b"\r\n..", b"\r\n.")
    return data[1:] if data.startswith(b"..") else data


# --- issue copies ------------------------------------------------------------------------------


def test_every_issue_copy_is_signed_and_verifies_with_both(
    settings: Settings,
    engine: Engine,
    smtpd: SMTPServer,
    project: Path,
    key_files: Dkim,
    signer: Signer,
    judge: OpenDkim,
) -> None:
    signed = dataclasses.replace(settings, smtp_url=smtpd.url, dkim=key_files)
    people = ["ann@example.org", "bob@example.org", "chloe@bücher.example"]
    add_people(engine, settings, people)
    report = run_send(signed, engine, project / "issues" / ISSUE)
    assert report.sent == 3
    received = smtpd.handler.messages
    assert len(received) == 3
    for message in received:
        assert_verifies(message.data, signer, judge)
        names = signed_names(message.data)
        # every oversigned header named once more than it occurs: a second copy breaks it
        for name in OVERSIGNED:
            present = len(re.findall(rb"(?mi)^" + name.encode() + rb":", message.data))
            assert names.count(name) == present + 1, name
        assert {"feedback-id", "x-newsletter-delivery"} <= set(names)
    signatures = {m.data.split(b"From:", 1)[0] for m in received}
    assert len(signatures) == 3


def test_issue_copies_are_signed_off_the_event_loop_on_one_core(
    settings: Settings, engine: Engine, smtpd: SMTPServer, project: Path, key_files: Dkim
) -> None:
    """With no core for a signer process the private-key work happens in the signer's
    threads, never on the loop's (the process: tests.test_dkim_process)."""
    threads: list[str] = []
    real = SigningTemplate.signature

    def recording(self: SigningTemplate, *args: object, **kwargs: object) -> bytes:
        threads.append(threading.current_thread().name)
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    signed = dataclasses.replace(settings, smtp_url=smtpd.url, dkim=key_files)
    add_people(engine, settings, [f"r{i}@example.org" for i in range(12)])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SigningTemplate, "signature", recording)
        patch.setattr(os, "cpu_count", lambda: 1)
        report = run_send(signed, engine, project / "issues" / ISSUE)
    assert report.sent == 12
    assert len(threads) == 12
    assert all(name.startswith("dkim") for name in threads), threads
    assert threading.main_thread().name not in threads


def test_the_signer_path_signs_what_the_plain_path_signs(
    issue_settings: Settings, signer: Signer
) -> None:
    """Same copy, same time: the per-issue template gives the whole-message signature."""
    template = MessageTemplate(
        rendered_issue(HTML, TEXT),
        issue_settings,
        issue_settings.mailing_list(None),
        feedback="issue:weekly:The-Test-Weekly:test.example",
        provider="mailgun",
    )
    issue_signer = IssueSigner(signer)
    try:
        for n in range(3):
            person = copy_for(n, name="Zoë Ångström" if n == 1 else None)
            data, future = issue_signer.sign(template, person)
            header = future.result(timeout=10)
            message = unstuffed(data)
            stamp = int(re.search(rb"t=(\d+);", header).group(1))  # type: ignore[union-attr]
            assert header == signer.signature(message, timestamp=stamp)
    finally:
        issue_signer.close()


def copy_for(
    n: int, *, name: str | None = None, to: str | None = None, token: str | None = None
) -> Personalization:
    token = token or f"tok{n}" + "x" * (20 + n)
    return Personalization(
        to=to or f"reader{n}@example.org",
        name=name,
        unsubscribe_url=f"https://news.test.example/unsubscribe/{token}",
        unsubscribe_mailto=f"mailto:unsubscribe@test.example?subject=unsubscribe%20{token}",
        message_id=f"<{token}@test.example>",
        # the shape of a delivery token (inbound.verp): 32 base32 characters
        delivery_token=base64.b32encode(hashlib.sha256(token.encode()).digest())[:32]
        .decode()
        .lower(),
    )


NAMES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=0, max_size=90
)
TOKENS = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
    min_size=22,
    max_size=60,
)
LOCALS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.+_-", min_size=1, max_size=40)
SUBJECTS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=160
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subject=SUBJECTS,
    provider=st.sampled_from([None, "postmark", "mailgun", "sendgrid"]),
    people=st.lists(st.tuples(NAMES, LOCALS, TOKENS), min_size=1, max_size=3),
    text_body=st.sampled_from([TEXT, TEXT.replace("\n", " \t \n"), "." + TEXT + "\n.\n"]),
)
def test_random_personalisations_through_the_issue_signer_verify_with_both(
    subject: str,
    provider: str | None,
    people: list[tuple[str, str, str]],
    text_body: str,
    signer: Signer,
    judge: OpenDkim,
    issue_settings: Settings,
) -> None:
    """Non-ASCII and long names (RFC 2047 words folded over lines), folded subjects, relay
    metadata headers, trailing whitespace and leading dots: each copy verifies with both."""
    template = MessageTemplate(
        rendered_issue(HTML, text_body, subject),
        issue_settings,
        issue_settings.mailing_list(None),
        feedback="issue:weekly:The-Test-Weekly:test.example",
        provider=provider,
    )
    issue_signer = IssueSigner(signer, threads=2)
    try:
        for n, (name, local, token) in enumerate(people):
            person = copy_for(n, name=name.strip() or None, to=f"{local}@example.org", token=token)
            data, future = issue_signer.sign(template, person)
            assert_verifies(future.result(timeout=10) + unstuffed(data), signer, judge)
    finally:
        issue_signer.close()


def test_a_signing_failure_stops_the_send_and_fails_nobody(
    settings: Settings, engine: Engine, smtpd: SMTPServer, project: Path, key_files: Dkim
) -> None:
    class Failing(IssueSigner):
        def sign(
            self, template: MessageTemplate, person: Personalization
        ) -> tuple[bytes, Future[bytes]]:
            data, _ = super().sign(template, person)
            failed: Future[bytes] = Future()
            failed.set_exception(ConfigError("dkim", "cannot sign the message"))
            return data, failed

    s = dataclasses.replace(settings, smtp_url=smtpd.url, dkim=key_files)
    add_people(engine, settings, ["a@example.org", "b@example.org"])
    ref, content, _ = prepare_issue(s, engine, project / "issues" / ISSUE)
    template = MessageTemplate(content, s, s.mailing_list(ref.list_slug))
    ledger = SqlLedger(engine)

    async def deliver() -> None:
        pool = SmtpPool.from_settings(s, connections=1)
        delivery = engine_for(s, ledger, pool)
        failing = Failing(Signer.from_config(key_files))  # type: ignore[arg-type]
        delivery.signer = failing
        try:
            await delivery.deliver(ref, template)
        finally:
            failing.close()
            await pool.close()

    with pytest.raises(ConfigError, match="cannot sign"):
        asyncio.run(deliver())
    assert smtpd.handler.messages == []
    assert ledger.counts(ref)[DeliveryStatus.PENDING] == 2


# --- everything else: test copies, confirmations, reports -------------------------------------


@pytest.fixture
def dkim_config(project: Path, database_url: str, smtpd: SMTPServer, key_files: Dkim) -> Path:
    config = write_config(project, database_url=database_url, smtp_url=smtpd.url)
    config.write_text(config.read_text() + dkim_table(key_files))
    return config


def test_a_test_copy_is_signed(
    dkim_config: Path, engine: Engine, smtpd: SMTPServer, signer: Signer, judge: OpenDkim
) -> None:
    result = run_cli(dkim_config, "send", ISSUE, "--test", "editor@example.org")
    assert result.exit_code == 0, result.output
    (message,) = smtpd.handler.messages
    assert message.message["Subject"].startswith("[TEST]")
    assert_verifies(message.data, signer, judge)
    assert "list-unsubscribe" in signed_names(message.data)


def test_a_confirmation_is_signed(
    dkim_config: Path, engine: Engine, smtpd: SMTPServer, signer: Signer, judge: OpenDkim
) -> None:
    settings_ = load_settings(dkim_config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})
    app = create_app(settings_, engine=engine)
    with TestClient(app, base_url="https://news.test.example") as client:
        response = client.post(
            "/subscribe", data={"email": "zoe@example.org", "name": "Zoë", "lists": "weekly"}
        )
    assert response.status_code == 200, response.text
    (message,) = smtpd.handler.messages
    assert "confirm" in message.message["Subject"]
    assert_verifies(message.data, signer, judge)


def test_the_editors_report_and_the_scheduled_issue_are_signed(
    dkim_config: Path, engine: Engine, smtpd: SMTPServer, signer: Signer, judge: OpenDkim
) -> None:
    from newsletter.autosend import run_due
    from newsletter.store.subscribers import add_subscriber, ensure_lists
    from tests.test_scheduler import FRIDAY, READERS, SLOT, write_issue

    settings_ = load_settings(dkim_config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})
    (settings_.issues_dir / ISSUE).unlink()
    with engine.begin() as conn:
        ids = ensure_lists(conn, settings_)
        for reader in READERS:
            add_subscriber(conn, reader, list_ids=[ids["weekly"]])
    write_issue(settings_, FRIDAY, "river-week")
    outcome = run_due(settings_, engine, now=SLOT + timedelta(seconds=30))
    assert outcome.ok, outcome.errors
    received = smtpd.handler.messages
    editor = [m for m in received if m.rcpt_tos == ["editor@test.example"]]
    # the report of the send, and notices about the project's other issues (a draft, ...)
    subjects = [m.message["Subject"] for m in editor]
    assert any(s.startswith("[The Test Weekly] Sent: ") for s in subjects), subjects
    assert {r for m in received for r in m.rcpt_tos} >= set(READERS)
    for message in received:
        assert_verifies(message.data, signer, judge)


def test_send_single_signs_any_message_and_leaves_it_alone_without_dkim(
    settings: Settings, smtpd: SMTPServer, key_files: Dkim, signer: Signer, judge: OpenDkim
) -> None:
    message = EmailMessage()
    message["From"] = "The Test Weekly <weekly@test.example>"
    message["To"] = "someone@example.org"
    message["Subject"] = "A word — with a long subject line that the stdlib folds " * 2
    message["Date"] = "Fri, 20 Nov 2026 11:00:00 +0000"
    message.set_content("Hello,\n\n.a line with a leading dot\nand trailing space \n")
    signed = dataclasses.replace(settings, smtp_url=smtpd.url, dkim=key_files)
    asyncio.run(send_single(signed, message))
    asyncio.run(send_single(dataclasses.replace(signed, dkim=Dkim()), message))
    first, second = smtpd.handler.messages
    assert_verifies(first.data, signer, judge)
    assert b"DKIM-Signature" not in second.data


def test_a_rotated_key_file_is_read_again(
    tmp_path: Path, key_files: Dkim, rsa_key: rsa.RSAPrivateKey
) -> None:
    """A long-running web server or scheduler signs with the new key once the file changes."""
    path = tmp_path / "rsa.pem"
    path.write_bytes(key_files.key_path.read_bytes())  # type: ignore[union-attr]
    config = Dkim(key_path=path, selector="news", domain=DOMAIN)
    first = dkim_signers.signer_for(config)
    assert dkim_signers.signer_for(config) is first
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    later = time.time() + 5
    os.utime(path, (later, later))
    second = dkim_signers.signer_for(config)
    assert second is not None
    assert second is not first
    assert second.dns_records()[0].value != first.dns_records()[0].value  # type: ignore[union-attr]
    assert (
        sign_single(Dkim(), b"From: a@b.example\r\n\r\nx\r\n") == b"From: a@b.example\r\n\r\nx\r\n"
    )
