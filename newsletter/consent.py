"""The subscription policy: who may put an address on a list, and what that does. Pure.

One decision for every way onto a list (``subscribers add``, a CSV import, the subscribe
form), so they cannot drift apart: the suppression list is honoured forever, a list the
person left is rejoined only on their own confirmed request, and the operator's word ("they
agreed elsewhere") confirms but never overrides the person's own choice. Beside it: what a
confirmation link confirms (:func:`link_confirms`), and when leaving a list is leaving
everything (:func:`left_everything`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime

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


def link_confirms(
    *,
    status: SubscriptionStatus,
    requested_in: int | None,
    link: int,
    created_at: datetime,
    unsubscribed_at: datetime | None,
    issued_before: datetime | None,
) -> bool:
    """Whether pressing confirmation link number ``link`` confirms this subscription.

    A link confirms only what was waiting for confirmation when it was mailed: the
    subscription went to ``unconfirmed`` in that request or an earlier one
    (``requested_in``, the number of the request that asked for it, is at most ``link``) and
    has not left and been asked for again since (that renumbers it). So a list someone else
    asks for later in the person's name, or one the person left and someone re-requested,
    needs a link of its own. ``link`` 0 is a link mailed before requests were numbered: it
    confirms only subscriptions asked for before it, by time (``issued_before``), and none
    asked for since.
    """
    if status is not SubscriptionStatus.UNCONFIRMED:
        return False
    if link > 0:
        return requested_in is not None and requested_in <= link
    if requested_in is not None or issued_before is None:
        return False
    return created_at < issued_before and (
        unsubscribed_at is None or unsubscribed_at < issued_before
    )


def left_everything(statuses: Iterable[SubscriptionStatus]) -> bool:
    """Whether someone whose subscriptions now stand at ``statuses`` has left every list.

    Leaving the last list one at a time is leaving everything, as the "unsubscribe from
    everything" button is: the address goes on the suppression list, so no later import or
    form brings it back. A list still waiting for confirmation counts as one they are on (the
    preferences page shows it, and keeps it when asked to).
    """
    return all(status is SubscriptionStatus.UNSUBSCRIBED for status in statuses)
