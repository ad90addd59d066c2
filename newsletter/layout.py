"""The email's grid: how wide each image slot is, and which image of an issue shows in which.

Rendering, the image derivatives (:mod:`newsletter.images`) and ``check`` all read the slots
from here, so a picture is made, measured and shown at the same size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from newsletter.model import Block, Figure, Image, Issue, RelatedStories, Section, Spotlight

# Sharp on high-density screens: every derivative is made at twice the slot's width.
DENSITY = 2


@dataclass(frozen=True)
class Slot:
    """Where an image is shown: its width in CSS pixels and, for thumbnails, a fixed shape."""

    name: str
    width: int
    # (width, height) the picture is cropped to; None keeps the original's proportions
    aspect: tuple[int, int] | None = None

    @property
    def pixels(self) -> int:
        """The width of the derivative: :data:`DENSITY` times the slot."""
        return self.width * DENSITY


@dataclass(frozen=True)
class Widths:
    """Pixel widths of the layout; images are shown at these sizes on a desktop."""

    email: int = 600
    hero: int = 600
    figure: int = 544  # a section's column less 28 px padding each side
    spotlight_image: int = 212  # the picture beside the spotlight text (42 % column)
    spotlight_figure: int = 308  # a figure inside that text column
    card: int = 264  # one of two related-story cards in the 544 px column, 16 px apart
    card_wide: int = 200  # the thumbnail beside the text of a card alone in its block
    card_gap: int = 16


WIDTHS = Widths()
CARD_ASPECT = (3, 2)


class Slots:
    """The slots of the layout, by name (templates say ``slots.hero``)."""

    hero = Slot("hero", WIDTHS.hero)
    figure = Slot("figure", WIDTHS.figure)
    spotlight_image = Slot("spotlight", WIDTHS.spotlight_image)
    spotlight_figure = Slot("spotlight-figure", WIDTHS.spotlight_figure)
    card = Slot("card", WIDTHS.card, CARD_ASPECT)
    card_wide = Slot("card-wide", WIDTHS.card_wide, CARD_ASPECT)


SLOTS = Slots()


def spotlight_layout(blocks: Sequence[Block]) -> tuple[Image | None, Sequence[Block]]:
    """A spotlight opening with a figure (and more after it) puts the picture beside the text."""
    first = blocks[0] if blocks else None
    if isinstance(first, Figure) and len(blocks) > 1:
        return first.image, blocks[1:]
    return None, blocks


def card_slot(cards: RelatedStories) -> Slot:
    """A card alone in its block is laid out wide, its thumbnail beside the text."""
    return SLOTS.card_wide if len(cards.stories) == 1 else SLOTS.card


def _block_images(blocks: Sequence[Block], figure: Slot) -> Iterator[tuple[Image, Slot]]:
    for block in blocks:
        if isinstance(block, Figure):
            yield block.image, figure
        elif isinstance(block, RelatedStories):
            slot = card_slot(block)
            for story in block.stories:
                if story.thumbnail is not None:
                    yield story.thumbnail, slot


def displayed_images(issue: Issue) -> Iterator[tuple[Image, Slot]]:
    """Every image the issue shows, with the slot it is shown in."""
    if issue.hero:
        yield issue.hero, SLOTS.hero
    for part in issue.body:
        if isinstance(part, Spotlight):
            image, rest = spotlight_layout(part.blocks)
            if image:
                yield image, SLOTS.spotlight_image
            yield from _block_images(rest, SLOTS.spotlight_figure if image else SLOTS.figure)
        elif isinstance(part, Section):
            yield from _block_images(part.blocks, SLOTS.figure)
