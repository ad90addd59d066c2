"""What one inbound message is: bounce, delay, complaint, auto-reply, unsubscribe or unknown.

:func:`parse_report` takes the bytes of a whole message (and, when known, the envelope
recipient it arrived for) and returns a :class:`~newsletter.inbound.model.Report`. It is pure:
no I/O, no clock, no configuration, and it never raises, whatever the bytes; work is bounded
by the caps in :mod:`newsletter.inbound.mime` (and those of ``nonstandard``), so it is linear in
the input and capped, however the input was crafted.

In order:

1. RFC 5965 feedback report (``message/feedback-report``): COMPLAINT, or FEEDBACK for
   ``not-spam``/``auth-failure``.
2. RFC 3464 DSN (``message/delivery-status``): BOUNCE if any recipient failed (HARD or SOFT
   by status code), else DELAY if any is delayed, else DELIVERED.
3. RFC 8098 disposition notification: AUTO_REPLY (read receipt).
4. ``unsubscribe <token>`` in the Subject: UNSUBSCRIBE.
5. Auto-reply headers on a message that is not from a mailer daemon: AUTO_REPLY.
6. ``flufl.bounce``'s detectors for non-standard bounces: BOUNCE (permanent) or DELAY.
7. An auto-reply Subject: AUTO_REPLY. Anything else: UNKNOWN.

**The rule the intake enforces.** A report is a claim by a stranger: anyone can write a DSN
or a complaint naming any address. Nothing is suppressed, unsubscribed or marked bounced
because a report *names* an address. Only a delivery token that verifies under our key
(:meth:`Report.deliveries`) links a report to a message we sent, and the intake acts on the
ledger row the token names and on nothing else; a report without one is stored for review.
For a bounce the row's address must also be among the recipients the report names (as final
or original recipient), or the report be about one recipient only; a complaint may have its
recipient redacted, the token is enough. An UNSUBSCRIBE acts on the signed token of
:mod:`newsletter.tokens` in its Subject, never on its From address.
"""

from __future__ import annotations

import hashlib
import re
from email.message import Message
from email.utils import parseaddr

from newsletter.inbound import autoreply, dsn, feedback, mime, nonstandard, origin
from newsletter.inbound.model import (
    Action,
    AutoReplyKind,
    Detector,
    FeedbackType,
    OriginalMessage,
    Recipient,
    Report,
    ReportKind,
    Severity,
    TokenSource,
)

__all__ = ["parse_report", "unsubscribe_token"]

# "unsubscribe <token>" behind any "Re:"/"AW:" or client prefix; tokens are base64url
_UNSUBSCRIBE = re.compile(r"\bunsubscribe\s+([A-Za-z0-9_-]{16,128})(?![A-Za-z0-9_-])", re.I)


def unsubscribe_token(subject: str) -> str | None:
    """The token of an ``unsubscribe <token>`` Subject, or None."""
    match = _UNSUBSCRIBE.search(subject[: mime.MAX_HEADER_CHARS])
    return match.group(1) if match else None


def parse_report(data: bytes, *, envelope_recipient: str | None = None) -> Report:
    """The verdict on one inbound message; never raises, whatever ``data`` holds."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        return _Reading(data, envelope_recipient, digest).report()
    except Exception as exc:
        # hostile input must become "unknown", never a crash of the intake
        return Report(
            kind=ReportKind.UNKNOWN,
            detector=Detector.NONE,
            digest=digest,
            problems=(f"unreadable: {type(exc).__name__}",),
        )


class _Reading:
    """One message being read; the steps share what earlier ones found."""

    def __init__(self, data: bytes, envelope_recipient: str | None, digest: str) -> None:
        self.digest = digest
        self.message, self.problems = mime.parse_message(data)
        self.parts = mime.walk(self.message)
        self.problems.extend(f"MIME defect: {name}" for name in mime.defects(self.parts)[:8])
        self.finder = origin.Finder()
        envelope = mime.clean(envelope_recipient) if envelope_recipient else None
        origin.report_headers(self.message, envelope, self.finder)
        self.subject = mime.decoded_header(self.message, "subject") or ""
        returned = origin.find_original(self.parts)
        self.original: OriginalMessage | None = (
            origin.original_message(returned, self.finder) if returned is not None else None
        )

    def report(self) -> Report:
        message = self.message
        part = feedback.find_feedback_part(self.parts)
        if part is not None or mime.param(message, "report-type") == "feedback-report":
            return self._feedback(part)
        part = dsn.find_status_part(self.parts)
        if part is not None:
            found = self._dsn(part)
            if found is not None:
                return found
        if autoreply.mdn_part(self.parts) is not None:
            self._look_in_text()
            return self._make(
                ReportKind.AUTO_REPLY, Detector.MDN, auto_reply=AutoReplyKind.READ_RECEIPT
            )
        token = unsubscribe_token(self.subject)
        if token is not None and autoreply.auto_submitted(message) != "auto-replied":
            return self._make(ReportKind.UNSUBSCRIBE, Detector.SUBJECT, unsubscribe_token=token)
        daemon = autoreply.is_from_daemon(message) or bool(
            mime.header(message, "x-failed-recipients")
        )
        if not daemon:
            by_headers = autoreply.by_headers(message, self.subject)
            if by_headers is not None:
                kind, detector = by_headers
                self._look_in_text()
                return self._make(ReportKind.AUTO_REPLY, detector, auto_reply=kind)
        found = self._nonstandard()
        if found is not None:
            return found
        if not daemon:
            said = autoreply.kind_by_subject(self.subject)
            if said is not None:
                self._look_in_text()
                return self._make(ReportKind.AUTO_REPLY, Detector.SUBJECT, auto_reply=said)
        self._look_in_text()
        return self._make(ReportKind.UNKNOWN, Detector.NONE)

    # --- the steps -------------------------------------------------------------------------

    def _feedback(self, part: Message | None) -> Report:
        read = feedback.read_feedback(part) if part is not None else feedback.FeedbackFields()
        values = read.fields
        if part is None:
            self.problems.append("feedback report without a message/feedback-report part")
        elif read.feedback_type is None:
            self.problems.append(
                f"unknown Feedback-Type {read.unknown_type!r}"
                if read.unknown_type
                else "no Feedback-Type"
            )
        self.finder.address(values.get("original-mail-from"), TokenSource.ORIGINAL_MAIL_FROM)
        if self.original is None:
            self._look_in_text()
        to = self.original.to if self.original is not None else None
        recipient = feedback.reported_recipient(values, to)
        kind = (
            ReportKind.FEEDBACK
            if read.feedback_type in (FeedbackType.NOT_SPAM, FeedbackType.AUTH_FAILURE)
            else ReportKind.COMPLAINT
        )
        reporter = values.get("user-agent") or dsn.typed_value(values.get("reporting-mta"))
        return self._make(
            kind,
            Detector.ARF,
            recipients=(Recipient(address=recipient),) if recipient else (),
            feedback_type=read.feedback_type,
            recipient_redacted=recipient is None,
            reporter=reporter or self._from_domain(),
        )

    def _dsn(self, part: Message) -> Report | None:
        status = dsn.read_status(part)
        per_message = status.per_message
        self.finder.bare(per_message.get("original-envelope-id"), TokenSource.ORIGINAL_ENVELOPE_ID)
        self.finder.address(per_message.get("x-postfix-sender"), TokenSource.DSN_SENDER)
        if status.skipped:
            self.problems.append(f"{status.skipped} recipient block(s) without address or Action")
        recipients = tuple(status.recipients)
        if not recipients:
            self.problems.append("delivery-status part names no recipient")
            return None
        if self.original is None:
            self._look_in_text()
        actions = {r.action for r in recipients}
        severity: Severity | None = None
        if Action.FAILED in actions:
            kind = ReportKind.BOUNCE
            hard = any(r.severity is Severity.HARD for r in recipients)
            severity = Severity.HARD if hard else Severity.SOFT
        elif Action.DELAYED in actions:
            kind, severity = ReportKind.DELAY, Severity.SOFT
        else:
            kind = ReportKind.DELIVERED
        return self._make(
            kind,
            Detector.DSN,
            severity=severity,
            recipients=recipients,
            reporter=dsn.typed_value(per_message.get("reporting-mta")) or self._from_domain(),
        )

    def _nonstandard(self) -> Report | None:
        temporary, permanent = nonstandard.failures(self.message)
        if not temporary and not permanent:
            return None
        recipients = [
            Recipient(address=a, action=Action.FAILED, severity=Severity.HARD)
            for a in sorted(permanent)
        ]
        recipients += [
            Recipient(address=a, action=Action.DELAYED, severity=Severity.SOFT)
            for a in sorted(temporary - permanent)
        ]
        if self.original is None:
            self._look_in_text()
        kind = ReportKind.BOUNCE if permanent else ReportKind.DELAY
        return self._make(
            kind,
            Detector.FLUFL,
            severity=Severity.HARD if permanent else Severity.SOFT,
            recipients=tuple(recipients),
            reporter=self._from_domain(),
        )

    # --- helpers ---------------------------------------------------------------------------

    def _look_in_text(self) -> None:
        """Search the text parts for tokens and an inline original's headers."""
        budget = mime.MAX_TEXT_CHARS
        for part in self.parts:
            if budget <= 0:
                break
            if part.content_type.startswith("text/") and not part.message.is_multipart():
                text = mime.body_text(part.message, limit=budget)
                budget -= len(text)
                inline = origin.inline_original(text, self.finder)
                if inline is not None and self.original is None:
                    self.original = inline

    def _from_domain(self) -> str | None:
        sender = parseaddr(mime.header(self.message, "from") or "")[1]
        domain = sender.rpartition("@")[2].lower()
        return domain or None

    def _make(
        self,
        kind: ReportKind,
        detector: Detector,
        *,
        severity: Severity | None = None,
        recipients: tuple[Recipient, ...] = (),
        feedback_type: FeedbackType | None = None,
        recipient_redacted: bool = False,
        auto_reply: AutoReplyKind | None = None,
        unsubscribe_token: str | None = None,
        reporter: str | None = None,
    ) -> Report:
        return Report(
            kind=kind,
            detector=detector,
            severity=severity,
            recipients=recipients,
            tokens=self.finder.result(),
            original=self.original,
            feedback_type=feedback_type,
            recipient_redacted=recipient_redacted,
            auto_reply=auto_reply,
            unsubscribe_token=unsubscribe_token,
            reporter=reporter,
            message_id=mime.header(self.message, "message-id"),
            digest=self.digest,
            problems=tuple(self.problems),
        )
