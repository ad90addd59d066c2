"""Rendering: an Issue becomes email HTML (Jinja -> MJML -> mjml-python -> premailer) and text.

A :class:`Renderer` builds its Jinja environment once and renders any number of issues; each
stage is its own method so the benchmark and the preview can time or reuse them. The output
holds :data:`~newsletter.model.UNSUBSCRIBE_URL_PLACEHOLDER` where each recipient's link goes;
nothing here is per recipient. No stage touches the network: fonts are off in MJML and
premailer may not fetch stylesheets.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar

import jinja2
import premailer
from mjml import mjml2html

from newsletter import urls
from newsletter.config import Settings
from newsletter.errors import RenderError
from newsletter.model import (
    UNSUBSCRIBE_URL_PLACEHOLDER,
    Block,
    Figure,
    Image,
    Issue,
    RelatedStories,
    RenderedIssue,
)
from newsletter.plaintext import join_names, tidy, underline, wrap
from newsletter.templating import Templates, environment, template_folder

HTML_TEMPLATE = "issue.mjml.j2"
TEXT_TEMPLATE = "issue.txt.j2"
CSS_TEMPLATE = "email.css.j2"
CARD_BACKGROUND = "#f6f5f1"
SPOTLIGHT_BACKGROUND = "#f3efe4"
# Invisible characters after the preheader keep inboxes from padding the preview with body
# text ("View this issue in your browser...").
PREHEADER_FILLER = "\u034f\u200c\u00a0" * 30


@dataclass(frozen=True)
class Widths:
    """Pixel widths of the layout; images are shown at these sizes on a desktop."""

    email: int = 600
    hero: int = 600
    figure: int = 544  # a section's column less 28 px padding each side
    spotlight_image: int = 212  # the picture beside the spotlight text (42 % column)
    spotlight_figure: int = 308  # a figure inside that text column


WIDTHS = Widths()


def displayed_images(issue: Issue) -> Iterator[tuple[Image, int]]:
    """Every image the issue shows, with the width it is shown at on a desktop."""
    if issue.hero:
        yield issue.hero, WIDTHS.hero
    for blocks in (issue.intro, *(s.blocks for s in issue.sections)):
        for block in blocks:
            if isinstance(block, Figure):
                yield block.image, WIDTHS.figure
    if issue.spotlight:
        image, rest = _spotlight_layout(issue.spotlight.blocks)
        if image:
            yield image, WIDTHS.spotlight_image
        for block in rest:
            if isinstance(block, Figure):
                yield block.image, WIDTHS.spotlight_figure if image else WIDTHS.figure


def _spotlight_layout(blocks: Sequence[Block]) -> tuple[Image | None, Sequence[Block]]:
    """A spotlight opening with a figure (and more after it) puts the picture beside the text."""
    first = blocks[0] if blocks else None
    if isinstance(first, Figure) and len(blocks) > 1:
        return first.image, blocks[1:]
    return None, blocks


def image_url(src: str, settings: Settings) -> str:
    """The absolute URL of an issue image: ``images/x.png`` -> ``{base_url}/images/x.png``."""
    return urls.issue_file_url(settings.publication.base_url, src)


def archive_url(issue: Issue, settings: Settings) -> str:
    """The issue's "view in browser" page."""
    return urls.archive_url(settings.publication.base_url, issue.slug)


def long_date(value: date) -> str:
    """``Friday 20 November 2026``, independent of the process locale."""
    days = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
    months = (
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    )
    return f"{days[value.weekday()]} {value.day} {months[value.month - 1]} {value.year}"


def rows(blocks: Sequence[Block]) -> list[dict[str, Any]]:
    """Group blocks for the MJML layout: runs of flowing blocks, and card grids two abreast.

    Cards need columns of their own, and MJML columns only live in a section, so a related
    block closes the running section and opens a row of card sections.
    """
    result: list[dict[str, Any]] = []
    for block in blocks:
        if isinstance(block, RelatedStories):
            stories = list(block.stories)
            pairs = [stories[i : i + 2] for i in range(0, len(stories), 2)]
            result.append({"kind": "cards", "heading": block.heading, "pairs": pairs})
        elif result and result[-1]["kind"] == "flow":
            result[-1]["blocks"].append(block)
        else:
            result.append({"kind": "flow", "blocks": [block]})
    return result


class Renderer:
    """Renders issues for one set of settings; build it once, it keeps its templates."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        directory = template_folder(settings, Templates.EMAIL)
        if not directory.is_dir():
            raise RenderError(f"template folder {directory} not found; check templates_dir")
        self.env = environment(
            settings,
            Templates.EMAIL,
            filters={
                "image_url": lambda src: image_url(str(src), settings),
                "longdate": long_date,
                "join_names": join_names,
                "wrap": wrap,
                "underline": underline,
            },
        )
        try:
            self.html_template = self.env.get_template(HTML_TEMPLATE)
            self.text_template = self.env.get_template(TEXT_TEMPLATE)
            # The CSS depends only on the brand: render it once, and premailer parses it once.
            self.css = self.env.get_template(CSS_TEMPLATE).render(brand=settings.brand)
        except jinja2.TemplateError as exc:
            raise RenderError(f"template {directory}: {_describe(exc)}") from None

    def context(self, issue: Issue) -> dict[str, Any]:
        settings = self.settings
        spotlight_image, spotlight_blocks = _spotlight_layout(
            issue.spotlight.blocks if issue.spotlight else ()
        )
        return {
            "issue": issue,
            "publication": settings.publication,
            "brand": settings.brand,
            "mailing_list": settings.mailing_list(issue.list),
            "archive_url": archive_url(issue, settings),
            "unsubscribe_url": UNSUBSCRIBE_URL_PLACEHOLDER,
            "preheader_filler": PREHEADER_FILLER,
            "intro": issue.intro,
            "intro_rows": rows(issue.intro),
            "sections": [
                {"heading": s.heading, "blocks": s.blocks, "rows": rows(s.blocks)}
                for s in issue.sections
            ],
            "spotlight_image": spotlight_image,
            "spotlight_blocks": spotlight_blocks,
            "spotlight_all": issue.spotlight.blocks if issue.spotlight else (),
            "card_background": CARD_BACKGROUND,
            "spotlight_background": SPOTLIGHT_BACKGROUND,
            "widths": WIDTHS,
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

    def render(self, issue: Issue) -> RenderedIssue:
        """The issue as HTML and text, with the unsubscribe placeholder left for delivery."""
        context = self.context(issue)
        return RenderedIssue(
            issue=issue,
            subject=issue.subject,
            preheader=issue.preheader,
            html=self.render_html(issue, context),
            text=self.render_text(issue, context),
            archive_url=context["archive_url"],
        )


def render_issue(issue: Issue, settings: Settings) -> RenderedIssue:
    """One-off rendering; build a :class:`Renderer` instead when rendering many."""
    return Renderer(settings).render(issue)


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
