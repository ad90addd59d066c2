"""What the parser makes of one inbound message: a :class:`Report` and the types it is built of."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from newsletter.inbound.verp import DeliveryRef, DeliveryTokens


class ReportKind(enum.Enum):
    """The verdict on one inbound message."""

    #: at least one recipient failed for good (``Action: failed``); see :attr:`Report.severity`
    BOUNCE = "bounce"
    #: no failure, but delivery to at least one recipient is delayed and still being retried
    DELAY = "delay"
    #: a success notification (``delivered``, ``relayed``, ``expanded``): not a failure
    DELIVERED = "delivered"
    #: a feedback-loop complaint (RFC 5965 ``abuse``, ``fraud``, ``virus``, ``other``)
    COMPLAINT = "complaint"
    #: a feedback report that is not a complaint (``not-spam``, ``auth-failure``)
    FEEDBACK = "feedback"
    #: out-of-office, vacation, challenge-response, read receipt: never a bounce
    AUTO_REPLY = "auto-reply"
    #: ``unsubscribe <token>`` in the Subject: the ``mailto:`` half of List-Unsubscribe
    UNSUBSCRIBE = "unsubscribe"
    #: none of the above, or too broken to tell: kept for review
    UNKNOWN = "unknown"


class Severity(enum.Enum):
    """Whether a failure says the address is bad (hard) or only this attempt failed (soft)."""

    HARD = "hard"
    SOFT = "soft"


class Action(enum.Enum):
    """RFC 3464 ``Action`` values."""

    FAILED = "failed"
    DELAYED = "delayed"
    DELIVERED = "delivered"
    RELAYED = "relayed"
    EXPANDED = "expanded"


class FeedbackType(enum.Enum):
    """RFC 5965 ``Feedback-Type`` (plus RFC 6591 ``auth-failure`` and RFC 6430 ``not-spam``)."""

    ABUSE = "abuse"
    FRAUD = "fraud"
    VIRUS = "virus"
    OTHER = "other"
    NOT_SPAM = "not-spam"
    AUTH_FAILURE = "auth-failure"


class AutoReplyKind(enum.Enum):
    VACATION = "vacation"
    CHALLENGE = "challenge-response"
    READ_RECEIPT = "read-receipt"
    OTHER = "other"


class Detector(enum.Enum):
    """What recognised the message; says how far to trust the details."""

    DSN = "rfc3464"
    FLUFL = "flufl.bounce"
    ARF = "rfc5965"
    MDN = "rfc8098"
    AUTO_SUBMITTED = "rfc3834"
    AUTO_REPLY_HEADERS = "auto-reply headers"
    SUBJECT = "subject"
    NONE = "none"


class TokenSource(enum.Enum):
    """Where a delivery token candidate was found, most direct first."""

    ENVELOPE_RECIPIENT = "envelope recipient"
    DELIVERED_TO = "Delivered-To"
    X_ORIGINAL_TO = "X-Original-To"
    TO = "To"
    ORIGINAL_ENVELOPE_ID = "Original-Envelope-Id"
    DSN_SENDER = "X-Postfix-Sender"
    ORIGINAL_MAIL_FROM = "Original-Mail-From"
    RETURN_PATH = "Return-Path of the original"
    DELIVERY_HEADER = "delivery header of the original"
    BODY = "text of the report"


@dataclass(frozen=True)
class TokenCandidate:
    """A string shaped like one of our delivery tokens (lowercased), and where it was."""

    token: str
    source: TokenSource


@dataclass(frozen=True)
class Recipient:
    """One recipient a report speaks about."""

    address: str
    #: ``Original-Recipient`` (the address we sent to, when the final one is a forward)
    original: str | None = None
    action: Action | None = None
    #: RFC 3463 enhanced status code, e.g. ``5.1.1``
    status: str | None = None
    #: None when this recipient did not fail (delivered, relayed, or a complaint)
    severity: Severity | None = None
    diagnostic: str | None = None
    remote_mta: str | None = None


@dataclass(frozen=True)
class OriginalMessage:
    """Headers of the message we sent, as a report returned them (any of them may be missing)."""

    message_id: str | None = None
    list_id: str | None = None
    #: the value of our :data:`~newsletter.inbound.verp.DELIVERY_HEADER`, if it came back
    delivery_token: str | None = None
    return_path: str | None = None
    to: str | None = None
    subject: str | None = None
    feedback_id: str | None = None


@dataclass(frozen=True)
class Report:
    """The verdict on one inbound message and everything the intake needs to act on it."""

    kind: ReportKind
    detector: Detector
    #: for BOUNCE: HARD if any recipient failed hard, else SOFT; for DELAY: SOFT; else None
    severity: Severity | None = None
    recipients: tuple[Recipient, ...] = ()
    #: every token-shaped string found, deduplicated, most direct source first
    tokens: tuple[TokenCandidate, ...] = ()
    original: OriginalMessage | None = None
    feedback_type: FeedbackType | None = None
    #: a complaint whose recipient the provider removed or masked (``xxxxx@``, ``redacted``)
    recipient_redacted: bool = False
    auto_reply: AutoReplyKind | None = None
    #: for UNSUBSCRIBE: the signed token of :mod:`newsletter.tokens` from the Subject
    unsubscribe_token: str | None = None
    #: ``Reporting-MTA`` of a DSN, the feedback report's ``User-Agent``/``Reporting-MTA``, or
    #: the From domain of a non-standard bounce
    reporter: str | None = None
    #: the report's own Message-ID, and a SHA-256 of the whole input: idempotency keys
    message_id: str | None = None
    digest: str = ""
    #: what was wrong with the input (truncated, malformed MIME, undecodable parts)
    problems: tuple[str, ...] = ()

    def deliveries(self, tokens: DeliveryTokens) -> tuple[DeliveryRef, ...]:
        """The ledger rows the verified token candidates name, in the order found.

        Only these link the report to a message we sent: an address named in the report
        proves nothing (anyone can write a DSN).
        """
        seen: list[DeliveryRef] = []
        checked: set[str] = set()
        for candidate in self.tokens:
            if candidate.token in checked:
                continue
            checked.add(candidate.token)
            ref = tokens.read(candidate.token)
            if ref is not None and ref not in seen:
                seen.append(ref)
        return tuple(seen)
