"""Message building: a rendered issue plus one recipient becomes RFC 5322 bytes.

Pure: no I/O. :func:`build_email_message` is the straightforward stdlib build, used for
``newsletter build``'s sample ``.eml`` and as the reference that the fast per-recipient path in
delivery must match.
"""

from __future__ import annotations

import email.policy
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email import quoprimime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from newsletter.addresses import address, check_header_value, sender_domain
from newsletter.config import MailingList, Settings
from newsletter.model import UNSUBSCRIBE_URL_PLACEHOLDER, RenderedIssue


class _ListHeaderPolicy(email.policy.EmailPolicy):
    """The stdlib policy, except that ``List-Unsubscribe`` is written as it is.

    The stdlib folds at 78 columns and turns a URL longer than that into RFC 2047 encoded-words,
    which mail clients (and RFC 8058 one-click) do not decode in that header. Written raw and
    folded only at the comma between the two URLs, it matches what the fast path sends.
    """

    def fold(self, name: str, value: str) -> str:
        if name.lower() == "list-unsubscribe" and value.isascii():
            return _raw_list_unsubscribe(name, str(value), self.linesep)
        return str(super().fold(name, value))

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() == "list-unsubscribe" and value.isascii():
            return _raw_list_unsubscribe(name, str(value), self.linesep).encode("ascii")
        return super().fold_binary(name, value)


def _raw_list_unsubscribe(name: str, value: str, linesep: str) -> str:
    return f"{name}: " + f",{linesep} ".join(u.strip() for u in value.split(",")) + linesep


#: Policy of messages built by :func:`build_email_message`; ``.as_bytes()`` is then correct.
REFERENCE_POLICY = _ListHeaderPolicy()


def stable_message_id(secret: bytes, issue_id: int, subscriber_uid: str, domain: str) -> str:
    """The same ``Message-ID`` for every attempt at one recipient's copy of one issue.

    A copy repeated after a crash then carries the id of the first, so receiving systems can
    tell it is the same message. Keyed and opaque: it shows neither row ids nor the uid.
    """
    digest = hashlib.blake2b(
        f"{issue_id}:{subscriber_uid}".encode("ascii"), key=secret[:64], digest_size=16
    ).hexdigest()
    return f"<{digest}@{domain}>"


def list_id(settings: Settings, mailing_list: MailingList) -> str:
    """``List-Id`` (RFC 2919): the list's name and a stable id under the sender's domain."""
    domain = sender_domain(settings.publication.sender)
    name = mailing_list.name.replace('"', "'")
    return f'"{name}" <{mailing_list.slug}.{domain}>'


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
    check_header_value(unsubscribe_mailto, "unsubscribe address")
    msg = EmailMessage(policy=REFERENCE_POLICY)
    msg["From"] = settings.publication.sender
    msg["To"] = to
    if settings.publication.reply_to:
        msg["Reply-To"] = settings.publication.reply_to
    msg["Subject"] = subject_prefix + rendered.subject
    msg["Date"] = format_datetime(date or datetime.now().astimezone())
    msg["Message-ID"] = message_id or make_msgid(domain=sender_domain(settings.publication.sender))
    msg["List-Id"] = list_id(settings, mailing_list)
    msg["List-Unsubscribe"] = f"<{unsubscribe_url}>, <{unsubscribe_mailto}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(rendered.text.replace(UNSUBSCRIBE_URL_PLACEHOLDER, unsubscribe_url))
    msg.add_alternative(
        rendered.html.replace(UNSUBSCRIBE_URL_PLACEHOLDER, unsubscribe_url), subtype="html"
    )
    return msg


# --- fast per-recipient path ---------------------------------------------------------------

_SMTP_POLICY = email.policy.SMTP
# characters a URL may carry into a quoted-printable body unescaped ("=" is the QP escape)
_QP_SAFE_URL = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;%]*")
_ASCII_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]+@[A-Za-z0-9.\-]+")
# a display name that can go into a quoted-string as it is (printable ASCII, not too long)
_PLAIN_NAME = re.compile(r"[ -~]{1,60}")
_QP_LINE = 75


@dataclass(frozen=True)
class Personalization:
    """What differs between two recipients' copies of one issue."""

    to: str
    unsubscribe_url: str
    unsubscribe_mailto: str
    message_id: str
    # display name for the To header; None or empty gives the bare address
    name: str | None = None


class MessageTemplate:
    """One issue as precomputed, already-encoded pieces; :meth:`render` splices a recipient in.

    Built once per issue: headers are folded and RFC 2047-encoded by the stdlib here, and both
    bodies are quoted-printable encoded in segments that end with a soft line break exactly
    where the unsubscribe URL goes. Per recipient only the To, Date, Message-ID and
    List-Unsubscribe lines and the (ASCII) URL are encoded, so a message costs a bytes join.
    The result parses to the same message as :func:`build_email_message`; a test holds it to
    that.
    """

    def __init__(
        self,
        rendered: RenderedIssue,
        settings: Settings,
        mailing_list: MailingList,
        *,
        subject_prefix: str = "",
        boundary: str | None = None,
    ) -> None:
        self.rendered = rendered
        self.settings = settings
        self.mailing_list = mailing_list
        self.subject_prefix = subject_prefix
        # "=_" never occurs in quoted-printable output, so the boundary cannot clash with a body
        self.boundary = boundary or "=_nl_" + secrets.token_hex(12)
        self._from = _fold("From", settings.publication.sender)
        reply_to = settings.publication.reply_to
        self._reply_to = _fold("Reply-To", reply_to) if reply_to else b""
        self._subject = _fold("Subject", subject_prefix + rendered.subject)
        self._list_id = _fold("List-Id", list_id(settings, mailing_list))
        self._tail = (
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
            b"MIME-Version: 1.0\r\n"
            b'Content-Type: multipart/alternative; boundary="'
            + self.boundary.encode("ascii")
            + b'"\r\n\r\n'
        )
        delimiter = b"--" + self.boundary.encode("ascii") + b"\r\n"
        part_head = (
            b'Content-Type: text/%s; charset="utf-8"\r\n'
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        )
        self._text = _qp_segments(rendered.text)
        self._html = _qp_segments(rendered.html)
        # the same segments with SMTP's leading-dot doubling done once, for the DATA fast path
        self._text_stuffed = [_dot_stuff(p) for p in self._text]
        self._html_stuffed = [_dot_stuff(p) for p in self._html]
        self._text_head = delimiter + part_head % b"plain"
        self._html_head = b"\r\n" + delimiter + part_head % b"html"
        self._end = b"\r\n--" + self.boundary.encode("ascii") + b"--\r\n"
        self._date_second = -1
        self._date_line = b""

    def render(
        self, person: Personalization, *, date: datetime | None = None, dot_stuffed: bool = False
    ) -> bytes:
        """The complete message for one recipient, as CRLF bytes.

        With ``dot_stuffed`` lines starting with "." have it doubled (RFC 5321 section
        4.5.2), so the bytes go after DATA as they are (see ``SmtpPool.send(prepared=...)``).
        """
        check_header_value(person.unsubscribe_url, "unsubscribe URL")
        check_header_value(person.unsubscribe_mailto, "unsubscribe mailto")
        check_header_value(person.message_id, "Message-ID")
        url = person.unsubscribe_url
        if _QP_SAFE_URL.fullmatch(url) and url.isascii():
            # no "=" and nothing non-ASCII: the URL is its own QP encoding once wrapped
            url_qp = b"=\r\n".join(
                url[i : i + _QP_LINE].encode("ascii") for i in range(0, len(url), _QP_LINE)
            )
        else:
            url_qp = _qp_encode(url)
        parts = [
            self._from,
            self._to_line(person.to, person.name),
            self._reply_to,
            self._subject,
            self._date(date),
            b"Message-ID: " + person.message_id.encode("ascii") + b"\r\n",
            self._list_id,
            _list_unsubscribe(person.unsubscribe_url, person.unsubscribe_mailto),
            self._tail,
            self._text_head,
        ]
        text, html = self._text, self._html
        if dot_stuffed:
            text, html, url_qp = self._text_stuffed, self._html_stuffed, _dot_stuff(url_qp)
        _splice(parts, text, url_qp)
        parts.append(self._html_head)
        _splice(parts, html, url_qp)
        parts.append(self._end)
        return b"".join(parts)

    def _to_line(self, to: str, name: str | None) -> bytes:
        check_header_value(to, "recipient")
        if not _ASCII_ADDRESS.fullmatch(to):
            # anything unusual takes the stdlib's encoder (rare, and still correct)
            return _fold("To", address(name, to) if name else to)
        if not name:
            return b"To: " + to.encode("ascii") + b"\r\n"
        check_header_value(name, "display name")
        if _PLAIN_NAME.fullmatch(name):
            quoted = name.replace("\\", "\\\\").replace('"', '\\"')
            return f'To: "{quoted}" <{to}>\r\n'.encode("ascii")
        return _fold("To", address(name, to))

    def _date(self, date: datetime | None) -> bytes:
        when = date or datetime.now().astimezone()
        second = int(when.timestamp())
        if date is not None or second != self._date_second:
            self._date_line = _fold("Date", format_datetime(when))
            self._date_second = -1 if date is not None else second
        return self._date_line


def _fold(name: str, value: str) -> bytes:
    """One header line, folded and encoded the way the stdlib's SMTP policy does it."""
    check_header_value(value, name)
    msg = EmailMessage(policy=_SMTP_POLICY)
    msg[name] = value
    return _SMTP_POLICY.fold_binary(name, msg[name])


def _list_unsubscribe(url: str, mailto: str) -> bytes:
    line = f"List-Unsubscribe: <{url}>,\r\n <{mailto}>\r\n"
    if not line.isascii():
        # an internationalised base URL: let the stdlib encode it
        return _fold("List-Unsubscribe", f"<{url}>, <{mailto}>")
    return line.encode("ascii")


def _qp_encode(value: str) -> bytes:
    encoded = quoprimime.body_encode(value.encode("utf-8").decode("latin-1"), _QP_LINE, "\r\n")
    return encoded.encode("ascii")


def _qp_segments(body: str) -> list[bytes]:
    """``body`` QP-encoded in pieces split at the unsubscribe placeholder.

    Line endings are normalised and a final newline added, as ``set_content`` does. Every piece
    but the last ends in a soft line break (or a hard one that was in the text), so the URL
    always starts a fresh encoded line and is followed by a soft break back into the text.
    """
    normalised = "\n".join(body.splitlines()) + "\n"
    pieces = normalised.split(UNSUBSCRIBE_URL_PLACEHOLDER)
    out = []
    for index, piece in enumerate(pieces):
        encoded = _qp_encode(piece) if piece else b""
        last = index == len(pieces) - 1
        if last:
            if not encoded.endswith(b"\r\n"):
                encoded += b"\r\n"
        elif encoded and not encoded.endswith(b"\r\n"):
            encoded += b"=\r\n"
        out.append(encoded)
    return out


def _dot_stuff(piece: bytes) -> bytes:
    # every piece starts at the beginning of a line and ends with CRLF or is followed by one
    stuffed = piece.replace(b"\r\n.", b"\r\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


def _splice(parts: list[bytes], segments: list[bytes], url_qp: bytes) -> None:
    parts.append(segments[0])
    for segment in segments[1:]:
        parts.append(url_qp)
        parts.append(b"=\r\n")
        parts.append(segment)


def envelope_sender(settings: Settings, recipient: str) -> str:
    """MAIL FROM: the VERP ``return_path`` template filled for ``recipient``, else the From."""
    template = settings.smtp.return_path
    if not template:
        return parseaddr(settings.publication.sender)[1]
    local, _, domain = recipient.rpartition("@")
    return template.format(local=local, domain=domain)
