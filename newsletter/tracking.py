"""The send's side of analytics: what a send counts, and its bodies with tracked links.

Pure. :func:`tracking_for` reads ``[analytics]`` when a send begins (the decision is stored
with the issue, so a resumed send or a worker tracks the rest of it alike);
:func:`tracked_content` rewrites the recorded bodies through :mod:`newsletter.links`, with
the per-reader placeholder in each link when the send counts per subscriber. The stored
bodies stay as written: the archive never shows tracked links.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from newsletter.config import Settings
from newsletter.links import Link, track_html, track_text, tracked_links
from newsletter.message import MessageContent, marker
from newsletter.store.analytics import Tracking
from newsletter.tokens import LinkKind, make_link_token, make_reader_token
from newsletter.urls import click_url, open_url

#: The per-recipient placeholder of a send counted per subscriber: the reader token.
READER_TOKEN = "reader_token"  # noqa: S105 (a placeholder name, no secret)


@dataclass(frozen=True)
class TrackedBodies:
    """A :class:`message.MessageContent` whose links go through the redirect."""

    subject: str
    html: str
    text: str


def tracking_for(settings: Settings) -> Tracking:
    """What a send beginning now counts, from ``[analytics]``."""
    a = settings.analytics
    return Tracking(
        clicks=a.clicks,
        clicks_in_text=a.clicks and a.clicks_in_text,
        opens=a.opens,
        per_subscriber=a.per_subscriber and (a.clicks or a.opens),
    )


def links_for(settings: Settings, tracking: Tracking, content: MessageContent) -> list[Link]:
    """The links a send with ``tracking`` counts in ``content`` (none when clicks are off)."""
    if not tracking.clicks:
        return []
    return tracked_links(
        content.html,
        content.text,
        base_url=settings.publication.base_url,
        in_text=tracking.clicks_in_text,
    )


def reader_placeholders(tracking: Tracking) -> tuple[str, ...]:
    """The placeholders tracking adds to a copy of a send with ``tracking``."""
    return (READER_TOKEN,) if tracking.per_subscriber else ()


def tracked_content(
    settings: Settings,
    issue_id: int,
    content: MessageContent,
    tracking: Tracking,
    links: Sequence[Link],
) -> MessageContent:
    """``content`` as this send delivers it: counted links rewritten, the pixel added."""
    if not tracking.anything:
        return content
    base = settings.publication.base_url
    key = settings.secret_key
    reader = marker(READER_TOKEN) if tracking.per_subscriber else None

    def link_url(link: Link) -> str:
        token = make_link_token(key, LinkKind.CLICK, issue_id, link.position)
        return click_url(base, token, reader)

    pixel = open_url(base, make_link_token(key, LinkKind.OPEN, issue_id, 0), reader)
    return TrackedBodies(
        subject=content.subject,
        html=track_html(
            content.html,
            links,
            link_url,
            base_url=base,
            pixel=pixel if tracking.opens else None,
        ),
        text=track_text(content.text, links, link_url, base_url=base),
    )


def reader_values(settings: Settings) -> dict[str, Callable[[int, str], str]]:
    """Placeholder -> value of one recipient's copy, from (issue id, subscriber uid)."""
    key = settings.secret_key

    def reader_token(issue_id: int, uid: str) -> str:
        return make_reader_token(key, issue_id, uid)

    return {READER_TOKEN: reader_token}
