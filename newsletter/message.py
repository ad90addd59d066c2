"""Message building: a rendered issue plus one recipient becomes RFC 5322 bytes.

Pure: no I/O. :func:`build_email_message` is the straightforward stdlib build, used for
``newsletter build``'s sample ``.eml`` and as the reference that the fast per-recipient path in
delivery must match.
"""

from __future__ import annotations

from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from newsletter.config import MailingList, Settings
from newsletter.errors import InvalidAddressError
from newsletter.model import UNSUBSCRIBE_URL_PLACEHOLDER, RenderedIssue


def check_header_value(value: str, what: str) -> str:
    """Refuse CR, LF and NUL in anything bound for a header (header injection)."""
    if any(ch in value for ch in "\r\n\x00"):
        raise InvalidAddressError(value, f"{what} contains a line break or NUL")
    return value


def list_id(settings: Settings, mailing_list: MailingList) -> str:
    """``List-Id`` (RFC 2919): the list's name and a stable id under the sender's domain."""
    domain = parseaddr(settings.publication.sender)[1].rpartition("@")[2] or "localhost"
    name = mailing_list.name.replace('"', "'")
    return f'"{name}" <{mailing_list.slug}.{domain}>'


def sender_domain(settings: Settings) -> str:
    return parseaddr(settings.publication.sender)[1].rpartition("@")[2] or "localhost"


def build_email_message(
    rendered: RenderedIssue,
    settings: Settings,
    mailing_list: MailingList,
    *,
    to: str,
    unsubscribe_url: str,
    unsubscribe_mailto: str,
    message_id: str | None = None,
    date: datetime | None = None,
    subject_prefix: str = "",
) -> EmailMessage:
    """The complete multipart/alternative message for one recipient, built the plain way."""
    check_header_value(to, "recipient")
    check_header_value(unsubscribe_url, "unsubscribe URL")
    msg = EmailMessage()
    msg["From"] = settings.publication.sender
    msg["To"] = to
    if settings.publication.reply_to:
        msg["Reply-To"] = settings.publication.reply_to
    msg["Subject"] = subject_prefix + rendered.subject
    msg["Date"] = format_datetime(date or datetime.now().astimezone())
    msg["Message-ID"] = message_id or make_msgid(domain=sender_domain(settings))
    msg["List-Id"] = list_id(settings, mailing_list)
    msg["List-Unsubscribe"] = f"<{unsubscribe_url}>, <{unsubscribe_mailto}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(rendered.text.replace(UNSUBSCRIBE_URL_PLACEHOLDER, unsubscribe_url))
    msg.add_alternative(
        rendered.html.replace(UNSUBSCRIBE_URL_PLACEHOLDER, unsubscribe_url), subtype="html"
    )
    return msg


def address(display_name: str, addr: str) -> str:
    """A safely quoted ``Name <addr>``; CR/LF in either part is refused."""
    check_header_value(display_name, "display name")
    check_header_value(addr, "address")
    local, _, domain = addr.rpartition("@")
    return str(Address(display_name=display_name, username=local, domain=domain))
