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


class HitKind(enum.Enum):
    """What a reader's request to a tracked link was (analytics)."""

    CLICK = "click"
    OPEN = "open"
