"""What the editor's report says about bounces and complaints, and provider payloads fuzzed."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import Engine
from starlette.testclient import TestClient

from newsletter.autosend import _feedback
from newsletter.config import Settings, WebhookSecrets
from newsletter.emails import SendSummary, send_report_message
from newsletter.inbound.intake import Intake
from newsletter.inbound.policy import Level, rate_levels
from newsletter.inbound.webhooks import (
    PayloadError,
    mailgun_reports,
    postmark_reports,
    sendgrid_reports,
    ses_reports,
)
from newsletter.sending import run_send, with_smtp_url
from newsletter.states import EventSource
from newsletter.web.app import create_app
from tests.reports import dsn
from tests.smtpd import SMTPServer
from tests.test_delivery import FAST, T0, add_people

WHEN = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_rates_against_the_providers_thresholds() -> None:
    hard, soft, complaints = rate_levels(sent=10_000, hard=199, soft=40, complaints=9)
    assert (soft.count, soft.level) == (40, Level.OK)
    assert (hard.level, complaints.level) == (Level.OK, Level.OK)
    hard, _, complaints = rate_levels(sent=10_000, hard=200, soft=0, complaints=10)
    assert (hard.level, complaints.level) == (Level.WARN, Level.WARN)
    _, _, complaints = rate_levels(sent=10_000, hard=0, soft=0, complaints=30)
    assert complaints.level is Level.ALARM
    assert complaints.line() == "complaints: 30 (0.30%; warn at 0.1%, alarm at 0.3%)  ALARM"
    nothing = rate_levels(sent=0, hard=0, soft=0, complaints=0)
    assert all(r.rate == 0 and r.level is Level.OK for r in nothing)


def test_the_editors_report_shows_this_and_the_previous_issue(settings: Settings) -> None:
    summary = SendSummary(
        slug="budget-week",
        title="Budget <week>",
        list_slug="weekly",
        recipients=1000,
        sent=1000,
        failed=0,
        pending=0,
        started_at=WHEN,
        finished_at=WHEN,
        feedback=rate_levels(sent=1000, hard=1, soft=0, complaints=0),
        previous=("winter-market", rate_levels(sent=1000, hard=25, soft=3, complaints=4)),
    )
    message = send_report_message(settings, summary)
    assert message is not None
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "What came back so far:" in text
    assert "hard bounces: 1 (0.10%; warn at 2%)" in text
    assert "What came back for winter-market:" in text
    assert "hard bounces: 25 (2.50%; warn at 2%)  WARNING" in text
    assert "complaints: 4 (0.40%; warn at 0.1%, alarm at 0.3%)  ALARM" in text
    assert "color:#b00020" in html
    assert "<week>" not in html


def test_the_report_compares_with_the_lists_previous_issue(
    engine: Engine, settings: Settings, smtpd: SMTPServer, project: Path
) -> None:
    verp = dataclasses.replace(
        settings, bounces=dataclasses.replace(settings.bounces, domain="bounce.test.example")
    )
    add_people(engine, verp, ["ann@example.org", "bob@example.org"])
    first, second = sorted((project / "issues").glob("2026-*.md"))[:2]
    run_send(with_smtp_url(verp, smtpd.url), engine, first, now=T0, policy=FAST)
    ann = next(m for m in smtpd.handler.messages if m.rcpt_tos == ["ann@example.org"])
    Intake(verp, engine).take(
        dsn(to=ann.mail_from, recipients=[("ann@example.org", "failed", "5.1.1")]),
        EventSource.SMTP,
    )
    run_send(with_smtp_url(verp, smtpd.url), engine, second, now=T0, policy=FAST)
    found = _feedback(engine, "winter-market", "weekly")
    assert found["previous"][0] == "flood-barrier-vote"
    hard, _, _ = found["previous"][1]
    assert (hard.count, hard.rate) == (1, 0.5)
    assert found["feedback"][0].count == 0


# --- provider payloads: anything JSON becomes reports or a PayloadError, never a crash ------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "RecordType",
                    "Type",
                    "ID",
                    "Email",
                    "Metadata",
                    "event",
                    "severity",
                    "id",
                    "recipient",
                    "message",
                    "headers",
                    "delivery-status",
                    "sg_event_id",
                    "type",
                    "status",
                    "notificationType",
                    "bounce",
                    "complaint",
                    "mail",
                    "bounceType",
                    "bouncedRecipients",
                    "emailAddress",
                    "complainedRecipients",
                    "user-variables",
                ]
            )
            | st.text(max_size=10),
            children,
            max_size=6,
        )
    ),
    max_leaves=20,
)


@given(payload=json_values)
@hsettings(max_examples=300, deadline=None)
def test_provider_payload_mapping_never_crashes(payload: Any) -> None:
    for mapper in (postmark_reports, mailgun_reports, ses_reports):
        if not isinstance(payload, dict):
            continue
        try:
            reports = mapper(payload) if mapper is not ses_reports else mapper(payload, "id")
        except PayloadError:
            continue
        assert isinstance(reports, list)
    try:
        reports = sendgrid_reports(payload if isinstance(payload, list) else [payload])
    except PayloadError:
        return
    assert isinstance(reports, list)


@pytest.fixture
def postmark_client(web_settings: Settings, engine: Engine) -> Iterator[TestClient]:
    secured = dataclasses.replace(
        web_settings, webhooks=WebhookSecrets(postmark_password="postmark-webhook-password-0123")
    )
    with TestClient(create_app(secured, engine=engine), base_url="https://news.test.example") as c:
        yield c


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@given(payload=json_values)
@hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_an_authenticated_webhook_never_answers_500(
    postmark_client: TestClient, payload: Any
) -> None:
    auth = base64.b64encode(b"postmark:postmark-webhook-password-0123").decode()
    response = postmark_client.post(
        "/webhooks/postmark",
        content=json.dumps(payload),
        headers={"Authorization": "Basic " + auth},
    )
    assert response.status_code in (200, 400)
