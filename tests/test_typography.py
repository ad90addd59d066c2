"""Faithful text: quotes, dashes and the ellipsis become typographic; nothing else changes.

markdown-it's "replacements" turned a caption's "(R)" into ® and "?!!!" into "!!!"; in news
copy that is a factual error. Each transformation docs/issue-format.md lists has a case here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import Settings
from newsletter.issues import load_issue
from newsletter.markup import markdown_parser, typography
from newsletter.model import Figure, Paragraph, RelatedStories

FRONT = """---
title: {title}
date: 2026-11-20
authors: ["Seán O'Neill", "Ana Brook"]
subject: '"Quoted" subject -- with a dash'
preheader: It's the preheader...
hero:
  src: images/hero-river.png
  alt: The "old" mill
  caption: Putin (R) and Lukashenko (L) -- at the table
  credit: "Photo: AP/Reuters (C) 2026 -- it's theirs"
status: ready
---
"""

# (typed, shown): what every piece of text an editor writes becomes
KEPT_AS_TYPED = [
    ("Putin (R) and Lukashenko (L)", "Putin (R) and Lukashenko (L)"),
    ("(C) 2026 (c) (TM) (tm) (r) (P)", "(C) 2026 (c) (TM) (tm) (r) (P)"),
    ("Temperature +-2 degrees", "Temperature +-2 degrees"),
    ("Really?!!!", "Really?!!!"),
    ("What????", "What????"),
    ("Wow!!!!!", "Wow!!!!!"),
    ("Wait,, what", "Wait,, what"),
    ("and so on.... the end", "and so on.... the end"),
    ("two.. dots", "two.. dots"),
    ("CAPITALS stay CAPITALS", "CAPITALS stay CAPITALS"),
    ("run --dry-run first", "run --dry-run first"),
    ("a ---- rule", "a ---- rule"),
]
TRANSFORMED = [
    ('"double"', "\u201cdouble\u201d"),
    ("'single'", "\u2018single\u2019"),
    ("it's", "it\u2019s"),
    ("pages 10--12", "pages 10\u201312"),
    ("this -- that", "this \u2013 that"),
    ("this---that", "this\u2014that"),
    ("this --- that", "this \u2014 that"),
    ("wait...", "wait\u2026"),
]


@pytest.mark.parametrize(("typed", "shown"), KEPT_AS_TYPED + TRANSFORMED)
def test_plain_text_typography(typed: str, shown: str) -> None:
    assert typography(typed) == shown


@pytest.mark.parametrize(("typed", "shown"), KEPT_AS_TYPED + TRANSFORMED)
def test_body_typography_matches_plain_text(typed: str, shown: str) -> None:
    """One rule set: the Markdown body and plain fields give the same result."""
    html = markdown_parser().renderInline(typed)
    assert html.replace("&quot;", '"') == shown.replace("&", "&amp;")


def test_markup_characters_stay_text_in_plain_fields() -> None:
    assert typography("*not emphasis* and [not a link](x)") == "*not emphasis* and [not a link](x)"


def test_code_autolinks_and_escapes_are_left_alone() -> None:
    md = markdown_parser()
    assert md.renderInline("`a--b...`") == "<code>a--b...</code>"
    html = md.renderInline("<https://a--b.example/x...y>")
    assert ">https://a--b.example/x...y</a>" in html
    # a backslash keeps two hyphens an editor means literally
    assert md.renderInline("\\-\\- kept") == "-- kept"


def write(settings: Settings, title: str, body: str) -> Path:
    path = settings.issues_dir / "2026-11-20-typography.md"
    path.write_text(FRONT.format(title=title) + body, encoding="utf-8")
    return path


def test_every_field_gets_the_same_treatment(settings: Settings) -> None:
    body = (
        '## Section\n\nPutin (R) met him -- again?!!! +- "quotes"...\n\n'
        '::: figure credit="AP (R) -- it\'s ours"\n'
        '![Leaders (R) and (L)](images/footbridge.png)\n\nLeft (L), right (R) -- "both".\n:::\n\n'
        "::: related Don't miss\n"
        '- [The "deal" -- explained (R)](https://x.example/a) — It\'s +- done...\n:::\n'
    )
    issue = load_issue(write(settings, "'\"Title\" -- it''s (R) here?!!!'", body), settings)
    assert issue.title == "\u201cTitle\u201d \u2013 it\u2019s (R) here?!!!"
    assert issue.authors == ("Se\u00e1n O\u2019Neill", "Ana Brook")
    assert issue.subject == "\u201cQuoted\u201d subject \u2013 with a dash"
    assert issue.preheader == "It\u2019s the preheader\u2026"
    assert issue.hero is not None
    assert issue.hero.alt == "The \u201cold\u201d mill"
    assert issue.hero.caption is not None
    assert issue.hero.caption.text == "Putin (R) and Lukashenko (L) \u2013 at the table"
    # the credit keeps the editor's case and its (C)
    assert issue.hero.credit == "Photo: AP/Reuters (C) 2026 \u2013 it\u2019s theirs"
    paragraph, figure, related = issue.sections[0].blocks
    assert isinstance(paragraph, Paragraph)
    assert paragraph.content.text == (
        "Putin (R) met him \u2013 again?!!! +- \u201cquotes\u201d\u2026"
    )
    assert isinstance(figure, Figure)
    assert figure.image.credit == "AP (R) \u2013 it\u2019s ours"
    assert figure.image.alt == "Leaders (R) and (L)"
    assert figure.image.caption is not None
    assert figure.image.caption.text == "Left (L), right (R) \u2013 \u201cboth\u201d."
    assert isinstance(related, RelatedStories)
    assert related.heading == "Don\u2019t miss"
    (story,) = related.stories
    assert story.title == "The \u201cdeal\u201d \u2013 explained (R)"
    assert story.teaser == "It\u2019s +- done\u2026"


def test_credit_is_not_uppercased_by_css(settings: Settings) -> None:
    css = (settings.templates_dir / "email" / "email.css.j2").read_text(encoding="utf-8")
    credit_rule = next(line for line in css.splitlines() if line.startswith(".credit"))
    assert "uppercase" not in credit_rule
