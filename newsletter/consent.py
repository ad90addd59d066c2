"""The subscription policy: who may put an address on a list, and what that does. Pure.

One decision for every way onto a list (``subscribers add``, a CSV import, the subscribe
form), so they cannot drift apart: the suppression list is honoured forever, a list the
person left is rejoined only on their own confirmed request, and the operator's word ("they
agreed elsewhere") confirms but never overrides the person's own choice.
"""

from __future__ import annotations

import enum

from newsletter.states import SubscriptionStatus


class Authority(enum.Enum):
    """On whose word a subscription is asked for."""

    # the operator: `subscribers add`, an import; the person agreed elsewhere
    OPERATOR = "operator"
    # the person (or someone claiming to be them) through the subscribe form: nothing joins
    # until they confirm from their inbox
    SUBSCRIBER = "subscriber"
    # the person, by a link signed into the copy mailed to them as a confirmed recipient ("more
    # from us"): pressing it proves control of the mailbox, so the list joins at once
    RECIPIENT = "recipient"


class Verdict(enum.Enum):
    """What a request does to one subscription."""

    ADD = "add"  # new: subscribed with the asked-for status
    CONFIRM = "confirm"  # waiting for confirmation: the operator's word confirms it
    REQUEST = "request"  # left earlier: waits for the person's own confirmation again
    PENDING = "pending"  # waiting for confirmation already: a fresh link is due
    KEEP = "keep"  # already as asked: nothing changes
    REJOIN = "rejoin"  # left earlier: the person's own click from their inbox puts them back
    SUPPRESSED = "suppressed"  # refused: the address is on the suppression list
    LEFT = "left"  # refused: the person left this list; only they can rejoin

    @property
    def refused(self) -> bool:
        return self in (Verdict.SUPPRESSED, Verdict.LEFT)


def decide(
    *,
    authority: Authority,
    current: SubscriptionStatus | None,
    suppressed: bool,
    wanted: SubscriptionStatus = SubscriptionStatus.CONFIRMED,
) -> Verdict:
    """What asking for a subscription does, given the subscription as it is (None: none).

    ``wanted`` is the status the operator asks for (confirmed, or ``add --unconfirmed``); a
    request through the form always waits for confirmation.
    """
    if suppressed:
        return Verdict.SUPPRESSED
    if authority is Authority.RECIPIENT:
        if current is None:
            return Verdict.ADD
        if current is SubscriptionStatus.UNSUBSCRIBED:
            return Verdict.REJOIN
        if current is SubscriptionStatus.UNCONFIRMED:
            return Verdict.CONFIRM
        return Verdict.KEEP
    if authority is Authority.SUBSCRIBER:
        if current is None:
            return Verdict.ADD
        if current is SubscriptionStatus.UNSUBSCRIBED:
            return Verdict.REQUEST
        if current is SubscriptionStatus.UNCONFIRMED:
            return Verdict.PENDING
        return Verdict.KEEP
    if current is None:
        return Verdict.ADD
    if current is SubscriptionStatus.UNSUBSCRIBED:
        return Verdict.LEFT
    if current is SubscriptionStatus.UNCONFIRMED and wanted is SubscriptionStatus.CONFIRMED:
        return Verdict.CONFIRM
    return Verdict.KEEP
