"""The issue model: what an editor wrote, as values the renderers and the sender share.

Inline text is carried twice, as escaped HTML and as plain text with link targets, so the HTML
and plain-text renderers work from the same model without either scraping the other.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import ClassVar

# Filled per recipient by the delivery step; chosen so no escaping in HTML, text or a URL
# changes them, and so an editor is unlikely to type them (check warns if one does).
UNSUBSCRIBE_URL_PLACEHOLDER = "%%UNSUBSCRIBE_URL%%"
PLACEHOLDERS = (UNSUBSCRIBE_URL_PLACEHOLDER,)
# "More from us": each list offered gets its own per-recipient join link. The markers follow
# message.marker (``%%NAME%%`` of the placeholder name in capitals).
JOIN_URL_PREFIX = "join_url_"
JOIN_URL_PLACEHOLDER = re.compile(r"%%JOIN_URL_[A-Z0-9_]+%%")


def join_placeholder_name(list_slug: str) -> str:
    """The placeholder name of the join link for ``list_slug``: ``join_url_business``."""
    return JOIN_URL_PREFIX + re.sub(r"[^a-z0-9]", "_", list_slug.lower())


def join_url_placeholder(list_slug: str) -> str:
    """The marker in the bodies where a recipient's link to join ``list_slug`` goes."""
    return f"%%{join_placeholder_name(list_slug).upper()}%%"


class IssueStatus(enum.Enum):
    DRAFT = "draft"
    READY = "ready"


@dataclass(frozen=True)
class Inline:
    """A run of inline Markdown: ``html`` is escaped markup, ``text`` keeps URLs as ``<url>``.

    ``plain`` is the words alone (no URLs, no markup), for previews and derived subjects.
    """

    html: str
    text: str
    plain: str = ""


@dataclass(frozen=True)
class Image:
    src: str
    alt: str
    caption: Inline | None = None
    credit: str | None = None
    width: int = 600
    line: int | None = None


@dataclass(frozen=True)
class Paragraph:
    kind: ClassVar[str] = "paragraph"  # lets templates tell blocks apart
    content: Inline
    line: int | None = None


@dataclass(frozen=True)
class BulletList:
    kind: ClassVar[str] = "list"  # lets templates tell blocks apart
    items: tuple[Inline, ...]
    ordered: bool = False
    line: int | None = None


@dataclass(frozen=True)
class Quote:
    kind: ClassVar[str] = "quote"  # lets templates tell blocks apart
    paragraphs: tuple[Inline, ...]
    attribution: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class Figure:
    kind: ClassVar[str] = "figure"  # lets templates tell blocks apart
    image: Image
    line: int | None = None


@dataclass(frozen=True)
class RelatedStory:
    url: str
    title: str
    teaser: str
    line: int | None = None
    thumbnail: Image | None = None


@dataclass(frozen=True)
class RelatedStories:
    kind: ClassVar[str] = "cards"  # lets templates tell blocks apart
    stories: tuple[RelatedStory, ...]
    # None: the template's default ("Related stories", in the publication's language)
    heading: str | None = None
    line: int | None = None


Block = Paragraph | BulletList | Quote | Figure | RelatedStories


@dataclass(frozen=True)
class Section:
    """A ``##`` section; without a heading, the intro or a section's text after a feature.

    ``anchor`` is the ``id`` of the heading, what ``[text](#anchor)`` links jump to.
    """

    kind: ClassVar[str] = "section"  # lets templates tell parts apart
    heading: str | None
    blocks: tuple[Block, ...]
    anchor: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class Spotlight:
    """A feature segment with its own heading, a label above it and optional image."""

    kind: ClassVar[str] = "spotlight"
    heading: str
    blocks: tuple[Block, ...]
    # None: the template's default ("Spotlight", in the publication's language)
    label: str | None = None
    anchor: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class Button:
    label: str
    url: str


class CtaPosition(enum.Enum):
    BODY = "body"  # where it is written
    TOP = "top"  # a banner above the title


@dataclass(frozen=True)
class CallToAction:
    """An appeal: optional heading, paragraphs, a main button and an optional second one."""

    kind: ClassVar[str] = "cta"
    blocks: tuple[Paragraph | BulletList, ...]
    buttons: tuple[Button, ...]
    heading: str | None = None
    position: CtaPosition = CtaPosition.BODY
    line: int | None = None

    @property
    def button_label(self) -> str:
        return self.buttons[0].label

    @property
    def url(self) -> str:
        return self.buttons[0].url


@dataclass(frozen=True)
class OtherLists:
    """ "More from us": the publication's other lists, each with a link to join it."""

    kind: ClassVar[str] = "lists"
    # list slugs in the order shown; empty means every list but the one the issue goes to
    lists: tuple[str, ...] = ()
    # None: the template's default ("More from us", in the publication's language)
    heading: str | None = None
    intro: Inline | None = None
    line: int | None = None


Part = Section | Spotlight | CallToAction | OtherLists


@dataclass(frozen=True)
class Issue:
    """One parsed issue file.

    ``body`` holds the parts in the order the editor wrote them; ``banner`` is a call to
    action with ``position=top``, shown above the title.
    """

    path: Path
    slug: str
    date: date
    title: str
    subject: str
    preheader: str
    authors: tuple[str, ...]
    status: IssueStatus
    list: str | None
    hero: Image | None = None
    headlines: tuple[Inline, ...] = ()
    body: tuple[Part, ...] = ()
    banner: CallToAction | None = None
    send_at: datetime | None = None

    @property
    def intro(self) -> tuple[Block, ...]:
        """The blocks before the first heading or feature."""
        first = self.body[0] if self.body else None
        if isinstance(first, Section) and first.heading is None:
            return first.blocks
        return ()

    @property
    def sections(self) -> tuple[Section, ...]:
        """The ``##`` sections (not the intro, nor a section's text continued after a feature)."""
        return tuple(p for p in self.body if isinstance(p, Section) and p.heading is not None)

    @property
    def spotlight(self) -> Spotlight | None:
        return next((p for p in self.body if isinstance(p, Spotlight)), None)

    @property
    def cta(self) -> CallToAction | None:
        """The call to action in the body (the banner is :attr:`banner`)."""
        return next((p for p in self.body if isinstance(p, CallToAction)), None)

    @property
    def other_lists(self) -> OtherLists | None:
        return next((p for p in self.body if isinstance(p, OtherLists)), None)

    def all_blocks(self) -> Iterator[Block]:
        """Every block of every section, spotlight and call to action, in order."""
        for part in self.body:
            if isinstance(part, Section | Spotlight | CallToAction):
                yield from part.blocks


@dataclass(frozen=True)
class RenderedIssue:
    """An issue rendered once; the delivery step only splices per-recipient pieces into it.

    ``html`` and ``text`` contain :data:`UNSUBSCRIBE_URL_PLACEHOLDER` where each recipient's
    unsubscribe link goes. ``archive_url`` is the "view in browser" page (not per recipient).
    """

    issue: Issue
    subject: str
    preheader: str
    html: str
    text: str
    archive_url: str
