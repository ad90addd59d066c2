"""Every email the project sends besides the issue itself to subscribers, built in one place.

The sample ``.eml`` of ``newsletter build``, the preview's copy, test copies (``send --test``
and the preview's button, one ``[TEST]`` rule), the double opt-in confirmation and the
editor's reports. All start from one header block (:func:`message.header_block`: From,
Reply-To, Date, Message-ID, Auto-Submitted) and all go out through one function,
:func:`newsletter.transport.send_single`, where a signature can be added to every one of
them. Pure: these build messages and send nothing.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from email.message import EmailMessage

from jinja2 import Environment

from newsletter import i18n
from newsletter.addresses import address, ascii_address, check_header_value, sender_domain
from newsletter.config import MailingList, Settings
from newsletter.i18n import translations
from newsletter.joins import join_names, placeholders
from newsletter.message import MessageContent, build_email_message, header_block
from newsletter.model import RenderedIssue
from newsletter.tokens import TokenPurpose, make_token
from newsletter.urls import join_url, unsubscribe_mailto, unsubscribe_url

# --- copies of an issue that are not deliveries ---------------------------------------------

#: What marks a test copy's subject, wherever it is sent from.
TEST_PREFIX = "[TEST] "
SAMPLE_RECIPIENT = "Sample Reader <reader@example.com>"
# A fixed, obviously fake subscriber: the sample .eml is the same on every build, and a test
# copy's link works as a link but unsubscribes nobody (list 0 does not exist).
NOBODY_UID = "0" * 32
NO_LIST = 0
# Stands in for a recipient's token in the preview's headers and links.
PREVIEW_TOKEN = "preview"  # noqa: S105 (not a secret: an unsigned stand-in)


def sample_copy(rendered: RenderedIssue, settings: Settings) -> EmailMessage:
    """``newsletter build``'s ``.eml``: a subscriber's message, the same on every build."""
    issue = rendered.issue
    token = make_token(
        settings.secret_key,
        TokenPurpose.UNSUBSCRIBE,
        NOBODY_UID,
        NO_LIST,
        issued_at=int(datetime.combine(issue.date, time()).timestamp()),
    )
    mailing_list = settings.mailing_list(issue.list)
    return _issue_copy(
        rendered, settings, mailing_list, SAMPLE_RECIPIENT, token, date=issue.send_at
    )


def preview_copy(rendered: RenderedIssue, settings: Settings, *, to: str) -> EmailMessage:
    """The message the preview shows: a subscriber's copy with a stand-in unsubscribe token."""
    return _issue_copy(
        rendered, settings, settings.mailing_list(rendered.issue.list), to, PREVIEW_TOKEN
    )


def test_copy(
    content: MessageContent, settings: Settings, mailing_list: MailingList, *, to: str
) -> EmailMessage:
    """A copy for one address (``send --test``, the preview's button), marked as a test.

    Its unsubscribe link is signed for nobody: it opens the page, and unsubscribes no one.
    """
    token = make_token(settings.secret_key, TokenPurpose.UNSUBSCRIBE, NOBODY_UID, NO_LIST)
    return _issue_copy(content, settings, mailing_list, to, token, subject_prefix=TEST_PREFIX)


def _issue_copy(
    content: MessageContent,
    settings: Settings,
    mailing_list: MailingList,
    to: str,
    token: str,
    *,
    date: datetime | None = None,
    subject_prefix: str = "",
) -> EmailMessage:
    return build_email_message(
        content,
        settings,
        mailing_list,
        to=to,
        unsubscribe_url=unsubscribe_url(settings.publication.base_url, token),
        unsubscribe_mailto=unsubscribe_mailto(sender_domain(settings.publication.sender), token),
        date=date,
        subject_prefix=subject_prefix,
        values=stand_in_joins(content, settings),
        placeholders=placeholders(content),
    )


def stand_in_joins(content: MessageContent, settings: Settings) -> dict[str, str]:
    """Join links for a copy that is no subscriber's: signed for nobody and no list, they open
    the join page, which says the link is not valid, and join no one."""
    token = make_token(settings.secret_key, TokenPurpose.JOIN, NOBODY_UID, NO_LIST)
    url = join_url(settings.publication.base_url, token)
    return dict.fromkeys(join_names(content), url)


# --- the double opt-in confirmation ---------------------------------------------------------

CONFIRM_MAX_AGE_DAYS = 7


def build_confirmation(
    settings: Settings,
    templates: Environment,
    *,
    to: str,
    name: str | None,
    link: str,
    lists: Sequence[MailingList],
    date: datetime | None = None,
) -> EmailMessage:
    """The multipart/alternative confirmation message with the signed ``link``.

    Text and HTML come from ``templates/confirm``.
    """
    check_header_value(link, "confirmation link")
    context = {
        "name": name,
        "link": link,
        "lists": list(lists),
        "max_age_days": CONFIRM_MAX_AGE_DAYS,
    }
    text = templates.get_template("confirm/confirm.txt").render(**context)
    body = templates.get_template("confirm/confirm.html").render(**context)
    subject = templates.get_template("confirm/subject.txt").render(**context).strip()
    # a reply to a request, not bulk mail: Auto-Submitted tells autoresponders to stay quiet
    msg = header_block(
        settings,
        to=address(name or "", ascii_address(to)),
        subject=one_line(subject),
        date=date,
        auto_submitted=True,
    )
    msg.set_content(text)
    msg.add_alternative(body, subtype="html")
    return msg


def one_line(text: str) -> str:
    """``text`` fit for a Subject: every run of whitespace, line breaks included, one space."""
    return " ".join(text.split())


# --- reports to the editor ------------------------------------------------------------------

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


def N_(message: str) -> str:
    """Mark ``message`` for the catalog; it is translated where it is used."""
    return message


# why the scheduler skipped an issue, as the report says it
SKIP_REASONS = {"draft": N_("draft"), "stale": N_("stale"), "invalid": N_("invalid")}


def send_report_message(settings: Settings, summary: SendSummary) -> EmailMessage | None:
    """The "sent" report for one issue; None when no ``publication.editor_email`` is set."""
    lang = settings.publication.lang
    _ = translations(lang).gettext

    def n(value: int) -> str:
        return i18n.number(value, lang)

    if summary.error:
        headline = _("Send stopped: %(title)s") % {"title": summary.title}
    elif summary.finished:
        headline = _("Sent: %(title)s") % {"title": summary.title}
    else:
        headline = _("Send in progress: %(title)s") % {"title": summary.title}
    rows = [
        (_("Issue"), summary.slug),
        (_("List"), summary.list_slug),
        (_("Recipients"), n(summary.recipients)),
        (_("Delivered"), n(summary.sent)),
        (_("Failed"), n(summary.failed)),
        (_("Still queued"), n(summary.pending)),
        (_("Started"), summary.started_at.isoformat(timespec="seconds")),
        (_("Duration"), _duration(summary.duration_seconds, _)),
    ]
    width = max(14, *(len(label) + 2 for label, _value in rows))
    lines = [headline, ""]
    lines += [f"{label + ':':<{width}}{value}" for label, value in rows]
    if summary.error:
        lines += [
            "",
            _("The send stopped with an error: %(error)s") % {"error": summary.error},
            _("The ledger keeps its place; the next scheduler run resumes it."),
        ]
    elif not summary.finished:
        lines += ["", _("Some recipients are waiting for a retry; the next run resumes them.")]
    listed = summary.failures[:MAX_FAILURES_LISTED]
    if listed:
        lines += ["", _("Failures:")]
        lines += [f"  {recipient}: {reason}" for recipient, reason in listed]
        if len(summary.failures) > len(listed):
            more = len(summary.failures) - len(listed)
            lines.append("  " + _("... and %(num)s more") % {"num": n(more)})

    body_html = [f"<h1>{_e(headline)}</h1>", "<table>"]
    body_html += [f"<tr><th align='left'>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows]
    body_html.append("</table>")
    if summary.error:
        stopped = _e(_("The send stopped with an error:"))
        resumes = _e(_("The next scheduler run resumes it."))
        body_html.append(f"<p><strong>{stopped}</strong> {_e(summary.error)}<br>{resumes}</p>")
    if listed:
        failures = _e(_("Failures"))
        body_html.append(f"<h2>{failures}</h2><ul>")
        body_html += [f"<li>{_e(r)}: {_e(why)}</li>" for r, why in listed]
        body_html.append("</ul>")
    subject = _("[%(name)s] %(headline)s (%(sent)s delivered, %(failed)s failed)") % {
        "name": settings.publication.name,
        "headline": headline,
        "sent": n(summary.sent),
        "failed": n(summary.failed),
    }
    return _message(settings, subject, "\n".join(lines) + "\n", "\n".join(body_html))


def skipped_message(settings: Settings, skipped: Sequence[Skipped]) -> EmailMessage | None:
    """One email listing the issues a run skipped; None when nothing was skipped or no editor."""
    if not skipped:
        return None
    lang = settings.publication.lang
    translation = translations(lang)
    _ = translation.gettext
    count = len(skipped)
    name = settings.publication.name

    def reason(item: Skipped) -> str:
        return _(SKIP_REASONS[item.reason]) if item.reason in SKIP_REASONS else item.reason

    subject = translation.ngettext(
        "[%(name)s] Not sent: %(num)d issue skipped",
        "[%(name)s] Not sent: %(num)d issues skipped",
        count,
    ) % {"name": name, "num": count}
    if count == 1:
        subject = _("[%(name)s] Not sent (%(reason)s): %(title)s") % {
            "name": name,
            "reason": reason(skipped[0]),
            "title": skipped[0].title or skipped[0].slug,
        }
    intro = translation.ngettext(
        "The scheduler skipped %(num)d issue:", "The scheduler skipped %(num)d issues:", count
    ) % {"num": count}
    text_lines = [intro, ""]
    body_html = [f"<p>{_e(intro)}</p>"]
    for item in skipped:
        due = item.due.isoformat(timespec="minutes")
        where = _("list %(list)s, due %(due)s") % {"list": item.list_slug, "due": due}
        text_lines.append(f"* {item.slug} ({where}): {reason(item)}")
        text_lines += [f"    - {detail}" for detail in item.details]
        text_lines.append("")
        body_html.append(
            f"<h2>{_e(item.title or item.slug)}</h2><p>{_e(item.slug)} &middot; "
            f"{_e(where)} &middot; <strong>{_e(reason(item))}</strong></p>"
        )
        if item.details:
            body_html.append("<ul>" + "".join(f"<li>{_e(d)}</li>" for d in item.details) + "</ul>")
    return _message(settings, subject, "\n".join(text_lines), "\n".join(body_html))


def _message(settings: Settings, subject: str, text: str, body_html: str) -> EmailMessage | None:
    editor = settings.publication.editor_email
    if not editor:
        return None
    # titles come from issue files; a line break there must not reach the header
    msg = header_block(settings, to=editor, subject=one_line(subject), auto_submitted=True)
    msg.set_content(text)
    msg.add_alternative(
        f"<!doctype html><html><body style='font-family:sans-serif'>{body_html}</body></html>",
        subtype="html",
    )
    return msg


def _duration(seconds: float, _: Callable[[str], str]) -> str:
    if seconds < 60:
        return _("%(seconds).1f s") % {"seconds": seconds}
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return _("%(minutes)d min %(seconds)d s") % {"minutes": minutes, "seconds": secs}
    hours, minutes = divmod(minutes, 60)
    return _("%(hours)d h %(minutes)d min") % {"hours": hours, "minutes": minutes}


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)
