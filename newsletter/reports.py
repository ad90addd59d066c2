"""Emails to the editor after a scheduled run: what was sent, and what was skipped and why.

Building is pure (stdlib :class:`EmailMessage`, plain text plus minimal HTML, everything from
issue files escaped); :func:`deliver_report` is the one edge that sends, through
:func:`newsletter.transport.send_single`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from newsletter.addresses import sender_domain
from newsletter.config import Settings
from newsletter.transport import send_single

# Enough failures to act on; the full list is in the ledger (`newsletter status`).
MAX_FAILURES_LISTED = 20


@dataclass(frozen=True)
class SendSummary:
    """The figures of one issue's send, as the editor reads them."""

    slug: str
    title: str
    list_slug: str
    recipients: int
    sent: int
    failed: int
    pending: int
    started_at: datetime
    finished_at: datetime
    # (recipient, reason) of permanent failures and bounces
    failures: tuple[tuple[str, str], ...] = ()
    finished: bool = True
    error: str | None = None

    @property
    def duration_seconds(self) -> float:
        return max(0.0, (self.finished_at - self.started_at).total_seconds())


@dataclass(frozen=True)
class Skipped:
    """An issue the scheduler did not send, and why."""

    slug: str
    title: str
    list_slug: str
    due: datetime
    reason: str  # "draft", "stale", "invalid"
    details: tuple[str, ...] = field(default=())


def send_report_message(settings: Settings, summary: SendSummary) -> EmailMessage | None:
    """The "sent" report for one issue; None when no ``publication.editor_email`` is set."""
    if summary.error:
        headline = f"Send stopped: {summary.title}"
    elif summary.finished:
        headline = f"Sent: {summary.title}"
    else:
        headline = f"Send in progress: {summary.title}"
    rows = [
        ("Issue", summary.slug),
        ("List", summary.list_slug),
        ("Recipients", f"{summary.recipients:,}"),
        ("Delivered", f"{summary.sent:,}"),
        ("Failed", f"{summary.failed:,}"),
        ("Still queued", f"{summary.pending:,}"),
        ("Started", summary.started_at.isoformat(timespec="seconds")),
        ("Duration", _duration(summary.duration_seconds)),
    ]
    lines = [headline, ""]
    lines += [f"{label + ':':<14}{value}" for label, value in rows]
    if summary.error:
        lines += [
            "",
            f"The send stopped with an error: {summary.error}",
            "The ledger keeps its place; the next scheduler run resumes it.",
        ]
    elif not summary.finished:
        lines += ["", "Some recipients are waiting for a retry; the next run resumes them."]
    listed = summary.failures[:MAX_FAILURES_LISTED]
    if listed:
        lines += ["", "Failures:"]
        lines += [f"  {recipient}: {reason}" for recipient, reason in listed]
        if len(summary.failures) > len(listed):
            lines.append(f"  ... and {len(summary.failures) - len(listed)} more")

    body_html = [f"<h1>{_e(headline)}</h1>", "<table>"]
    body_html += [f"<tr><th align='left'>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows]
    body_html.append("</table>")
    if summary.error:
        body_html.append(
            f"<p><strong>The send stopped with an error:</strong> "
            f"{_e(summary.error)}<br>The next scheduler run resumes it.</p>"
        )
    if listed:
        body_html.append("<h2>Failures</h2><ul>")
        body_html += [f"<li>{_e(r)}: {_e(why)}</li>" for r, why in listed]
        body_html.append("</ul>")
    subject = (
        f"[{settings.publication.name}] {headline} "
        f"({summary.sent:,} delivered, {summary.failed:,} failed)"
    )
    return _message(settings, subject, "\n".join(lines) + "\n", "\n".join(body_html))


def skipped_message(settings: Settings, skipped: Sequence[Skipped]) -> EmailMessage | None:
    """One email listing the issues a run skipped; None when nothing was skipped or no editor."""
    if not skipped:
        return None
    count = len(skipped)
    noun = "issue" if count == 1 else "issues"
    subject = f"[{settings.publication.name}] Not sent: {count} {noun} skipped"
    if count == 1:
        subject = f"[{settings.publication.name}] Not sent ({skipped[0].reason}): " + (
            skipped[0].title or skipped[0].slug
        )
    text_lines = [f"The scheduler skipped {count} {noun}:", ""]
    body_html = [f"<p>The scheduler skipped {count} {_e(noun)}:</p>"]
    for item in skipped:
        due = item.due.isoformat(timespec="minutes")
        text_lines.append(f"* {item.slug} (list {item.list_slug}, due {due}): {item.reason}")
        text_lines += [f"    - {detail}" for detail in item.details]
        text_lines.append("")
        body_html.append(
            f"<h2>{_e(item.title or item.slug)}</h2><p>{_e(item.slug)} &middot; list "
            f"{_e(item.list_slug)} &middot; due {_e(due)} &middot; <strong>{_e(item.reason)}"
            "</strong></p>"
        )
        if item.details:
            body_html.append("<ul>" + "".join(f"<li>{_e(d)}</li>" for d in item.details) + "</ul>")
    return _message(settings, subject, "\n".join(text_lines), "\n".join(body_html))


async def deliver_report(settings: Settings, message: EmailMessage) -> None:
    """Send a report to the editor over a fresh connection."""
    await send_single(settings, message)


def _message(settings: Settings, subject: str, text: str, body_html: str) -> EmailMessage | None:
    editor = settings.publication.editor_email
    if not editor:
        return None
    msg = EmailMessage()
    msg["From"] = settings.publication.sender
    msg["To"] = editor
    # titles come from issue files; a line break there must not reach the header
    msg["Subject"] = " ".join(subject.split())
    msg["Date"] = format_datetime(datetime.now().astimezone())
    msg["Message-ID"] = make_msgid(domain=sender_domain(settings.publication.sender))
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    msg.add_alternative(
        f"<!doctype html><html><body style='font-family:sans-serif'>{body_html}</body></html>",
        subtype="html",
    )
    return msg


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)
