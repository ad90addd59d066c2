"""Security review of the bulk path: what subscriber data can reach headers and SMTP commands."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from sqlalchemy import Engine, select

from newsletter.config import Settings
from newsletter.store.importing import Reject, import_csv
from newsletter.store.schema import deliveries, subscribers
from newsletter.store.subscribers import ensure_lists, is_suppressed
from tests.smtpd import SMTPServer
from tests.test_delivery import add_people, send, states


def _verp(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings,
        smtp=dataclasses.replace(settings.smtp, return_path="bounces@test.example"),
    )


def test_crlf_in_a_csv_name_never_reaches_a_delivered_header(
    engine: Engine, settings: Settings, smtpd: SMTPServer, project: Path, tmp_path: Path
) -> None:
    csv = tmp_path / "people.csv"
    csv.write_bytes(
        b"email,name\r\n"
        b'eve@example.org,"Eve\r\nBcc: victim@example.org\r\nX-Injected: yes"\r\n'
        b'mallory@example.org,"M <evil@example.org>, ""x"" \\"\r\n'
    )
    with engine.begin() as conn:
        list_id = ensure_lists(conn, settings)["weekly"]
    rejects: list[Reject] = []
    import_csv(engine, csv, list_id=list_id, list_slug="weekly", on_reject=rejects.append)
    assert rejects == []

    assert send(settings, engine, smtpd, project).finished

    by_rcpt = {m.rcpt_tos[0]: m for m in smtpd.handler.messages}
    assert set(by_rcpt) == {"eve@example.org", "mallory@example.org"}
    for rcpt, received in by_rcpt.items():
        assert received.rcpt_tos == [rcpt]
        message = received.message
        assert message["Bcc"] is None
        assert message["X-Injected"] is None
        assert not message.defects
        (to,) = message["To"].addresses
        assert to.addr_spec == rcpt
    assert by_rcpt["eve@example.org"].message["To"].addresses[0].display_name == (
        "Eve Bcc: victim@example.org X-Injected: yes"
    )
    assert by_rcpt["mallory@example.org"].message["To"].addresses[0].display_name == (
        'M <evil@example.org>, "x" \\'
    )


def test_idn_subscriber_gets_the_issue_at_the_ascii_domain(
    engine: Engine, settings: Settings, smtpd: SMTPServer, project: Path
) -> None:
    add_people(engine, settings, ["leser@bücher.example.org", "plain@example.org"])

    report = send(settings, engine, smtpd, project)

    assert report.finished
    assert smtpd.handler.by_recipient() == {
        "leser@xn--bcher-kva.example.org": 1,
        "plain@example.org": 1,
    }
    assert set(states(engine).values()) == {"sent"}
    received = next(m for m in smtpd.handler.messages if m.rcpt_tos[0].startswith("leser@"))
    (to,) = received.message["To"].addresses
    assert to.addr_spec == "leser@xn--bcher-kva.example.org"
    with engine.connect() as conn:
        assert not is_suppressed(conn, "leser@bücher.example.org")


def test_idn_subscriber_with_verp_does_not_stop_the_send(
    engine: Engine, settings: Settings, smtpd: SMTPServer, project: Path
) -> None:
    add_people(engine, settings, ["leser@bücher.example.org", "plain@example.org"])

    report = send(_verp(settings), engine, smtpd, project)

    assert report.finished
    senders = {m.rcpt_tos[0]: m.mail_from for m in smtpd.handler.messages}
    assert set(senders) == {"leser@xn--bcher-kva.example.org", "plain@example.org"}
    # the envelope carries a signed token, never the (internationalised) address
    for sender in senders.values():
        assert re.fullmatch(r"bounces\+[a-z2-7]{32}@test\.example", sender), sender


def test_unicode_local_part_fails_its_own_row_only_and_is_not_suppressed(
    engine: Engine, settings: Settings, smtpd: SMTPServer, project: Path
) -> None:
    # email-validator accepts SMTPUTF8 addresses; the sender does not speak SMTPUTF8, so such
    # a row cannot go out. With VERP it must not halt the whole send as a "sender" problem,
    # and it is our limitation, not a bounce: the person is not suppressed.
    add_people(engine, settings, ["jöhn@example.org", "plain@example.org"])

    report = send(_verp(settings), engine, smtpd, project)

    assert report.finished
    assert smtpd.handler.by_recipient() == {"plain@example.org": 1}
    with engine.connect() as conn:
        rows = dict(
            conn.execute(
                select(subscribers.c.email, deliveries.c.status).join(
                    subscribers, subscribers.c.id == deliveries.c.subscriber_id
                )
            ).all()
        )
        assert rows == {"jöhn@example.org": "failed", "plain@example.org": "sent"}
        assert not is_suppressed(conn, "jöhn@example.org")
