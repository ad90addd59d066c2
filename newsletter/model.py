"""The issue model: what an editor wrote, as values the renderers and the sender share.

Inline text is carried twice, as escaped HTML and as plain text with link targets, so the HTML
and plain-text renderers work from the same model without either scraping the other.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import ClassVar

# Filled per recipient by the delivery step; chosen so no escaping in HTML, text or a URL
# changes them, and so an editor is unlikely to type them (check warns if one does).
UNSUBSCRIBE_URL_PLACEHOLDER = "%%UNSUBSCRIBE_URL%%"
PLACEHOLDERS = (UNSUBSCRIBE_URL_PLACEHOLDER,)


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


@dataclass(frozen=True)
class RelatedStories:
    kind: ClassVar[str] = "cards"  # lets templates tell blocks apart
    stories: tuple[RelatedStory, ...]
    heading: str = "Related stories"
    line: int | None = None


Block = Paragraph | BulletList | Quote | Figure | RelatedStories


@dataclass(frozen=True)
class Section:
    heading: str
    blocks: tuple[Block, ...]
    line: int | None = None


@dataclass(frozen=True)
class Spotlight:
    """The closing feature segment, with its own heading and optional image."""

    heading: str
    blocks: tuple[Block, ...]
    label: str = "Spotlight"
    line: int | None = None


@dataclass(frozen=True)
class CallToAction:
    text: Inline
    button_label: str
    url: str
    line: int | None = None


@dataclass(frozen=True)
class Issue:
    """One parsed issue file."""

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
    sections: tuple[Section, ...] = ()
    spotlight: Spotlight | None = None
    cta: CallToAction | None = None
    send_at: datetime | None = None
    intro: tuple[Block, ...] = field(default=())


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
