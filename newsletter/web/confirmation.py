"""The double opt-in confirmation email: text and HTML from ``templates/confirm``. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from jinja2 import Environment

from newsletter.addresses import address, ascii_address, check_header_value, sender_domain
from newsletter.config import MailingList, Settings

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
    """The multipart/alternative confirmation message with the signed ``link``."""
    check_header_value(link, "confirmation link")
    context = {
        "name": name,
        "link": link,
        "lists": list(lists),
        "max_age_days": CONFIRM_MAX_AGE_DAYS,
    }
    text = templates.get_template("confirm/confirm.txt").render(**context)
    html = templates.get_template("confirm/confirm.html").render(**context)
    subject = templates.get_template("confirm/subject.txt").render(**context).strip()

    msg = EmailMessage()
    msg["From"] = settings.publication.sender
    msg["To"] = address(name or "", ascii_address(to))
    if settings.publication.reply_to:
        msg["Reply-To"] = settings.publication.reply_to
    msg["Subject"] = check_header_value(" ".join(subject.split()), "subject")
    msg["Date"] = format_datetime(date or datetime.now().astimezone())
    msg["Message-ID"] = make_msgid(domain=sender_domain(settings.publication.sender))
    # a reply to a request, not bulk mail: tell autoresponders to stay quiet
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg
