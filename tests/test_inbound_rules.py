"""The inbound parser's rules one by one: hard or soft, redaction, auto-reply subjects, tokens."""

from __future__ import annotations

import pytest

from newsletter.inbound import autoreply, dsn, feedback, mime
from newsletter.inbound.model import Action, AutoReplyKind, ReportKind, Severity, TokenSource
from newsletter.inbound.reports import parse_report, unsubscribe_token
from newsletter.inbound.verp import DeliveryRef, DeliveryTokens

KEY = b"rules-test-key-0123456789abcdefgh"


@pytest.mark.parametrize(
    ("action", "status", "diagnostic", "expected"),
    [
        (Action.FAILED, "5.1.1", None, Severity.HARD),
        (Action.FAILED, "5.1.10", None, Severity.HARD),
        (Action.FAILED, "5.7.1", None, Severity.HARD),
        (Action.FAILED, "5.2.2", None, Severity.SOFT),
        (Action.FAILED, "5.3.4", None, Severity.SOFT),
        (Action.FAILED, "5.4.7", None, Severity.SOFT),
        (Action.FAILED, "4.4.1", None, Severity.SOFT),
        (Action.FAILED, None, "550 mailbox unavailable", Severity.HARD),
        (Action.FAILED, None, "452 try later", Severity.SOFT),
        (Action.FAILED, None, "no code at all", Severity.HARD),
        (Action.FAILED, None, None, Severity.HARD),
        (Action.DELAYED, "4.4.7", None, Severity.SOFT),
        (Action.DELAYED, None, None, Severity.SOFT),
        (Action.DELIVERED, "2.0.0", None, None),
        (Action.RELAYED, None, None, None),
        (Action.EXPANDED, "2.0.0", None, None),
    ],
)
def test_severity(
    action: Action, status: str | None, diagnostic: str | None, expected: Severity | None
) -> None:
    assert dsn.severity(action, status, diagnostic) is expected


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("5.1.1", "5.1.1"),
        ("5.01.001 (padded)", "5.1.1"),
        ("smtp; 550-5.1.1 The email account", "5.1.1"),
        ("4.2.2 (mailbox full)", "4.2.2"),
        ("9.9.9", None),
        ("5.1", None),
        ("192.0.2.55", None),
        ("", None),
    ],
)
def test_status_code(text: str, code: str | None) -> None:
    assert dsn.status_code(text) == code


@pytest.mark.parametrize(
    ("address", "redacted"),
    [
        ("alice@example.net", False),
        ("x.y@example.net", False),
        ("xxxxx@example.net", True),
        ("XXXX@example.net", True),
        ("***@example.net", True),
        ("redacted@example.net", True),
        ("[redacted]@example.net", True),
        ("removed-by-provider@example.net", True),
        ("@example.net", True),
        ("nobody", True),
        ("", True),
        (None, True),
    ],
)
def test_redaction(address: str | None, redacted: bool) -> None:
    assert feedback.is_redacted(address) is redacted


@pytest.mark.parametrize(
    ("subject", "kind"),
    [
        ("Out of Office: The Millbrook Weekly", AutoReplyKind.VACATION),
        ("Automatic reply: Weekly", AutoReplyKind.VACATION),
        ("Auto-Reply: Weekly", AutoReplyKind.VACATION),
        ("Abwesenheitsnotiz: Weekly", AutoReplyKind.VACATION),
        ("Automatische Antwort: Weekly", AutoReplyKind.VACATION),
        ("Réponse automatique : Weekly", AutoReplyKind.VACATION),
        ("Respuesta automática: Weekly", AutoReplyKind.VACATION),
        ("Resposta automática: Weekly", AutoReplyKind.VACATION),
        ("Risposta automatica: Weekly", AutoReplyKind.VACATION),
        ("Automatisch antwoord: Weekly", AutoReplyKind.VACATION),
        ("Autosvar: Weekly", AutoReplyKind.VACATION),
        ("Automaattinen vastaus: Weekly", AutoReplyKind.VACATION),
        ("Odpowiedź automatyczna: Weekly", AutoReplyKind.VACATION),
        ("Automatická odpověď: Weekly", AutoReplyKind.VACATION),
        ("Otomatik yanıt: Weekly", AutoReplyKind.VACATION),
        ("Автоответ: Weekly", AutoReplyKind.VACATION),
        ("Автовідповідь: Weekly", AutoReplyKind.VACATION),
        ("自動応答: Weekly", AutoReplyKind.VACATION),
        ("自动回复: Weekly", AutoReplyKind.VACATION),
        ("자동 응답: Weekly", AutoReplyKind.VACATION),
        ("Please confirm your message to gus@example.com", AutoReplyKind.CHALLENGE),
        ("Verify your email to reach me", AutoReplyKind.CHALLENGE),
        ("Re: The Millbrook Weekly", None),
        ("Office hours change at the library", None),
        ("Undelivered Mail Returned to Sender", None),
    ],
)
def test_auto_reply_subjects(subject: str, kind: AutoReplyKind | None) -> None:
    assert autoreply.kind_by_subject(subject) is kind


@pytest.mark.parametrize(
    ("subject", "token"),
    [
        ("unsubscribe AV8eLTxLWml4h5altMPS4fAAAAABAG", "AV8eLTxLWml4h5altMPS4fAAAAABAG"),
        ("Re: RE: Unsubscribe AV8eLTxLWml4h5alt-_", "AV8eLTxLWml4h5alt-_"),
        ("AW: UNSUBSCRIBE   AV8eLTxLWml4h5altMPS", "AV8eLTxLWml4h5altMPS"),
        ("unsubscribe", None),
        ("unsubscribe me please", None),
        ("unsubscribe short", None),
        ("unsubscribe AV8eLTxLWml4h5alt!", "AV8eLTxLWml4h5alt"),
        ("unsubscribe AV8eLTxLWml4h5alt/more", "AV8eLTxLWml4h5alt"),
        ("resubscribe AV8eLTxLWml4h5altMPS4f", None),
    ],
)
def test_unsubscribe_subjects(subject: str, token: str | None) -> None:
    assert unsubscribe_token(subject) == token


def test_a_bounce_with_auto_submitted_is_still_a_bounce() -> None:
    # Exim and Postfix put Auto-Submitted on their failure notices
    data = (
        b"From: Mail Delivery System <Mailer-Daemon@mx.example.com>\n"
        b"To: weekly@millbrook.example\n"
        b"Subject: Mail delivery failed: returning message to sender\n"
        b"Auto-Submitted: auto-replied\n"
        b"X-Failed-Recipients: gone@example.com\n\n"
        b"A message that you sent could not be delivered to one or more of its recipients.\n"
    )
    report = parse_report(data)
    assert report.kind is ReportKind.BOUNCE
    assert [r.address for r in report.recipients] == ["gone@example.com"]


def test_an_auto_reply_quoting_a_failure_is_still_an_auto_reply() -> None:
    data = (
        b"From: Dana <dana@example.com>\nSubject: Out of office\nAuto-Submitted: auto-replied\n\n"
        b"Delivery to the following recipient failed permanently:\n\n     dana@example.com\n"
    )
    report = parse_report(data)
    assert report.kind is ReportKind.AUTO_REPLY
    assert report.recipients == ()


def test_an_auto_replied_unsubscribe_subject_is_not_a_request() -> None:
    data = (
        b"From: robot@example.com\nAuto-Submitted: auto-replied\n"
        b"Subject: Re: unsubscribe AV8eLTxLWml4h5altMPS4fAAAAABAG\n\nI am away.\n"
    )
    assert parse_report(data).kind is ReportKind.AUTO_REPLY


def test_header_values_arrive_on_one_line() -> None:
    # an encoded CR/LF in a returned Subject must not become a line break for the intake
    data = (
        b"From: MAILER-DAEMON@example.org\nContent-Type: multipart/report; boundary=b\n\n"
        b"--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx\n\n"
        b"Final-Recipient: rfc822; a@example.org\nAction: failed\nStatus: 5.1.1\n"
        b"--b\nContent-Type: text/rfc822-headers\n\n"
        b"Subject: =?utf-8?q?Weekly=0D=0ABcc=3A_victim=40example.org?=\n--b--\n"
    )
    report = parse_report(data)
    assert report.kind is ReportKind.BOUNCE
    assert report.original is not None
    assert report.original.subject == "Weekly Bcc: victim@example.org"
    assert mime.clean("a\r\n b\x00c\u2028d") == "a bcd"


def test_the_envelope_recipient_is_the_most_direct_source() -> None:
    tokens = DeliveryTokens([KEY])
    ours, other = tokens.make(DeliveryRef(1, 2)), tokens.make(DeliveryRef(3, 4))
    data = (
        f"From: MAILER-DAEMON@example.org\nTo: bounces+{other}@millbrook.example\n"
        "Subject: x\n\nhello\n"
    ).encode()
    report = parse_report(data, envelope_recipient=f"bounces+{ours}@millbrook.example")
    assert [(c.token, c.source) for c in report.tokens] == [
        (ours, TokenSource.ENVELOPE_RECIPIENT),
        (other, TokenSource.TO),
    ]
    # two rows named: the intake sends such a report to review
    assert report.deliveries(tokens) == (DeliveryRef(1, 2), DeliveryRef(3, 4))
