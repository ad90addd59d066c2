"""The intake end to end on both databases: reports about deliveries a test has just sent."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from newsletter.config import Settings
from newsletter.inbound.intake import Intake
from newsletter.inbound.policy import Effect
from newsletter.inbound.verp import DeliveryRef, DeliveryTokens
from newsletter.states import (
    DeliveryStatus,
    EventKind,
    EventSource,
    ReportOutcome,
    SubscriptionStatus,
    SuppressionReason,
)
from newsletter.store.events import (
    issue_feedback,
    list_events,
    review_reports,
    subscriber_events,
    weekly_counts,
)
from newsletter.store.schema import deliveries, inbound_reports
from newsletter.store.subscribers import find_by_email, suppression_reason
from tests.reports import arf, dsn, vacation
from tests.smtpd import Received, SMTPServer
from tests.test_delivery import T0, add_people, send, states

PEOPLE = ["ann@example.org", "bob@example.org", "cy@example.org"]


@pytest.fixture
def verp(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings, bounces=dataclasses.replace(settings.bounces, domain="bounce.test.example")
    )


@pytest.fixture
def sent(engine: Engine, verp: Settings, smtpd: SMTPServer, project: Path) -> dict[str, Received]:
    """The sample issue sent to PEOPLE: each one's received message, by address."""
    add_people(engine, verp, PEOPLE)
    assert send(verp, engine, smtpd, project).finished
    return {m.rcpt_tos[0]: m for m in smtpd.handler.messages}


def intake(settings: Settings, engine: Engine, at: timedelta = timedelta(hours=1)) -> Intake:
    return Intake(settings, engine, clock=lambda: T0 + at)


def bounce_for(received: Received, status: str = "5.1.1", action: str = "failed") -> bytes:
    return dsn(
        to=received.mail_from,
        recipients=[(received.rcpt_tos[0], action, status)],
        original=received.data,
    )


def test_a_hard_bounce_suppresses_and_the_ledger_says_sent_then_bounced(
    engine: Engine, verp: Settings, sent: dict[str, Received], smtpd: SMTPServer, project: Path
) -> None:
    applied = intake(verp, engine).take(bounce_for(sent["ann@example.org"]), EventSource.SMTP)
    assert applied.outcome is ReportOutcome.APPLIED
    assert applied.effect is Effect.HARD_BOUNCE
    assert applied.suppressed
    assert applied.counted
    with engine.connect() as conn:
        assert suppression_reason(conn, "ann@example.org") is SuppressionReason.BOUNCED
        assert suppression_reason(conn, "bob@example.org") is None
        row = conn.execute(
            select(deliveries.c.status, deliveries.c.sent_at, deliveries.c.last_reply).where(
                deliveries.c.subscriber_id == applied.ref.subscriber_id  # type: ignore[union-attr]
            )
        ).one()
        (event,) = list_events(conn)
        feedback = issue_feedback(conn, applied.ref.issue_id)  # type: ignore[union-attr]
    assert row.status == DeliveryStatus.BOUNCED.value
    assert row.sent_at is not None
    assert "5.1.1" in row.last_reply
    assert (event.kind, event.email, event.status, event.counted) == (
        EventKind.BOUNCE,
        "ann@example.org",
        "5.1.1",
        True,
    )
    assert "test reply" in (event.diagnostic or "")
    assert (feedback.sent, feedback.hard, feedback.soft, feedback.complaints) == (3, 1, 0, 0)
    assert states(engine)["bob@example.org"] == DeliveryStatus.SENT.value


def test_the_same_report_twice_counts_once(
    engine: Engine, verp: Settings, sent: dict[str, Received]
) -> None:
    report = bounce_for(sent["bob@example.org"], "4.2.2")
    first = intake(verp, engine).take(report, EventSource.SMTP)
    again = intake(verp, engine).take(report, EventSource.IMPORT)
    assert first.outcome is ReportOutcome.APPLIED
    assert again.duplicate
    # the same bounce with other bytes (a copy that came through another mailbox)
    copy = b"Delivered-To: " + sent["bob@example.org"].mail_from.encode() + b"\r\n" + report
    third = intake(verp, engine).take(copy, EventSource.IMAP)
    assert third.outcome is ReportOutcome.APPLIED
    assert not third.counted
    with engine.connect() as conn:
        events = list_events(conn)
        assert len(conn.execute(select(inbound_reports.c.id)).all()) == 2
    assert len(events) == 2
    assert sum(e.counted for e in events) == 1


def test_a_delay_then_the_failure_of_the_same_message_counts_once(
    engine: Engine, verp: Settings, sent: dict[str, Received]
) -> None:
    bob = sent["bob@example.org"]
    delay = intake(verp, engine).take(bounce_for(bob, "4.4.1", "delayed"), EventSource.SMTP)
    failed = intake(verp, engine).take(bounce_for(bob, "4.4.7", "failed"), EventSource.SMTP)
    assert (delay.effect, delay.counted) == (Effect.DELAY, True)
    assert (failed.effect, failed.counted) == (Effect.SOFT_BOUNCE, False)
    assert not failed.suppressed
    with engine.connect() as conn:
        feedback = issue_feedback(conn, failed.ref.issue_id)  # type: ignore[union-attr]
    assert feedback.soft == 1
    assert states(engine)["bob@example.org"] == DeliveryStatus.FAILED.value


def test_soft_bounces_suppress_after_the_limit_within_the_window(
    engine: Engine, verp: Settings, smtpd: SMTPServer, project: Path
) -> None:
    from newsletter.sending import run_send, with_smtp_url
    from tests.test_delivery import FAST

    add_people(engine, verp, ["full@example.org", "late@example.org"])
    issues = sorted((project / "issues").glob("2026-*.md"))[:3]
    assert len(issues) == 3
    # three soft bounces within 30 days suppress; three spread over 40 days do not
    days = {"full@example.org": [0, 10, 20], "late@example.org": [0, 10, 40]}
    for number, issue in enumerate(issues):
        smtpd.handler.reset()
        run_send(with_smtp_url(verp, smtpd.url), engine, issue, now=T0, policy=FAST)
        for received in smtpd.handler.messages:
            (who,) = received.rcpt_tos
            at = timedelta(days=days[who][number])
            result = intake(verp, engine, at).take(bounce_for(received, "5.2.2"), EventSource.SMTP)
            assert result.effect is Effect.SOFT_BOUNCE
            assert result.counted
            assert result.suppressed is (who == "full@example.org" and number == 2)
    with engine.connect() as conn:
        assert suppression_reason(conn, "full@example.org") is SuppressionReason.BOUNCED
        assert suppression_reason(conn, "late@example.org") is None


def test_a_redacted_complaint_unsubscribes_from_every_list(
    engine: Engine, verp: Settings, sent: dict[str, Received]
) -> None:
    cy = sent["cy@example.org"]
    with engine.begin() as conn:
        from newsletter.store.subscribers import add_subscriber, ensure_lists

        ids = ensure_lists(conn, verp)
        add_subscriber(conn, "cy@example.org", list_ids=[ids["business"]])
    report = arf(original=cy.data)
    assert b"X-Newsletter-Delivery" not in report
    applied = intake(verp, engine).take(report, EventSource.IMPORT)
    assert (applied.effect, applied.suppressed) == (Effect.COMPLAINT, True)
    with engine.connect() as conn:
        assert suppression_reason(conn, "cy@example.org") is SuppressionReason.COMPLAINED
        person = find_by_email(conn, "cy@example.org")
        assert person is not None
        assert {s.status for s in person.subscriptions} == {SubscriptionStatus.UNSUBSCRIBED}
        (event,) = subscriber_events(conn, person.id)
        feedback = issue_feedback(conn, applied.ref.issue_id)  # type: ignore[union-attr]
    assert event.kind is EventKind.COMPLAINT
    assert event.feedback_type == "abuse"
    assert feedback.complaints == 1


def test_auto_replies_are_recorded_never_counted(
    engine: Engine, verp: Settings, sent: dict[str, Received]
) -> None:
    ann = sent["ann@example.org"]
    applied = intake(verp, engine).take(vacation(to=ann.mail_from), EventSource.SMTP)
    assert applied.outcome is ReportOutcome.RECORDED
    assert not applied.counted
    assert not applied.suppressed
    with engine.connect() as conn:
        (event,) = list_events(conn)
        assert event.kind is EventKind.AUTO_REPLY
        assert suppression_reason(conn, "ann@example.org") is None


def test_nothing_is_acted_on_without_a_verified_link(
    engine: Engine, verp: Settings, sent: dict[str, Received]
) -> None:
    ann, bob = sent["ann@example.org"], sent["bob@example.org"]
    forged_key = DeliveryTokens([b"another-publication-key-0123456789"])
    token = ann.mail_from.split("+")[1].split("@")[0]
    tampered = ann.mail_from.replace(token, token[:-1] + ("a" if token[-1] != "a" else "b"))
    cases = {
        # names ann, no token at all
        "no token": dsn(
            to="bounces@bounce.test.example", recipients=[("ann@example.org", "failed", "5.1.1")]
        ),
        "tampered": dsn(to=tampered, recipients=[("ann@example.org", "failed", "5.1.1")]),
        "other key": dsn(
            to=f"bounces+{forged_key.make(_ref(token, verp))}@bounce.test.example",
            recipients=[("ann@example.org", "failed", "5.1.1")],
        ),
        # bob's own token, but the report is about ann and cy: it names someone else
        "token for another row": dsn(
            to=bob.mail_from,
            recipients=[
                ("ann@example.org", "failed", "5.1.1"),
                ("cy@example.org", "failed", "5.1.1"),
            ],
        ),
    }
    for name, report in cases.items():
        applied = intake(verp, engine).take(report, EventSource.SMTP)
        assert applied.outcome is ReportOutcome.REVIEW, name
        assert not applied.suppressed, name
    with engine.connect() as conn:
        for person in PEOPLE:
            assert suppression_reason(conn, person) is None
        waiting = review_reports(conn)
        assert list_events(conn) == []
    assert len(waiting) == 4
    assert all(r.reason for r in waiting)


def _ref(token: str, settings: Settings) -> DeliveryRef:
    ref = DeliveryTokens(settings.token_keys).read(token)
    assert ref is not None
    return ref


def test_a_forward_that_bounces_names_one_recipient_and_counts(
    engine: Engine, verp: Settings, sent: dict[str, Received]
) -> None:
    ann = sent["ann@example.org"]
    report = dsn(to=ann.mail_from, recipients=[("ann.old@forward.example", "failed", "5.1.1")])
    applied = intake(verp, engine).take(report, EventSource.SMTP)
    assert applied.effect is Effect.HARD_BOUNCE
    assert applied.email == "ann@example.org"


def test_a_hard_bounced_subscriber_is_left_out_of_the_next_send(
    engine: Engine, verp: Settings, sent: dict[str, Received], smtpd: SMTPServer, project: Path
) -> None:
    intake(verp, engine).take(bounce_for(sent["ann@example.org"]), EventSource.SMTP)
    from newsletter.sending import run_send, with_smtp_url
    from tests.test_delivery import FAST

    smtpd.handler.reset()
    other = next(p for p in sorted((project / "issues").glob("2026-*.md")) if "flood" not in p.name)
    assert "flood" in str(sent["bob@example.org"].message["Feedback-ID"])
    run_send(with_smtp_url(verp, smtpd.url), engine, other, now=T0, policy=FAST)
    assert sorted(m.rcpt_tos[0] for m in smtpd.handler.messages) == PEOPLE[1:]


def test_events_per_week(engine: Engine, verp: Settings, sent: dict[str, Received]) -> None:
    intake(verp, engine).take(bounce_for(sent["ann@example.org"]), EventSource.SMTP)
    intake(verp, engine, timedelta(days=8)).take(
        bounce_for(sent["bob@example.org"], "4.2.2"), EventSource.SMTP
    )
    with engine.connect() as conn:
        weeks = weekly_counts(conn, since=T0 - timedelta(days=7))
    assert [dict(w.counts) for w in weeks] == [{"hard": 1}, {"soft": 1}]
    assert all(w.week.weekday() == 0 for w in weeks)


@pytest.mark.parametrize(("status", "late"), [("5.1.1", "bounced"), ("4.2.2", "failed")])
def test_a_report_that_beats_the_senders_write_keeps_its_outcome(
    engine: Engine, verp: Settings, project: Path, status: str, late: str
) -> None:
    """A fast relay's DSN can come back before the sender's group commit says "sent"."""
    from newsletter.sending import prepare_issue
    from newsletter.store.ledger import Outcome, SqlLedger

    add_people(engine, verp, ["quick@example.org"])
    ref, _, _ = prepare_issue(
        verp, engine, next((project / "issues").glob("2026-11-20-*.md")), now=T0
    )
    ledger = SqlLedger(engine)
    (row,) = ledger.claim(ref, owner="sender", now=T0, lease_seconds=300, limit=10)
    address = DeliveryTokens(verp.token_keys).address(
        DeliveryRef(ref.id, row.subscriber_id), "bounce.test.example"
    )
    action = "failed"
    report = dsn(to=address, recipients=[("quick@example.org", action, status)])
    applied = intake(verp, engine).take(report, EventSource.SMTP)
    assert applied.outcome is ReportOutcome.APPLIED
    # the sender writes its outcome afterwards: the relay accepted the message
    ledger.record(
        ref, [Outcome(row.subscriber_id, DeliveryStatus.SENT, 250, "ok")], owner="sender", now=T0
    )
    with engine.connect() as conn:
        found = conn.execute(
            select(deliveries.c.status, deliveries.c.sent_at, deliveries.c.lease_owner)
        ).one()
    assert found.status == late
    assert found.sent_at is not None
    assert found.lease_owner is None
