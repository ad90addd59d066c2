"""Rendering: an Issue becomes email HTML (Jinja -> MJML -> mjml-python -> premailer) and text.

A :class:`Renderer` builds its Jinja environment once and renders any number of issues; each
stage is its own method so the benchmark and the preview can time or reuse them. The output
holds :data:`~newsletter.model.UNSUBSCRIBE_URL_PLACEHOLDER` where each recipient's link goes;
nothing here is per recipient. No stage touches the network: fonts are off in MJML and
premailer may not fetch stylesheets.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from typing import Any, ClassVar

import jinja2
import premailer
from mjml import mjml2html

from newsletter import urls
from newsletter.config import MailingList, Settings
from newsletter.errors import RenderError
from newsletter.i18n import translations
from newsletter.images import ImageSet, original_url
from newsletter.layout import SLOTS, WIDTHS, Widths, displayed_images, spotlight_layout
from newsletter.model import (
    UNSUBSCRIBE_URL_PLACEHOLDER,
    Block,
    BulletList,
    CallToAction,
    Issue,
    OtherLists,
    Paragraph,
    Quote,
    RelatedStories,
    RenderedIssue,
    Section,
    Spotlight,
    join_placeholder_name,
    join_url_placeholder,
)
from newsletter.palette import palette
from newsletter.plaintext import tidy, underline, wrap
from newsletter.templating import Templates, environment, theme_folder

__all__ = [
    "WIDTHS",
    "Renderer",
    "Widths",
    "archive_url",
    "displayed_images",
    "image_url",
    "reading_minutes",
    "render_issue",
    "rows",
]

HTML_TEMPLATE = "issue.mjml.j2"
TEXT_TEMPLATE = "issue.txt.j2"
CSS_TEMPLATE = "email.css.j2"
# Invisible characters after the preheader keep inboxes from padding the preview with body
# text ("View this issue in your browser...").
PREHEADER_FILLER = "\u034f\u200c\u00a0" * 30
# Words a minute of an attentive reader of news; "N min read" rounds up.
READING_SPEED = 220
# MJML writes height="auto" on every image, which HTML does not allow (a height is a number
# of pixels); the inline style says height:auto already.
_HEIGHT_AUTO = re.compile(r'(<img\b[^>]*?)\s+height="auto"', re.IGNORECASE)


def image_url(src: str, settings: Settings) -> str:
    """The absolute URL of an issue image as written: ``images/x.png`` -> ``{base_url}/...``."""
    return original_url(src, settings)


def archive_url(issue: Issue, settings: Settings) -> str:
    """The issue's "view in browser" page."""
    return urls.archive_url(settings.publication.base_url, issue.slug)


def reading_minutes(issue: Issue) -> int:
    """Minutes an issue takes to read: its words (headlines and captions too) at 220 a minute."""
    words = len(issue.title.split())
    texts: list[str] = [h.plain for h in issue.headlines]
    images = [image for image, _slot in displayed_images(issue)]
    texts += [image.caption.plain for image in images if image.caption]
    for part in issue.body:
        if isinstance(part, Spotlight | Section):
            texts += [part.heading or ""]
        if isinstance(part, Section | Spotlight | CallToAction):
            texts += [_block_words(block) for block in part.blocks]
    words += sum(len(text.split()) for text in texts)
    return max(1, math.ceil(words / READING_SPEED))


def _block_words(block: Block) -> str:
    if isinstance(block, Paragraph):
        return block.content.plain
    if isinstance(block, BulletList):
        return " ".join(item.plain for item in block.items)
    if isinstance(block, Quote):
        return " ".join(p.plain for p in block.paragraphs) + " " + (block.attribution or "")
    if isinstance(block, RelatedStories):
        return " ".join(f"{s.title} {s.teaser}" for s in block.stories)
    return ""


def offered_lists(
    block: OtherLists, settings: Settings, issue_list: str | None
) -> list[MailingList]:
    """The lists a "more from us" block offers: those it names, else all but the issue's own."""
    own = issue_list or settings.publication.default_list
    slugs = block.lists or tuple(slug for slug in settings.lists if slug != own)
    return [settings.lists[slug] for slug in slugs if slug in settings.lists and slug != own]


def join_placeholders(issue: Issue, settings: Settings) -> dict[str, str]:
    """Placeholder name -> list slug of every join link the issue's bodies carry."""
    block = issue.other_lists
    if block is None:
        return {}
    offered = offered_lists(block, settings, issue.list)
    return {join_placeholder_name(ml.slug): ml.slug for ml in offered}


def rows(blocks: Sequence[Block]) -> list[dict[str, Any]]:
    """Group blocks for the MJML layout: runs of flowing blocks, and card grids two abreast.

    Cards need a table of their own, and MJML only takes one inside a column of a section, so
    a related block closes the running section and opens one for the cards.
    """
    result: list[dict[str, Any]] = []
    for block in blocks:
        if isinstance(block, RelatedStories):
            stories = list(block.stories)
            pairs = [stories[i : i + 2] for i in range(0, len(stories), 2)]
            result.append({"kind": "cards", "block": block, "pairs": pairs})
        elif result and result[-1]["kind"] == "flow":
            result[-1]["blocks"].append(block)
        else:
            result.append({"kind": "flow", "blocks": [block]})
    return result


class Renderer:
    """Renders issues for one set of settings; build it once, it keeps its templates."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # the theme's folder must be there; the publication's own (templates_dir) may be absent
        directory = theme_folder(Templates.EMAIL)
        if not directory.is_dir():
            raise RenderError(f"template folder {directory} not found; reinstall newsletter")
        self.palette = palette(settings.brand)
        self.translations = translations(settings.publication.lang)
        self.env = environment(
            settings,
            Templates.EMAIL,
            filters={"wrap": wrap, "underline": underline},
            globals={
                "colors": self.palette.light,
                "dark": self.palette.dark,
                "slots": SLOTS,
                "widths": WIDTHS,
            },
        )
        try:
            self.html_template = self.env.get_template(HTML_TEMPLATE)
            self.text_template = self.env.get_template(TEXT_TEMPLATE)
            # The CSS depends only on the brand: render it once, and premailer parses it once.
            self.css = self.env.get_template(CSS_TEMPLATE).render(brand=settings.brand)
        except jinja2.TemplateError as exc:
            # an override's mistake names the override, the theme's the theme's file
            where = getattr(exc, "filename", None) or directory
            raise RenderError(f"template {where}: {_describe(exc)}") from None

    def labels(self) -> dict[str, str]:
        """The small headings above blocks: ``[labels]``, else in the publication's language."""
        _ = self.translations.gettext
        chosen = self.settings.labels
        return {
            "this_week": chosen.this_week or _("This week"),
            "related": chosen.related or _("Related stories"),
            "spotlight": chosen.spotlight or _("Spotlight"),
            "more_from_us": chosen.more_from_us or _("More from us"),
        }

    def context(self, issue: Issue, images: ImageSet | None = None) -> dict[str, Any]:
        settings = self.settings
        labels = self.labels()
        parts: list[dict[str, Any]] = []
        for part in issue.body:
            if isinstance(part, Section):
                parts.append(
                    {
                        "kind": "section",
                        "heading": part.heading,
                        "anchor": part.anchor,
                        "blocks": part.blocks,
                        "rows": rows(part.blocks),
                    }
                )
            elif isinstance(part, Spotlight):
                image, blocks = spotlight_layout(part.blocks)
                parts.append(
                    {
                        "kind": "spotlight",
                        "label": part.label or labels["spotlight"],
                        "heading": part.heading,
                        "anchor": part.anchor,
                        "image": image,
                        "blocks": blocks,
                        "all": part.blocks,
                    }
                )
            elif isinstance(part, CallToAction):
                parts.append({"kind": "cta", "item": part})
            elif isinstance(part, OtherLists):
                offered = offered_lists(part, settings, issue.list)
                if offered:
                    parts.append(
                        {
                            "kind": "lists",
                            "heading": part.heading or labels["more_from_us"],
                            "intro": part.intro,
                            "lists": [
                                {"list": ml, "url": join_url_placeholder(ml.slug)} for ml in offered
                            ],
                        }
                    )
        return {
            "issue": issue,
            "publication": settings.publication,
            "brand": settings.brand,
            "mailing_list": settings.mailing_list(issue.list),
            "archive_url": archive_url(issue, settings),
            "unsubscribe_url": UNSUBSCRIBE_URL_PLACEHOLDER,
            "preheader_filler": PREHEADER_FILLER,
            "parts": parts,
            "labels": labels,
            "images": images if images is not None else ImageSet(settings),
            "reading_minutes": reading_minutes(issue),
        }

    # -- the stages ---------------------------------------------------------------------------

    def render_mjml(self, issue: Issue, context: dict[str, Any] | None = None) -> str:
        try:
            return self.html_template.render(context or self.context(issue))
        except jinja2.TemplateError as exc:
            raise RenderError(f"{HTML_TEMPLATE}: {_describe(exc)}") from None

    def compile_mjml(self, source: str) -> str:
        try:
            # fonts={} keeps mjml from linking Google Fonts: the email loads nothing remote
            return str(mjml2html(source, fonts={}))
        except Exception as exc:  # the Rust extension raises plain exceptions
            raise RenderError(f"MJML could not compile the issue: {exc}") from None

    def inline_css(self, html: str) -> str:
        """Put the CSS of ``email.css.j2`` onto the elements; MJML's own ``<style>`` stays as is.

        MJML's head styles (resets, the column and media-query rules, Outlook fixes) are meant
        to stay in ``<head>``; premailer is told to leave them alone, which keeps the
        conditionals intact, the HTML small and the inliner fast (it only matches our rules).
        """
        head, end_of_head, body = html.partition("</head>")  # <style> only lives in <head>
        marked = _MJML_STYLE.sub(_ignore_style, head) + end_of_head + body
        inliner = _Inliner(
            marked,
            css_text=[self.css],
            allow_network=False,
            keep_style_tags=False,
            strip_important=False,  # the media queries need !important to beat inline styles
            remove_classes=False,  # and they select by class
            disable_validation=True,
            cache_css_parsing=True,
            # MJML already wrote pixel widths on images; premailer would replace them with 100%
            disable_basic_attributes=["width", "height"],
            cssutils_logging_level=logging.CRITICAL,
            # premailer would parse every <img> style with cssutils to copy CSS floats into
            # align=; we never float images, and it was half the inlining time
            align_floating_images=False,
        )
        try:
            result = str(inliner.transform())
        except Exception as exc:  # premailer wraps cssutils and lxml, which raise freely
            raise RenderError(f"CSS inlining failed: {exc}") from None
        # premailer drops the marker from the styles it skipped, except those with a media
        # attribute, which it skips before it looks at the marker
        result = result.replace(_IGNORE_ATTRIBUTE, "")
        result = _HEIGHT_AUTO.sub(r"\1", result)
        # lxml drops the doctype; without it clients fall back to quirks mode
        if not result.lstrip().lower().startswith("<!doctype"):
            result = "<!doctype html>\n" + result
        return result

    def render_html(self, issue: Issue, context: dict[str, Any] | None = None) -> str:
        return self.inline_css(self.compile_mjml(self.render_mjml(issue, context)))

    def render_text(self, issue: Issue, context: dict[str, Any] | None = None) -> str:
        try:
            return tidy(self.text_template.render(context or self.context(issue)))
        except jinja2.TemplateError as exc:
            raise RenderError(f"{TEXT_TEMPLATE}: {_describe(exc)}") from None

    def render(self, issue: Issue, images: ImageSet | None = None) -> RenderedIssue:
        """The issue as HTML and text, with the unsubscribe placeholder left for delivery.

        ``images`` are the derivatives to link (:func:`newsletter.images.derive_images`);
        without them the email links the originals.
        """
        context = self.context(issue, images)
        return RenderedIssue(
            issue=issue,
            subject=issue.subject,
            preheader=issue.preheader,
            html=self.render_html(issue, context),
            text=self.render_text(issue, context),
            archive_url=context["archive_url"],
        )


def render_issue(issue: Issue, settings: Settings, images: ImageSet | None = None) -> RenderedIssue:
    """One-off rendering; build a :class:`Renderer` instead when rendering many."""
    return Renderer(settings).render(issue, images)


class _Inliner(premailer.Premailer):  # type: ignore[misc]
    """premailer, remembering the rules it derives from a stylesheet between documents.

    premailer caches the cssutils parse but redoes the rule extraction (specificity, property
    serialisation) on every call; our stylesheet only changes with the brand, so the result
    is kept, keyed by the CSS text.
    """

    _rules_cache: ClassVar[dict[tuple[str, int], tuple[list[Any], list[Any]]]] = {}

    def _parse_style_rules(self, css_body: str, ruleset_index: int) -> tuple[list[Any], list[Any]]:
        key = (css_body, ruleset_index)
        cached = self._rules_cache.get(key)
        if cached is None:
            if len(self._rules_cache) > 32:  # a handful of brands at most; never grow unbounded
                self._rules_cache.clear()
            rules, leftover = super()._parse_style_rules(css_body, ruleset_index)
            cached = self._rules_cache[key] = (list(rules), list(leftover))
        # callers extend and sort their own lists; hand out copies all the same
        return list(cached[0]), list(cached[1])


_IGNORE_ATTRIBUTE = ' data-premailer="ignore"'
# A <style> tag outside Outlook's conditional comments (those premailer cannot see anyway).
_MJML_STYLE = re.compile(r"(<!--\[if.*?<!\[endif\]-->)|<style\b", re.DOTALL)


def _ignore_style(match: re.Match[str]) -> str:
    return match.group(1) or "<style" + _IGNORE_ATTRIBUTE


def _describe(exc: jinja2.TemplateError) -> str:
    line = getattr(exc, "lineno", None)
    return f"line {line}: {exc.message}" if line else str(exc.message or exc)
