"""Editor report emails: the figures of a send, the skips and their reasons, safely escaped."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

from newsletter.config import Settings
from newsletter.reports import (
    SendSummary,
    Skipped,
    deliver_report,
    send_report_message,
    skipped_message,
)
from tests.smtpd import SMTPServer

START = datetime(2026, 11, 20, 11, 0, tzinfo=UTC)


def _summary(**changes: object) -> SendSummary:
    base = SendSummary(
        slug="river-week",
        title="River week <b>special</b>",
        list_slug="weekly",
        recipients=1200,
        sent=1197,
        failed=3,
        pending=0,
        started_at=START,
        finished_at=START + timedelta(minutes=2, seconds=5),
        failures=(("gone@example.org", "550 5.1.1 no such user"),),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_send_report_has_counts_failures_and_duration(settings: Settings) -> None:
    msg = send_report_message(settings, _summary())
    assert msg is not None
    assert msg["To"] == "editor@test.example"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert "1,197 delivered, 3 failed" in msg["Subject"]
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Recipients:   1,200" in text
    assert "Duration:     2 min 5 s" in text
    assert "gone@example.org: 550 5.1.1 no such user" in text
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "River week &lt;b&gt;special&lt;/b&gt;" in html
    assert "<b>special</b>" not in html


def test_error_report_says_the_next_run_resumes(settings: Settings) -> None:
    msg = send_report_message(settings, _summary(error="relay down", finished=False))
    assert msg is not None
    assert msg["Subject"].startswith("[The Test Weekly] Send stopped:")
    assert "resumes" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_a_line_break_in_a_title_never_reaches_the_subject(settings: Settings) -> None:
    msg = send_report_message(settings, _summary(title="Hi\r\nBcc: victim@example.org"))
    assert msg is not None
    assert "\n" not in msg["Subject"]
    assert msg["Bcc"] is None
    headers = msg.as_bytes().split(b"\n\n", 1)[0]
    assert b"\nBcc:" not in headers


def test_skipped_message_lists_each_issue_with_its_reasons(settings: Settings) -> None:
    due = datetime(2026, 11, 20, 13, tzinfo=UTC)
    msg = skipped_message(
        settings,
        [
            Skipped("river-week", "River week", "weekly", due, "draft", ("still a draft",)),
            Skipped("bad", "Bad", "weekly", due, "invalid", ("line 3: unknown key 'titel'",)),
        ],
    )
    assert msg is not None
    assert msg["Subject"] == "[The Test Weekly] Not sent: 2 issues skipped"
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "river-week (list weekly, due 2026-11-20T13:00+00:00): draft" in text
    assert "line 3: unknown key 'titel'" in text
    assert skipped_message(settings, []) is None


def test_no_editor_address_means_no_report(settings: Settings) -> None:
    publication = dataclasses.replace(settings.publication, editor_email=None)
    quiet = dataclasses.replace(settings, publication=publication)
    assert send_report_message(quiet, _summary()) is None


def test_report_goes_out_over_smtp(settings: Settings, smtpd: SMTPServer) -> None:
    live = dataclasses.replace(settings, smtp_url=smtpd.url)
    msg = send_report_message(live, _summary())
    assert msg is not None
    asyncio.run(deliver_report(live, msg))
    [received] = smtpd.handler.messages
    assert received.rcpt_tos == ["editor@test.example"]
    assert "1,197 delivered" in received.message["Subject"]
