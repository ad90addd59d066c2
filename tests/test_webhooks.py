"""The provider webhooks through the real app: payloads signed with keys the tests make;
unsigned, wrongly signed, stale, replayed and malformed requests refused, never a 500."""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from sqlalchemy import Engine
from starlette.testclient import TestClient

from newsletter.config import Settings, WebhookSecrets, load_settings
from newsletter.errors import ConfigError
from newsletter.inbound.sns import SnsVerifier, string_to_sign
from newsletter.states import EventKind, SuppressionReason
from newsletter.store.events import list_events, review_reports
from newsletter.store.subscribers import suppression_reason
from newsletter.web.app import create_app
from tests.conftest import TEST_SECRET, write_config
from tests.smtpd import Received, SMTPServer
from tests.test_delivery import add_people, send

NOW = 1_800_000_000.0
TOPIC = "arn:aws:sns:eu-west-1:123456789012:newsletter-bounces"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
SUBSCRIBE_URL = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=abc"
POSTMARK_PASSWORD = "postmark-webhook-password-0123"
MAILGUN_KEY = "key-mailgun-signing-0123456789abcdef"
PEOPLE = ["ann@example.org", "bob@example.org", "cy@example.org"]


def _certificate(
    subject: str,
    key: rsa.RSAPrivateKey,
    *,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
) -> x509.Certificate:
    """A certificate shaped like SNS's: a CA, or a leaf for ``subject`` that the CA signed."""
    from datetime import UTC, datetime, timedelta

    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, subject)])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        ).add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        return builder.sign(key, hashes.SHA256())
    _, ca_key = issuer
    builder = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    return builder.sign(ca_key, hashes.SHA256())


@functools.cache
def _keys(which: int) -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    # RSA key generation is the slow part; each set is made once per session
    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


class Sns:
    """A stand-in for SNS: a CA of its own, a signing certificate, and what it fetched."""

    def __init__(self, keys: int = 0) -> None:
        ca_key, self.key = _keys(keys)
        self.ca = _certificate("Test Root CA", ca_key)
        leaf = _certificate("sns.amazonaws.com", self.key, issuer=(self.ca, ca_key))
        self.pem = leaf.public_bytes(serialization.Encoding.PEM)
        self.fetched: list[str] = []
        self.served = {CERT_URL: self.pem, SUBSCRIBE_URL: b"<ConfirmSubscriptionResponse/>"}

    def fetch(self, url: str) -> bytes:
        self.fetched.append(url)
        return self.served[url]

    def verifier(self) -> SnsVerifier:
        return SnsVerifier(self.fetch, [self.ca])

    def sign(self, message: dict[str, Any], *, version: str = "2") -> dict[str, Any]:
        message = {**message, "SignatureVersion": version, "SigningCertURL": CERT_URL}
        algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
        signature = self.key.sign(string_to_sign(message), padding.PKCS1v15(), algorithm)
        return {**message, "Signature": base64.b64encode(signature).decode()}


@pytest.fixture
def sns() -> Sns:
    return Sns()


@pytest.fixture
def sendgrid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def hooked(web_settings: Settings, sendgrid_key: ec.EllipticCurvePrivateKey) -> Settings:
    public = sendgrid_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return dataclasses.replace(
        web_settings,
        bounces=dataclasses.replace(
            web_settings.bounces, domain="bounce.test.example", ses_topic_arns=TOPIC
        ),
        webhooks=WebhookSecrets(
            postmark_password=POSTMARK_PASSWORD,
            mailgun_signing_key=MAILGUN_KEY,
            sendgrid_public_key=base64.b64encode(public).decode(),
        ),
    )


@pytest.fixture
def sent(hooked: Settings, engine: Engine, smtpd: SMTPServer, project: Path) -> dict[str, Received]:
    add_people(engine, hooked, PEOPLE)
    assert send(hooked, engine, smtpd, project).finished
    return {m.rcpt_tos[0]: m for m in smtpd.handler.messages}


@pytest.fixture
def hooks(hooked: Settings, engine: Engine, sns: Sns) -> Iterator[TestClient]:
    app = create_app(hooked, engine=engine, sns_verifier=sns.verifier(), webhook_clock=lambda: NOW)
    with TestClient(app, base_url="https://news.test.example", raise_server_exceptions=True) as c:
        yield c


def token_of(received: Received) -> str:
    return str(received.message["X-Newsletter-Delivery"])


def iso(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


# --- SES over SNS ---------------------------------------------------------------------------


def ses_bounce(received: Received, *, message_id: str = "sns-1", at: float = NOW) -> dict[str, Any]:
    inner = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": received.rcpt_tos[0],
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "reportingMTA": "dsn; a1-2.smtp-out.eu-west-1.amazonses.com",
        },
        "mail": {
            "messageId": "0102018c-ses-id",
            "source": received.mail_from,
            "commonHeaders": {"messageId": str(received.message["Message-ID"])},
        },
    }
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC,
        "Message": json.dumps(inner),
        "Timestamp": iso(at),
    }


def test_ses_subscription_is_confirmed_and_a_bounce_suppresses(
    hooks: TestClient, sns: Sns, sent: dict[str, Received], engine: Engine
) -> None:
    confirm = sns.sign(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "sub-1",
            "Token": "abc",
            "TopicArn": TOPIC,
            "Message": "You have chosen to subscribe",
            "SubscribeURL": SUBSCRIBE_URL,
            "Timestamp": iso(NOW),
        }
    )
    response = hooks.post("/webhooks/ses", content=json.dumps(confirm))
    assert response.status_code == 200
    assert SUBSCRIBE_URL in sns.fetched

    body = json.dumps(sns.sign(ses_bounce(sent["ann@example.org"])))
    assert hooks.post("/webhooks/ses", content=body).status_code == 200
    # SNS delivers at least once: the same message again counts once
    assert hooks.post("/webhooks/ses", content=body).status_code == 200
    with engine.connect() as conn:
        assert suppression_reason(conn, "ann@example.org") is SuppressionReason.BOUNCED
        (event,) = list_events(conn)
    assert (event.kind, event.status, event.source.value) == (EventKind.BOUNCE, "5.1.1", "ses")
    assert sns.fetched.count(CERT_URL) == 1  # the certificate is fetched once and cached


def test_ses_refuses_what_sns_did_not_sign(
    hooks: TestClient, sns: Sns, sent: dict[str, Received], engine: Engine
) -> None:
    good = sns.sign(ses_bounce(sent["ann@example.org"]))
    other_ca = Sns(keys=1)
    cases: dict[str, Any] = {
        "unsigned": {k: v for k, v in good.items() if k != "Signature"},
        "tampered": {**good, "Message": good["Message"].replace("Permanent", "Transient")},
        "other host": {
            **good,
            "SigningCertURL": "https://evil.example/SimpleNotificationService-x.pem",
        },
        "http": {**good, "SigningCertURL": CERT_URL.replace("https", "http")},
        "other topic": sns.sign({**ses_bounce(sent["ann@example.org"]), "TopicArn": TOPIC + "-x"}),
        "stale": sns.sign(ses_bounce(sent["ann@example.org"], at=NOW - 3600)),
        "other CA": other_ca.sign(ses_bounce(sent["ann@example.org"])),
    }
    sns.served[CERT_URL + "?other"] = other_ca.pem
    for name, message in cases.items():
        response = hooks.post("/webhooks/ses", content=json.dumps(message))
        assert response.status_code == 403, name
    assert hooks.post("/webhooks/ses", content=b"not json").status_code == 403
    assert hooks.post("/webhooks/ses", content=b"[1, 2]").status_code == 403
    assert not any("evil" in url for url in sns.fetched)
    with engine.connect() as conn:
        assert suppression_reason(conn, "ann@example.org") is None
        assert list_events(conn) == []


def test_a_webhook_without_its_secret_is_off(web_settings: Settings, engine: Engine) -> None:
    app = create_app(web_settings, engine=engine)
    with TestClient(app, base_url="https://news.test.example") as c:
        for path in (
            "/webhooks/ses",
            "/webhooks/postmark",
            "/webhooks/mailgun",
            "/webhooks/sendgrid",
        ):
            assert c.post(path, content=b"{}").status_code == 404, path


# --- Postmark ------------------------------------------------------------------------------


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_postmark_basic_auth_and_metadata(
    hooks: TestClient, sent: dict[str, Received], engine: Engine
) -> None:
    bob = sent["bob@example.org"]
    event = {
        "RecordType": "Bounce",
        "ID": 4323372036854775807,
        "Type": "HardBounce",
        "TypeCode": 1,
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Email": "bob@example.org",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist",
        "Metadata": {"newsletter-delivery": token_of(bob)},
    }
    body = json.dumps(event)
    refused = hooks.post("/webhooks/postmark", content=body)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Basic")
    wrong = hooks.post("/webhooks/postmark", content=body, headers=basic("postmark", "nope"))
    assert wrong.status_code == 401
    ok = hooks.post(
        "/webhooks/postmark", content=body, headers=basic("postmark", POSTMARK_PASSWORD)
    )
    assert ok.status_code == 200
    # an event that only names an address suppresses nobody
    bare = {**event, "ID": 2, "Email": "cy@example.org", "Metadata": {}}
    assert (
        hooks.post(
            "/webhooks/postmark",
            content=json.dumps(bare),
            headers=basic("postmark", POSTMARK_PASSWORD),
        ).status_code
        == 200
    )
    with engine.connect() as conn:
        assert suppression_reason(conn, "bob@example.org") is SuppressionReason.BOUNCED
        assert suppression_reason(conn, "cy@example.org") is None
        assert len(review_reports(conn)) == 1
    garbage = hooks.post(
        "/webhooks/postmark", content=b"[]", headers=basic("postmark", POSTMARK_PASSWORD)
    )
    assert garbage.status_code == 400


# --- Mailgun -------------------------------------------------------------------------------


def mailgun(
    event: dict[str, Any], *, timestamp: float = NOW, token: str = "t" * 50, key: str = MAILGUN_KEY
) -> bytes:
    stamp = str(int(timestamp))
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps(
        {
            "signature": {"timestamp": stamp, "token": token, "signature": signature},
            "event-data": event,
        }
    ).encode()


def test_mailgun_signature_freshness_and_replay(
    hooks: TestClient, sent: dict[str, Received], engine: Engine
) -> None:
    cy = sent["cy@example.org"]
    complaint = {
        "id": "mg-event-1",
        "event": "complained",
        "recipient": "cy@example.org",
        # Mailgun echoes our Message-ID without brackets: it is the delivery token
        "message": {"headers": {"message-id": str(cy.message["Message-ID"]).strip("<>")}},
    }
    assert (
        hooks.post("/webhooks/mailgun", content=mailgun(complaint, token="a" * 50)).status_code
        == 200
    )
    replay = hooks.post("/webhooks/mailgun", content=mailgun(complaint, token="a" * 50))
    assert replay.status_code == 403
    stale = hooks.post(
        "/webhooks/mailgun", content=mailgun(complaint, timestamp=NOW - 3600, token="b" * 50)
    )
    assert stale.status_code == 403
    forged = hooks.post(
        "/webhooks/mailgun",
        content=mailgun(complaint, token="c" * 50, key="another-key-0123456789"),
    )
    assert forged.status_code == 403
    unsigned = hooks.post("/webhooks/mailgun", content=json.dumps({"event-data": complaint}))
    assert unsigned.status_code == 401
    with engine.connect() as conn:
        assert suppression_reason(conn, "cy@example.org") is SuppressionReason.COMPLAINED
    failed = {
        "id": "mg-event-2",
        "event": "failed",
        "severity": "temporary",
        "recipient": "ann@example.org",
        "delivery-status": {"code": 452, "message": "mailbox full", "enhanced-code": "4.2.2"},
        "user-variables": {"nl_delivery": token_of(sent["ann@example.org"])},
    }
    assert (
        hooks.post("/webhooks/mailgun", content=mailgun(failed, token="d" * 50)).status_code == 200
    )
    with engine.connect() as conn:
        kinds = {(e.email, e.kind) for e in list_events(conn)}
        assert suppression_reason(conn, "ann@example.org") is None
    assert kinds == {("cy@example.org", EventKind.COMPLAINT), ("ann@example.org", EventKind.DELAY)}


# --- SendGrid ------------------------------------------------------------------------------


def sendgrid_headers(
    key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: float = NOW
) -> dict[str, str]:
    stamp = str(int(timestamp))
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
    }


def test_sendgrid_signed_event_webhook(
    hooks: TestClient,
    sent: dict[str, Received],
    engine: Engine,
    sendgrid_key: ec.EllipticCurvePrivateKey,
) -> None:
    ann, bob, cy = (sent[p] for p in PEOPLE)
    events = [
        {
            "email": "ann@example.org",
            "event": "bounce",
            "type": "bounce",
            "status": "5.1.1",
            "reason": "550 5.1.1 unknown",
            "sg_event_id": "e1",
            "nl_delivery": token_of(ann),
        },
        {
            "email": "bob@example.org",
            "event": "spamreport",
            "sg_event_id": "e2",
            "smtp-id": str(bob.message["Message-ID"]),
        },
        {
            "email": "cy@example.org",
            "event": "delivered",
            "sg_event_id": "e3",
            "nl_delivery": token_of(cy),
        },
    ]
    body = json.dumps(events).encode()
    assert hooks.post("/webhooks/sendgrid", content=body).status_code == 401
    bad = sendgrid_headers(sendgrid_key, body + b" ")
    assert hooks.post("/webhooks/sendgrid", content=body, headers=bad).status_code == 403
    stale = sendgrid_headers(sendgrid_key, body, timestamp=NOW - 3600)
    assert hooks.post("/webhooks/sendgrid", content=body, headers=stale).status_code == 403
    other = sendgrid_headers(ec.generate_private_key(ec.SECP256R1()), body)
    assert hooks.post("/webhooks/sendgrid", content=body, headers=other).status_code == 403
    good = hooks.post(
        "/webhooks/sendgrid", content=body, headers=sendgrid_headers(sendgrid_key, body)
    )
    assert good.status_code == 200
    with engine.connect() as conn:
        assert suppression_reason(conn, "ann@example.org") is SuppressionReason.BOUNCED
        assert suppression_reason(conn, "bob@example.org") is SuppressionReason.COMPLAINED
        assert suppression_reason(conn, "cy@example.org") is None
        assert len(list_events(conn)) == 3
    junk = b'{"not": "a list"}'
    assert (
        hooks.post(
            "/webhooks/sendgrid", content=junk, headers=sendgrid_headers(sendgrid_key, junk)
        ).status_code
        == 400
    )
    odd = b'[{"event": "bounce"}]'
    assert (
        hooks.post(
            "/webhooks/sendgrid", content=odd, headers=sendgrid_headers(sendgrid_key, odd)
        ).status_code
        == 400
    )


def test_short_webhook_secrets_are_refused(project: Path, tmp_path: Path) -> None:
    config = write_config(project, database_url=f"sqlite:///{tmp_path / 'x.db'}")
    for name in ("NEWSLETTER_WEBHOOK_MAILGUN_SIGNING_KEY", "NEWSLETTER_WEBHOOK_POSTMARK_PASSWORD"):
        with pytest.raises(ConfigError) as caught:
            load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET, name: "short"})
        assert name in str(caught.value)
        assert "short" not in str(caught.value).replace("too short", "")
    loaded = load_settings(
        config,
        environ={
            "NEWSLETTER_SECRET_KEY": TEST_SECRET,
            "NEWSLETTER_WEBHOOK_MAILGUN_SIGNING_KEY": MAILGUN_KEY,
        },
    )
    assert MAILGUN_KEY not in repr(loaded)
    assert loaded.webhooks.mailgun_signing_key == MAILGUN_KEY
