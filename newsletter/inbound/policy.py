"""What the intake does with one report: the decision, pure, from the report and the ledger's facts.

Two steps around the store: :func:`linked_deliveries` says which ledger rows a report's verified
tokens name; the store looks those rows up (:class:`DeliveryFacts`); :func:`decide` says what to
do. Nothing here touches the database, the clock or the network.

The rule (see :mod:`newsletter.inbound.reports`): only a token that verifies under our keys links
a report to a message we sent, and the intake acts on that ledger row and nothing else. A bounce
acts only when the row's address is a recipient the report names, or the report names a single
recipient (a forward: the final address differs); a complaint needs only the token; auto-replies,
success notices and non-complaint feedback are recorded and never counted; anything that cannot
be linked goes to review.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from newsletter.addresses import normalize_email
from newsletter.errors import InvalidAddressError
from newsletter.inbound.model import Action, Recipient, Report, ReportKind, Severity
from newsletter.inbound.verp import DeliveryRef, DeliveryTokens
from newsletter.states import DeliveryStatus, EventKind


class Effect(enum.Enum):
    """What a report does to the delivery it names."""

    #: the address is dead: suppress at once (``bounced``), the ledger row becomes ``bounced``
    HARD_BOUNCE = "hard bounce"
    #: this message failed (mailbox full, expired): counts towards the soft-bounce limit
    SOFT_BOUNCE = "soft bounce"
    #: still being retried: counts as soft once per delivery, the ledger row is unchanged
    DELAY = "delay"
    #: a feedback-loop complaint: unsubscribe from every list and suppress (``complained``)
    COMPLAINT = "complaint"
    #: kept, never counted (auto-reply, success notice, not-spam feedback)
    RECORD = "record"
    #: not linked to a message we sent, or ambiguous
    REVIEW = "review"


#: The class an effect counts in: the first event of a class per delivery is the counted one.
COUNTED_CLASS: Mapping[Effect, str] = {
    Effect.HARD_BOUNCE: "hard",
    Effect.SOFT_BOUNCE: "soft",
    Effect.DELAY: "soft",
    Effect.COMPLAINT: "complaint",
}


@dataclass(frozen=True)
class DeliveryFacts:
    """What the ledger says about the row a token names."""

    ref: DeliveryRef
    #: the subscriber's normalised address
    email: str
    list_id: int
    status: DeliveryStatus


@dataclass(frozen=True)
class Decision:
    """What to do with a report, and what the event records."""

    effect: Effect
    kind: EventKind | None = None
    ref: DeliveryRef | None = None
    #: the recipient block the decision rests on (status code, diagnostic)
    recipient: Recipient | None = None
    #: why it went to review, in words for the person reviewing it
    reason: str | None = None

    @property
    def severity(self) -> Severity | None:
        if self.effect is Effect.HARD_BOUNCE:
            return Severity.HARD
        if self.effect in (Effect.SOFT_BOUNCE, Effect.DELAY):
            return Severity.SOFT
        return None


_RECORDED_KINDS = {
    ReportKind.AUTO_REPLY: EventKind.AUTO_REPLY,
    ReportKind.DELIVERED: EventKind.DELIVERED,
    ReportKind.FEEDBACK: EventKind.FEEDBACK,
}


def linked_deliveries(report: Report, tokens: DeliveryTokens) -> tuple[DeliveryRef, ...]:
    """The ledger rows the report's verified tokens name (usually none or one)."""
    return report.deliveries(tokens)


def decide(report: Report, facts: Mapping[DeliveryRef, DeliveryFacts]) -> Decision:
    """The decision on ``report``, given what the ledger holds for the rows its tokens name.

    ``facts`` holds exactly the rows :func:`linked_deliveries` named that exist in the ledger.
    """
    if report.kind is ReportKind.UNSUBSCRIBE:
        # acted on through its own signed token (inbound.mailto), never through this path
        return Decision(Effect.REVIEW, reason="an unsubscribe request goes through mailto")
    rows = list(facts.values())
    recorded = _RECORDED_KINDS.get(report.kind)
    if not rows:
        if recorded is not None:
            # harmless whatever it names: kept, nothing to review
            return Decision(Effect.RECORD, recorded, reason="not linked to a delivery")
        return Decision(Effect.REVIEW, reason=_unlinked(report))
    if len(rows) > 1:
        return Decision(Effect.REVIEW, reason=f"its tokens name {len(rows)} different deliveries")
    (row,) = rows
    if recorded is not None:
        return Decision(Effect.RECORD, recorded, row.ref)
    if report.kind is ReportKind.COMPLAINT:
        # the recipient is often redacted: the verified token is the link
        first = report.recipients[0] if report.recipients else None
        return Decision(Effect.COMPLAINT, EventKind.COMPLAINT, row.ref, first)
    if report.kind in (ReportKind.BOUNCE, ReportKind.DELAY):
        return _bounce(report, row)
    return Decision(Effect.REVIEW, ref=row.ref, reason="not a report the intake acts on")


def _bounce(report: Report, row: DeliveryFacts) -> Decision:
    recipient = _matching_recipient(report.recipients, row.email)
    if recipient is None:
        return Decision(
            Effect.REVIEW,
            ref=row.ref,
            reason="the token names a delivery whose address is not among the report's "
            f"{len(report.recipients)} recipients",
        )
    if recipient.action is Action.FAILED:
        effect = Effect.HARD_BOUNCE if recipient.severity is Severity.HARD else Effect.SOFT_BOUNCE
        return Decision(effect, EventKind.BOUNCE, row.ref, recipient)
    if recipient.action is Action.DELAYED:
        return Decision(Effect.DELAY, EventKind.DELAY, row.ref, recipient)
    # this recipient was delivered (or relayed) in a report about several
    return Decision(Effect.RECORD, EventKind.DELIVERED, row.ref, recipient)


def _matching_recipient(recipients: tuple[Recipient, ...], email: str) -> Recipient | None:
    """The recipient block about ``email``; a report about one recipient only is about it."""
    for recipient in recipients:
        for address in (recipient.address, recipient.original):
            if address and _same_address(address, email):
                return recipient
    if len(recipients) == 1:
        # forwarded: the final recipient is another address, the token says whose delivery
        return recipients[0]
    return None


def _same_address(address: str, normalized: str) -> bool:
    try:
        return normalize_email(address) == normalized
    except InvalidAddressError:
        return address.strip().lower() == normalized


def _unlinked(report: Report) -> str:
    if not report.tokens:
        return "no delivery token in it"
    return "no delivery token in it verifies (forged, another key, or a delivery since removed)"


def soft_limit_reached(counted_soft: int, *, limit: int) -> bool:
    """Whether the counted soft bounces within the window reach ``[bounces] soft_limit``."""
    return counted_soft >= limit


# --- rates against what mailbox providers tolerate ------------------------------------------


class Level(enum.Enum):
    OK = "ok"
    WARN = "warn"
    ALARM = "alarm"


#: Gmail's and Yahoo's bulk-sender rules: keep complaints under 0.3 % (aim under 0.1 %).
COMPLAINT_WARN = 0.001
COMPLAINT_ALARM = 0.003
#: Hard bounces above 2 % say the list is old or bought; providers start throttling.
HARD_WARN = 0.02


@dataclass(frozen=True)
class Rate:
    """One figure of an issue's feedback, with its level against the providers' thresholds."""

    label: str
    count: int
    rate: float
    level: Level
    #: the threshold it is measured against, in words ("warn at 0.1 %, alarm at 0.3 %")
    threshold: str

    def line(self) -> str:
        mark = {Level.OK: "", Level.WARN: "  WARNING", Level.ALARM: "  ALARM"}[self.level]
        return f"{self.label}: {self.count:,} ({self.rate:.2%}; {self.threshold}){mark}"


def rate_levels(*, sent: int, hard: int, soft: int, complaints: int) -> tuple[Rate, ...]:
    """Hard and soft bounces and complaints as rates of ``sent``, each with its level."""

    def rate(count: int) -> float:
        return count / sent if sent else 0.0

    complaint = rate(complaints)
    if complaint >= COMPLAINT_ALARM:
        complaint_level = Level.ALARM
    elif complaint >= COMPLAINT_WARN:
        complaint_level = Level.WARN
    else:
        complaint_level = Level.OK
    return (
        Rate(
            "hard bounces",
            hard,
            rate(hard),
            Level.WARN if rate(hard) >= HARD_WARN else Level.OK,
            f"warn at {HARD_WARN:.0%}",
        ),
        Rate("soft bounces", soft, rate(soft), Level.OK, "not a provider threshold"),
        Rate(
            "complaints",
            complaints,
            complaint,
            complaint_level,
            f"warn at {COMPLAINT_WARN:.1%}, alarm at {COMPLAINT_ALARM:.1%}",
        ),
    )
