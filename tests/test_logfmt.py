"""Structured log lines: one ``key=value`` line per event, safe for journald."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from newsletter.logfmt import KeyValueFormatter, format_kv, log_event


def test_values_with_spaces_quotes_and_breaks_stay_on_one_line() -> None:
    line = format_kv(
        {
            "event": "send_failed",
            "list": "weekly",
            "issue": "river-week",
            "error": 'relay said "no"\r\nBcc: x\tend',
            "skip": None,
            "at": datetime(2026, 11, 27, 11, 0, 5, 123456, tzinfo=UTC),
        }
    )
    assert line == (
        "event=send_failed list=weekly issue=river-week "
        'error="relay said \\"no\\"\\r\\nBcc: x\\tend" at=2026-11-27T11:00:05+00:00'
    )
    assert "\n" not in line


def test_formatter_puts_time_and_level_first(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="newsletter.scheduler")
    log_event("sent", {"list": "weekly", "issue": "river-week"}, delivered=5)
    [record] = caplog.records
    line = KeyValueFormatter().format(record)
    assert line.startswith("time=")
    assert " level=info event=sent list=weekly issue=river-week delivered=5" in line


def test_foreign_log_lines_are_quoted_messages() -> None:
    record = logging.LogRecord(
        "apscheduler.scheduler",
        logging.WARNING,
        "x",
        1,
        "Run time of job %s was missed",
        ("a b",),
        None,
    )
    line = KeyValueFormatter().format(record)
    assert line.endswith(
        'level=warning logger=apscheduler.scheduler msg="Run time of job a b was missed"'
    )
