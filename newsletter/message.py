"""Message building: an issue's subject and bodies plus one recipient become RFC 5322 bytes.

Pure: no I/O. :class:`MessageTemplate` is the fast per-recipient path the delivery engine
uses; :func:`build_email_message` is the straightforward stdlib build, used for the sample
``.eml``, the preview and test copies, and as the reference the fast path must match.

The bodies carry *placeholders*, ``%%NAME%%`` markers where a per-recipient value goes (the
unsubscribe link; the reader token of tracked links, docs/analytics.md);
:class:`Personalization` carries their values and both builders fill in the same ones.
"""

from __future__ import annotations

import email.policy
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email import quoprimime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Protocol

from newsletter.addresses import address, check_header_value, sender_domain
from newsletter.config import MailingList, Settings
from newsletter.errors import InvalidAddressError, RenderError
from newsletter.inbound.verp import DELIVERY_HEADER, is_token, verp_address

#: The placeholder every issue copy carries: the recipient's unsubscribe page.
UNSUBSCRIBE_URL = "unsubscribe_url"
#: The placeholders an issue's bodies may carry, by name (``model.PLACEHOLDERS`` are their markers).
ISSUE_PLACEHOLDERS: tuple[str, ...] = (UNSUBSCRIBE_URL,)


def marker(name: str) -> str:
    """The text that stands for placeholder ``name`` in a body: ``%%UNSUBSCRIBE_URL%%``."""
    return f"%%{name.upper()}%%"


class MessageContent(Protocol):
    """What a message is built from: a subject and both bodies, placeholders in place.

    A freshly rendered issue (``model.RenderedIssue``) and the bodies a send recorded when it
    began (``store.issues.IssueBodies``) both are one.
    """

    @property
    def subject(self) -> str: ...

    @property
    def html(self) -> str: ...

    @property
    def text(self) -> str: ...


@dataclass(frozen=True)
class Personalization:
    """What differs between two recipients' copies of one issue."""

    to: str
    unsubscribe_url: str
    unsubscribe_mailto: str
    message_id: str
    # display name for the To header; None or empty gives the bare address
    name: str | None = None
    # the values of the other placeholders, by name (the unsubscribe URL is the field above)
    values: Mapping[str, str] = field(default_factory=dict)
    # the delivery token (inbound.verp): the X-Newsletter-Delivery header and, with
    # ``[bounces] provider``, that relay's metadata header; None leaves both out
    delivery_token: str | None = None

    def value(self, placeholder: str) -> str:
        """The value for ``placeholder``; a missing one is a :class:`RenderError`."""
        if placeholder == UNSUBSCRIBE_URL:
            return self.unsubscribe_url
        try:
            return self.values[placeholder]
        except KeyError:
            raise RenderError(f"no value for the placeholder {marker(placeholder)}") from None


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


_FEEDBACK_FIELD = re.compile(r"[^A-Za-z0-9._-]+")


def feedback_id(settings: Settings, issue_slug: str, list_slug: str) -> str:
    """``Feedback-ID`` in Gmail's form ``issue:list:publication:SenderId``.

    Gmail's feedback loop reports complaint rates per identifier; the sender's domain is the
    SenderId. Each field is cut to what the format allows (no colons, no spaces).
    """
    domain = sender_domain(settings.publication.sender)
    fields = (issue_slug, list_slug, settings.publication.name, domain)
    cleaned = [_FEEDBACK_FIELD.sub("-", value).strip("-")[:60] or "-" for value in fields]
    return ":".join(cleaned)


#: The header each relay's webhooks echo back (its "metadata"); the value carries our token.
def provider_header(provider: str | None, token: str) -> bytes:
    """The header line that makes ``provider``'s webhooks report ``token``; empty without one."""
    if provider == "postmark":
        return b"X-PM-Metadata-newsletter-delivery: " + token.encode("ascii") + b"\r\n"
    if provider == "mailgun":
        return b'X-Mailgun-Variables: {"nl_delivery":"' + token.encode("ascii") + b'"}\r\n'
    if provider == "sendgrid":
        return b'X-SMTPAPI: {"unique_args":{"nl_delivery":"' + token.encode("ascii") + b'"}}\r\n'
    return b""


def delivery_message_id(token: str, domain: str) -> str:
    """The ``Message-ID`` of one delivery: its token, so a provider echoing the id names it.

    The token is the same on every attempt, so a copy repeated after a crash carries the id of
    the first; it is opaque and signed, and shows neither row ids nor the address.
    """
    return f"<{token}@{domain}>"


def list_id(settings: Settings, mailing_list: MailingList) -> str:
    """``List-Id`` (RFC 2919): the list's name and a stable id under the sender's domain."""
    domain = sender_domain(settings.publication.sender)
    name = mailing_list.name.replace('"', "'")
    return f'"{name}" <{mailing_list.slug}.{domain}>'


def header_block(
    settings: Settings,
    *,
    to: str,
    subject: str,
    date: datetime | None = None,
    message_id: str | None = None,
    auto_submitted: bool = False,
) -> EmailMessage:
    """A new message with the headers every email of the publication starts with.

    From, To, Reply-To (when configured), Subject, Date and Message-ID, in that order, and
    ``Auto-Submitted: auto-generated`` for mail no person wrote (confirmations, reports), so
    autoresponders stay quiet. Issue copies, test copies, confirmations and reports all begin
    here; :class:`MessageTemplate` writes the same lines for the bulk path.
    """
    check_header_value(subject, "subject")
    msg = EmailMessage(policy=REFERENCE_POLICY)
    msg["From"] = settings.publication.sender
    msg["To"] = to
    if settings.publication.reply_to:
        msg["Reply-To"] = settings.publication.reply_to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime.now().astimezone())
    msg["Message-ID"] = message_id or make_msgid(domain=sender_domain(settings.publication.sender))
    if auto_submitted:
        msg["Auto-Submitted"] = "auto-generated"
    return msg


def build_email_message(
    content: MessageContent,
    settings: Settings,
    mailing_list: MailingList,
    *,
    to: str,
    unsubscribe_url: str,
    unsubscribe_mailto: str,
    message_id: str | None = None,
    date: datetime | None = None,
    subject_prefix: str = "",
    values: Mapping[str, str] | None = None,
    placeholders: Sequence[str] = ISSUE_PLACEHOLDERS,
    feedback: str | None = None,
    delivery_token: str | None = None,
    provider: str | None = None,
) -> EmailMessage:
    """The complete multipart/alternative message for one recipient, built the plain way.

    ``values`` fill the placeholders other than the unsubscribe URL, as in
    :class:`Personalization`; ``feedback`` is the ``Feedback-ID`` and ``delivery_token`` the
    ``X-Newsletter-Delivery`` value (and ``provider``'s metadata header), as the bulk path
    writes them.
    """
    check_header_value(to, "recipient")
    check_header_value(unsubscribe_url, "unsubscribe URL")
    check_header_value(unsubscribe_mailto, "unsubscribe address")
    person = Personalization(
        to, unsubscribe_url, unsubscribe_mailto, message_id or "", values=values or {}
    )
    msg = header_block(
        settings, to=to, subject=subject_prefix + content.subject, date=date, message_id=message_id
    )
    if feedback:
        msg["Feedback-ID"] = check_header_value(feedback, "Feedback-ID")
    if delivery_token:
        msg[DELIVERY_HEADER] = check_header_value(delivery_token, "delivery token")
        extra = provider_header(provider, delivery_token)
        if extra:
            name, _, value = extra.decode("ascii").partition(": ")
            msg[name] = value.strip()
    msg["List-Id"] = list_id(settings, mailing_list)
    msg["List-Unsubscribe"] = f"<{unsubscribe_url}>, <{unsubscribe_mailto}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(_fill(content.text, person, placeholders))
    msg.add_alternative(_fill(content.html, person, placeholders), subtype="html")
    return msg


def _fill(body: str, person: Personalization, placeholders: Sequence[str]) -> str:
    for name in placeholders:
        mark = marker(name)
        if mark in body:
            body = body.replace(mark, _checked_value(person.value(name), name))
    return body


# values go into the HTML and the text as they are: a URL may not carry what would end an
# attribute or open a tag, nor a line break
_UNSAFE_VALUE = re.compile(r'[\x00-\x1f\x7f"<>]')


def _checked_value(value: str, name: str) -> str:
    if _UNSAFE_VALUE.search(value):
        raise InvalidAddressError(
            value, f"{marker(name)} value has a quote, <, > or control character"
        )
    return value


# --- fast per-recipient path ---------------------------------------------------------------

_SMTP_POLICY = email.policy.SMTP
# characters a URL may carry into a quoted-printable body unescaped ("=" is the QP escape)
_QP_SAFE_URL = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;%]*")
_ASCII_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]+@[A-Za-z0-9.\-]+")
# a display name that can go into a quoted-string as it is (printable ASCII, not too long)
_PLAIN_NAME = re.compile(r"[ -~]{1,60}")
_QP_LINE = 75


@dataclass(frozen=True)
class MessageParts:
    """One recipient's message as ordered byte pieces, for consumers that work piecewise.

    ``headers`` are complete header lines (folded, CRLF-terminated) in order; ``body`` the
    pieces after the blank line. Static body pieces are the template's own ``bytes`` objects,
    shared by every recipient (``MessageTemplate.body_slots`` says which are which), so work on
    them (a DKIM body hash, say) can be done once per issue.
    """

    headers: list[bytes]
    body: list[bytes]

    def join(self) -> bytes:
        return b"".join(self.headers) + b"\r\n" + b"".join(self.body)


#: The header lines of an issue copy that differ per recipient (lower case): the rest are the
#: same in every copy, so a DKIM template canonicalises them once per issue. The relays'
#: metadata headers (``provider_header``) are per recipient too, and never signed.
PERSONAL_HEADERS: frozenset[str] = frozenset(
    {
        "to",
        "date",
        "message-id",
        DELIVERY_HEADER.lower(),
        "list-unsubscribe",
        "x-pm-metadata-newsletter-delivery",
        "x-mailgun-variables",
        "x-smtpapi",
    }
)


@dataclass(frozen=True)
class Signable:
    """One recipient's copy of an issue, for DKIM (:meth:`MessageTemplate.signable`)."""

    # the whole message with leading dots doubled: goes after DATA as it is, signature first
    data: bytes
    # its header lines in order, (name, raw folded line with CRLF), before any dot doubling
    headers: tuple[tuple[str, bytes], ...]
    # the placeholders' values as they stand in the QP bodies, before any dot doubling
    values: Mapping[str, bytes]


class MessageTemplate:
    """One issue as precomputed, already-encoded pieces; :meth:`render` splices a recipient in.

    Built once per issue: headers are folded and RFC 2047-encoded by the stdlib here, and both
    bodies are quoted-printable encoded in segments that end with a soft line break exactly
    where a placeholder goes. Per recipient only the To, Date, Message-ID and List-Unsubscribe
    lines and the (ASCII) placeholder values are encoded, so a message costs a bytes join.
    The result parses to the same message as :func:`build_email_message`; a test holds it to
    that.
    """

    def __init__(
        self,
        content: MessageContent,
        settings: Settings,
        mailing_list: MailingList,
        *,
        subject_prefix: str = "",
        boundary: str | None = None,
        placeholders: Sequence[str] = ISSUE_PLACEHOLDERS,
        feedback: str | None = None,
        provider: str | None = None,
    ) -> None:
        self.settings = settings
        self.provider = provider
        self._feedback = _fold("Feedback-ID", feedback) if feedback else b""
        self.mailing_list = mailing_list
        self.subject_prefix = subject_prefix
        # "=_" never occurs in quoted-printable output, so the boundary cannot clash with a body
        self.boundary = boundary or "=_nl_" + secrets.token_hex(12)
        self._from = _fold("From", settings.publication.sender)
        reply_to = settings.publication.reply_to
        self._reply_to = _fold("Reply-To", reply_to) if reply_to else b""
        self._subject = _fold("Subject", subject_prefix + content.subject)
        self._list_id = _fold("List-Id", list_id(settings, mailing_list))
        self._tail_lines = (
            ("List-Unsubscribe-Post", b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"),
            ("MIME-Version", b"MIME-Version: 1.0\r\n"),
            (
                "Content-Type",
                b'Content-Type: multipart/alternative; boundary="'
                + self.boundary.encode("ascii")
                + b'"\r\n',
            ),
        )
        delimiter = b"--" + self.boundary.encode("ascii") + b"\r\n"
        part_head = (
            b'Content-Type: text/%s; charset="utf-8"\r\n'
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        )
        text_head = delimiter + part_head % b"plain"
        html_head = b"\r\n" + delimiter + part_head % b"html"
        end = b"\r\n--" + self.boundary.encode("ascii") + b"--\r\n"
        text = _qp_segments(content.text, placeholders)
        html = _qp_segments(content.html, placeholders)
        # the body as static pieces and placeholder names, once plain and once with SMTP's
        # leading-dot doubling done (for the DATA fast path); every piece starts a line
        layout: list[bytes | str] = [text_head, *text, html_head, *html, end]
        self.body_slots: tuple[str | None, ...] = tuple(
            None if isinstance(item, bytes) else item for item in layout
        )
        self._body = [item if isinstance(item, bytes) else b"" for item in layout]
        self._body_stuffed = [_dot_stuff(piece) for piece in self._body]
        self._slots = [(i, name) for i, name in enumerate(self.body_slots) if name is not None]
        self._names = tuple(dict.fromkeys(name for _, name in self._slots))
        self._date_second = -1
        self._date_line = b""

    @property
    def names(self) -> tuple[str, ...]:
        """The placeholders the bodies actually carry (each recipient needs a value for them)."""
        return self._names

    def render(
        self, person: Personalization, *, date: datetime | None = None, dot_stuffed: bool = False
    ) -> bytes:
        """The complete message for one recipient, as CRLF bytes.

        With ``dot_stuffed`` lines starting with "." have it doubled (RFC 5321 section
        4.5.2), so the bytes go after DATA as they are (see ``SmtpPool.send(prepared=...)``).
        """
        headers, body = self._pieces(person, date, dot_stuffed)
        headers.append(b"\r\n")
        headers += body
        return b"".join(headers)

    def parts(
        self, person: Personalization, *, date: datetime | None = None, dot_stuffed: bool = False
    ) -> MessageParts:
        """What :meth:`render` joins: header lines and body pieces (:class:`MessageParts`)."""
        headers, body = self._pieces(person, date, dot_stuffed)
        return MessageParts(headers, body)

    def signable(self, person: Personalization, *, date: datetime | None = None) -> Signable:
        """One recipient's message for DKIM: ready for DATA, and as the pieces the signer
        hashes (:class:`Signable`)."""
        named = self._named_headers(person, date)
        encoded = self._encoded(person)
        body = list(self._body_stuffed)
        for index, name in self._slots:
            body[index] = _dot_stuff(encoded[name])
        headers = [line for _, line in named]
        headers.append(b"\r\n")
        headers += body
        return Signable(b"".join(headers), tuple(named), encoded)

    def signing_layout(
        self, headers: Sequence[tuple[str, bytes]]
    ) -> tuple[list[tuple[str, bytes | None]], list[bytes | str]]:
        """The message as the signer's template sees it, for a recipient whose header lines
        are ``headers`` (:attr:`Signable.headers`): the header lines the same for everyone as
        bytes and the per-recipient ones (:data:`PERSONAL_HEADERS`) as None, then the body's
        static pieces as bytes and its placeholders by name."""
        layout = [
            (name, None if name.lower() in PERSONAL_HEADERS else line) for name, line in headers
        ]
        body = [
            piece if name is None else name
            for piece, name in zip(self._body, self.body_slots, strict=True)
        ]
        return layout, body

    def _pieces(
        self, person: Personalization, date: datetime | None, dot_stuffed: bool
    ) -> tuple[list[bytes], list[bytes]]:
        headers = [line for _, line in self._named_headers(person, date)]
        body = list(self._body_stuffed if dot_stuffed else self._body)
        if self._slots:
            encoded = self._encoded(person)
            if dot_stuffed:
                encoded = {name: _dot_stuff(value) for name, value in encoded.items()}
            for index, name in self._slots:
                body[index] = encoded[name]
        return headers, body

    def _encoded(self, person: Personalization) -> dict[str, bytes]:
        return {name: _qp_value(person.value(name), name) for name in self._names}

    def _named_headers(
        self, person: Personalization, date: datetime | None
    ) -> list[tuple[str, bytes]]:
        check_header_value(person.unsubscribe_url, "unsubscribe URL")
        check_header_value(person.unsubscribe_mailto, "unsubscribe mailto")
        check_header_value(person.message_id, "Message-ID")
        headers = [
            ("From", self._from),
            ("To", self._to_line(person.to, person.name)),
            ("Reply-To", self._reply_to),
            ("Subject", self._subject),
            ("Date", self._date(date)),
            ("Message-ID", b"Message-ID: " + person.message_id.encode("ascii") + b"\r\n"),
            ("Feedback-ID", self._feedback),
            *self._delivery(person.delivery_token),
            ("List-Id", self._list_id),
            (
                "List-Unsubscribe",
                _list_unsubscribe(person.unsubscribe_url, person.unsubscribe_mailto),
            ),
            *self._tail_lines,
        ]
        return [(name, line) for name, line in headers if line]

    def _delivery(self, token: str | None) -> list[tuple[str, bytes]]:
        if not token:
            return []
        if not is_token(token):
            raise InvalidAddressError(token, "not a delivery token")
        line = DELIVERY_HEADER.encode("ascii") + b": " + token.encode("ascii") + b"\r\n"
        extra = provider_header(self.provider, token)
        if not extra:
            return [(DELIVERY_HEADER, line)]
        return [(DELIVERY_HEADER, line), (extra.partition(b":")[0].decode("ascii"), extra)]

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


def _qp_segments(body: str, placeholders: Sequence[str]) -> list[bytes | str]:
    """``body`` QP-encoded in pieces split at its placeholders, with the placeholder names.

    Line endings are normalised and a final newline added, as ``set_content`` does. Every piece
    followed by a placeholder ends in a soft line break (or a hard one that was in the text),
    so a value always starts a fresh encoded line; the piece after a value starts with the
    soft break that leads back into the text.
    """
    normalised = "\n".join(body.splitlines()) + "\n"
    marks = {marker(name): name for name in placeholders}
    found = [m for m in marks if m in normalised]
    pieces = [normalised]
    if found:
        pieces = re.split("(" + "|".join(map(re.escape, found)) + ")", normalised)
    out: list[bytes | str] = []
    for index in range(0, len(pieces), 2):
        piece = pieces[index]
        encoded = _qp_encode(piece) if piece else b""
        last = index == len(pieces) - 1
        if last:
            if not encoded.endswith(b"\r\n"):
                encoded += b"\r\n"
        elif encoded and not encoded.endswith(b"\r\n"):
            encoded += b"=\r\n"
        if index:
            encoded = b"=\r\n" + encoded
        out.append(encoded)
        if not last:
            out.append(marks[pieces[index + 1]])
    return out


def _qp_value(value: str, name: str) -> bytes:
    """A placeholder value as it goes into a QP body: on lines of its own, soft-wrapped."""
    if _QP_SAFE_URL.fullmatch(value) and value.isascii():
        # no "=" and nothing non-ASCII: the URL is its own QP encoding once wrapped
        return b"=\r\n".join(
            value[i : i + _QP_LINE].encode("ascii") for i in range(0, len(value), _QP_LINE)
        )
    return _qp_encode(_checked_value(value, name))


def _dot_stuff(piece: bytes) -> bytes:
    # every piece starts at the beginning of a line and ends with CRLF or is followed by one
    stuffed = piece.replace(b"\r\n.", b"\r\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


def envelope_sender(settings: Settings, token: str | None = None) -> str:
    """MAIL FROM: ``<prefix>+<token>@<bounce domain>`` (VERP) when a bounce domain is set
    (``[bounces] domain`` or ``smtp.return_path``), else the From address."""
    domain = settings.bounce_domain
    if domain is None:
        return parseaddr(settings.publication.sender)[1]
    if token is None:
        return f"{settings.bounce_prefix}@{domain}"
    return verp_address(token, domain, prefix=settings.bounce_prefix)
