"""The states a subscription, a suppression, a delivery and a send can be in (pure enums).

The store keeps each as its ``value``; everything above the store speaks in these enums.
"""

from __future__ import annotations

import enum


class SubscriptionStatus(enum.Enum):
    """One person's membership of one list."""

    UNCONFIRMED = "unconfirmed"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"


class SuppressionReason(enum.Enum):
    """Why an address is on the suppression list (kept forever)."""

    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    ERASED = "erased"


class DeliveryStatus(enum.Enum):
    """One recipient's copy of one issue in the ledger."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    BOUNCED = "bounced"


class SendStatus(enum.Enum):
    """One issue's send to one list."""

    SENDING = "sending"
    PAUSED = "paused"
    FINISHED = "finished"


class ReportOutcome(enum.Enum):
    """What the intake did with one inbound report (a DSN, a complaint, a webhook event)."""

    #: linked to a delivery through a verified token and acted on (counted, suppressed ...)
    APPLIED = "applied"
    #: linked or harmless, kept, and by design never acted on (auto-replies, success notices)
    RECORDED = "recorded"
    #: not linked to a message we sent, or ambiguous: kept for a person to look at
    REVIEW = "review"


class EventKind(enum.Enum):
    """One thing the mail world told us about one delivery (or one subscriber)."""

    BOUNCE = "bounce"
    DELAY = "delay"
    COMPLAINT = "complaint"
    FEEDBACK = "feedback"
    AUTO_REPLY = "auto-reply"
    DELIVERED = "delivered"
    UNSUBSCRIBE = "unsubscribe"


class EventSource(enum.Enum):
    """How a report reached us."""

    SMTP = "smtp"
    IMPORT = "import"
    IMAP = "imap"
    SES = "ses"
    POSTMARK = "postmark"
    MAILGUN = "mailgun"
    SENDGRID = "sendgrid"


class HitKind(enum.Enum):
    """What a reader's request to a tracked link was (analytics)."""

    CLICK = "click"
    OPEN = "open"
