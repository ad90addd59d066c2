"""Every email besides issue deliveries: one header block, one test rule, reports escaped."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

from newsletter.config import Settings
from newsletter.emails import SendSummary, Skipped, send_report_message, skipped_message
from newsletter.transport import send_single
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
    asyncio.run(send_single(live, msg))
    [received] = smtpd.handler.messages
    assert received.rcpt_tos == ["editor@test.example"]
    assert "1,197 delivered" in received.message["Subject"]


HEAD = ["From", "To", "Reply-To", "Subject", "Date", "Message-ID"]


def test_every_email_starts_with_the_same_header_block(settings: Settings) -> None:
    from newsletter.emails import (
        TEST_PREFIX,
        build_confirmation,
        preview_copy,
        sample_copy,
        test_copy,
    )
    from newsletter.issues import load_issue
    from newsletter.rendering import Renderer
    from newsletter.web.context import page_environment

    issue = load_issue(next(settings.issues_dir.glob("2026-11-20-*.md")), settings)
    rendered = Renderer(settings).render(issue)
    weekly = settings.mailing_list("weekly")
    copies = {
        "sample": sample_copy(rendered, settings),
        "preview": preview_copy(rendered, settings, to="editor@test.example"),
        "test": test_copy(rendered, settings, weekly, to="editor@test.example"),
    }
    notices = {
        "confirmation": build_confirmation(
            settings,
            page_environment(settings),
            to="ann@example.org",
            name=None,
            link="https://news.test.example/confirm/x",
            lists=[weekly],
        ),
        "report": send_report_message(settings, _summary()),
        "skipped": skipped_message(
            settings, [Skipped("x", "X", "weekly", START, "draft", ("a draft",))]
        ),
    }
    for kind, msg in {**copies, **notices}.items():
        assert msg is not None, kind
        assert list(msg.keys())[: len(HEAD)] == HEAD, kind
        assert msg["From"] == settings.publication.sender, kind
        assert msg["Reply-To"] == settings.publication.reply_to, kind
        assert str(msg["Message-ID"]).endswith("@test.example>"), kind
        # mail no person wrote says so; an issue copy is the newsletter itself
        assert (msg["Auto-Submitted"] == "auto-generated") is (kind in notices), kind
    assert copies["test"]["Subject"] == TEST_PREFIX + rendered.subject
    assert copies["sample"]["Subject"] == copies["preview"]["Subject"] == rendered.subject


def test_a_test_copy_unsubscribes_nobody(settings: Settings) -> None:
    import re

    from newsletter.emails import NO_LIST, NOBODY_UID, test_copy
    from newsletter.model import RenderedIssue
    from newsletter.tokens import TokenPurpose, read_token

    issue = _issue(settings)
    content = RenderedIssue(issue, "Hello", "", "<p>x</p>", "x", "")
    msg = test_copy(content, settings, settings.mailing_list(None), to="ed@example.org")
    match = re.search(r"/unsubscribe/([\w-]+)>", str(msg["List-Unsubscribe"]))
    assert match is not None
    data = read_token(settings.secret_key, match.group(1), TokenPurpose.UNSUBSCRIBE)
    assert (data.subscriber_uid, data.list_id) == (NOBODY_UID, NO_LIST)


def _issue(settings: Settings):  # type: ignore[no-untyped-def]
    from newsletter.issues import load_issue

    return load_issue(next(settings.issues_dir.glob("2026-11-20-*.md")), settings)
