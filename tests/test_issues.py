"""The issue parser: front matter and every body block become the model the renderers share."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from newsletter.checks import check_issue
from newsletter.config import Settings
from newsletter.errors import IssueError
from newsletter.issues import load_issue, parse_issue, slug_for
from newsletter.model import (
    BulletList,
    CallToAction,
    Figure,
    IssueStatus,
    Paragraph,
    Quote,
    RelatedStories,
    Section,
    Spotlight,
)
from tests.conftest import REPO

FRONT = """---
title: Test issue
date: 2026-11-20
authors: [Ana Brook]
status: ready
---
"""


def issue_from(settings: Settings, body: str, *, front: str = FRONT, name: str = "") -> Path:
    path = settings.issues_dir / (name or "2026-11-20-test-issue.md")
    path.write_text(front + body, encoding="utf-8")
    return path


def blocks_of(settings: Settings, body: str) -> tuple[object, ...]:
    issue = load_issue(issue_from(settings, "## Section\n\n" + body), settings)
    return issue.sections[0].blocks


def test_sample_issues_load(settings: Settings) -> None:
    paths = sorted(settings.issues_dir.glob("*.md"))
    assert len(paths) >= 2
    issues = [load_issue(path, settings) for path in paths]
    ready = [i for i in issues if i.status is IssueStatus.READY]
    assert {i.date for i in ready} >= {date(2026, 11, 20), date(2026, 11, 27)}
    for issue in ready:
        # every feature of a digest is used by the ready samples
        assert issue.hero
        assert issue.hero.alt
        assert issue.hero.caption
        assert issue.hero.credit
        assert 3 <= len(issue.headlines) <= 6
        assert issue.spotlight
        assert issue.cta
        kinds = {type(b) for s in issue.sections for b in s.blocks}
        assert {Paragraph, BulletList, Quote, Figure, RelatedStories} <= kinds


def test_front_matter_fields(settings: Settings) -> None:
    front = """---
title: "River week: the <new> bridge & more"
date: 2026-11-20
authors:
  - Ana Brook
  - Tomasz Vale
preheader: Short preview
hero:
  src: images/hero-river.png
  alt: The river at dawn
  caption: The Mill at *dawn*
  credit: Photo by Ana
headlines:
  - One [link](https://millbrook.example/one)
  - Two
  - Three
send_at: 2026-11-20 13:00
status: ready
list: business
---
"""
    issue = load_issue(issue_from(settings, "## A\n\nText.\n", front=front), settings)
    assert issue.title == "River week: the <new> bridge & more"
    assert issue.slug == "test-issue"
    assert issue.authors == ("Ana Brook", "Tomasz Vale")
    assert issue.subject == "The Test Weekly: River week: the <new> bridge & more"
    assert issue.preheader == "Short preview"
    assert issue.list == "business"
    assert issue.status is IssueStatus.READY
    assert issue.hero is not None
    assert issue.hero.src == "images/hero-river.png"
    assert issue.hero.caption is not None
    assert issue.hero.caption.html == "The Mill at <em>dawn</em>"
    assert issue.hero.credit == "Photo by Ana"
    assert issue.headlines[0].html == 'One <a href="https://millbrook.example/one">link</a>'
    assert issue.headlines[0].text == "One link <https://millbrook.example/one>"
    # a bare time is the publication's clock (Europe/Kyiv in the test config), not UTC
    assert issue.send_at is not None
    assert issue.send_at.utcoffset() == timedelta(hours=2)
    assert issue.send_at.replace(tzinfo=None) == datetime(2026, 11, 20, 13, 0)


def test_defaults(settings: Settings) -> None:
    front = "---\ntitle: Plain\ndate: 2026-11-20\nauthors: Ana\n---\n"
    issue = load_issue(issue_from(settings, "Opening words here.\n", front=front), settings)
    assert issue.status is IssueStatus.DRAFT  # nothing goes out unless an editor says so
    assert issue.list is None
    assert issue.authors == ("Ana",)
    assert issue.subject == "The Test Weekly: Plain"
    assert issue.preheader == "Opening words here."
    assert issue.send_at is None


def test_preheader_defaults_to_headlines(settings: Settings) -> None:
    front = FRONT.replace("status", "headlines: [First *one*, Second, Third]\nstatus")
    issue = load_issue(issue_from(settings, "## A\n\nx\n", front=front), settings)
    assert issue.preheader == "First one · Second · Third"


def test_header_fields_cannot_carry_line_breaks(settings: Settings) -> None:
    front = '---\ntitle: "Two\\r\\nBcc: x@evil.example"\ndate: 2026-11-20\nauthors: A\n---\n'
    issue = load_issue(issue_from(settings, "x\n", front=front), settings)
    assert "\n" not in issue.subject
    assert "\r" not in issue.subject
    assert issue.title == "Two Bcc: x@evil.example"


def test_slug_from_file_name() -> None:
    assert slug_for(Path("issues/2026-11-20-river-week.md")) == "river-week"
    assert slug_for(Path("river-week.md")) == "river-week"


def test_paragraph_inline_markup(settings: Settings) -> None:
    (block,) = blocks_of(
        settings,
        "Text with *em*, **strong**, `code`, ~~gone~~, [a link](https://x.example/a?b=1&c=2)\n"
        "and <b>raw html</b> & an ampersand.  \nAfter a hard break.\n",
    )
    assert isinstance(block, Paragraph)
    html = block.content.html
    assert "<em>em</em>" in html
    assert "<strong>strong</strong>" in html
    assert "<code>code</code>" in html
    assert "<s>gone</s>" in html
    assert '<a href="https://x.example/a?b=1&amp;c=2">a link</a>' in html
    assert "&lt;b&gt;raw html&lt;/b&gt; &amp; an ampersand." in html
    assert "<br>" in html
    assert block.content.text == (
        "Text with em, strong, code, gone, a link <https://x.example/a?b=1&c=2>"
        " and <b>raw html</b> & an ampersand.\nAfter a hard break."
    )


def test_site_relative_links_become_absolute(settings: Settings) -> None:
    (block,) = blocks_of(settings, "See [the archive](/archive/old).\n")
    assert isinstance(block, Paragraph)
    assert 'href="https://news.test.example/archive/old"' in block.content.html


def test_lists(settings: Settings) -> None:
    bullets, numbers = blocks_of(settings, "- one\n- *two*\n\n1. first\n2. second\n")
    assert isinstance(bullets, BulletList)
    assert not bullets.ordered
    assert [i.html for i in bullets.items] == ["one", "<em>two</em>"]
    assert isinstance(numbers, BulletList)
    assert numbers.ordered
    assert [i.text for i in numbers.items] == ["first", "second"]


def test_quote_with_attribution(settings: Settings) -> None:
    (quote,) = blocks_of(settings, "> We did it.\n>\n> Finally.\n>\n> — Cllr Osei\n")
    assert isinstance(quote, Quote)
    assert [p.text for p in quote.paragraphs] == ["We did it.", "Finally."]
    assert quote.attribution == "Cllr Osei"


def test_quote_without_attribution(settings: Settings) -> None:
    (quote,) = blocks_of(settings, "> Just words.\n")
    assert isinstance(quote, Quote)
    assert quote.attribution is None


def test_image_paragraph_is_a_figure(settings: Settings) -> None:
    (figure,) = blocks_of(settings, '![The bridge](images/footbridge.png "It opens *Saturday*")\n')
    assert isinstance(figure, Figure)
    assert figure.image.src == "images/footbridge.png"
    assert figure.image.alt == "The bridge"
    assert figure.image.caption is not None
    assert figure.image.caption.html == "It opens <em>Saturday</em>"
    assert figure.image.credit is None


def test_figure_block_with_caption_and_credit(settings: Settings) -> None:
    (figure,) = blocks_of(
        settings,
        '::: figure credit="Photo: Dara Okafor"\n![The bridge](images/footbridge.png)\n\n'
        "Lifted into place in *two* halves.\n:::\n",
    )
    assert isinstance(figure, Figure)
    assert figure.image.alt == "The bridge"
    assert figure.image.caption is not None
    assert figure.image.caption.html == "Lifted into place in <em>two</em> halves."
    assert figure.image.credit == "Photo: Dara Okafor"


def test_related_stories(settings: Settings) -> None:
    (related,) = blocks_of(
        settings,
        "::: related More on the river\n"
        "- [Flood record](https://millbrook.example/a) — Every flood since 2009.\n"
        "- [How barriers work](https://millbrook.example/b): Panels and posts.\n"
        ":::\n",
    )
    assert isinstance(related, RelatedStories)
    assert related.heading == "More on the river"
    assert [(s.title, s.url, s.teaser) for s in related.stories] == [
        ("Flood record", "https://millbrook.example/a", "Every flood since 2009."),
        ("How barriers work", "https://millbrook.example/b", "Panels and posts."),
    ]


def test_related_default_heading(settings: Settings) -> None:
    (related,) = blocks_of(settings, "::: related\n- [T](https://x.example/) — t\n:::\n")
    assert isinstance(related, RelatedStories)
    # no heading of its own: the template shows "Related stories" in the publication's language
    assert related.heading is None


def test_spotlight_and_cta(settings: Settings) -> None:
    body = (
        "## News\n\nText.\n\n"
        ':::: spotlight The ferry keeper label="People"\n'
        "::: figure\n![Ivo Marsh](images/keeper.png)\n:::\n\n"
        "Thirty-four winters.\n"
        "::::\n\n"
        "::: cta\nSupport *local* news.\n\n[Become a supporter](https://millbrook.example/s)\n:::\n"
    )
    issue = load_issue(issue_from(settings, body), settings)
    assert issue.spotlight is not None
    assert issue.spotlight.heading == "The ferry keeper"
    assert issue.spotlight.label == "People"
    figure, paragraph = issue.spotlight.blocks
    assert isinstance(figure, Figure)
    assert figure.image.alt == "Ivo Marsh"
    assert isinstance(paragraph, Paragraph)
    assert paragraph.content.text == "Thirty-four winters."
    assert issue.cta is not None
    assert issue.cta.button_label == "Become a supporter"
    assert issue.cta.url == "https://millbrook.example/s"
    (text,) = issue.cta.blocks
    assert isinstance(text, Paragraph)
    assert text.content.html == "Support <em>local</em> news."
    # the spotlight and CTA are not blocks of the section they were written under, but they
    # follow it in the order written
    assert len(issue.sections) == 1
    assert len(issue.sections[0].blocks) == 1
    assert [type(p) for p in issue.body] == [Section, Spotlight, CallToAction]


def test_intro_and_sections(settings: Settings) -> None:
    body = "Opening.\n\n## First\n\nOne.\n\n## Second\n\nTwo.\n\nMore.\n"
    issue = load_issue(issue_from(settings, body), settings)
    assert [type(b) for b in issue.intro] == [Paragraph]
    assert [(s.heading, len(s.blocks)) for s in issue.sections] == [("First", 1), ("Second", 2)]
    assert issue.sections[1].line == FRONT.count("\n") + 7


def test_load_issue_raises_first_error_with_line(settings: Settings) -> None:
    path = issue_from(settings, "## A\n\n![](images/x.png)\n\n[bad](htp:/nowhere)\n")
    with pytest.raises(IssueError) as info:
        load_issue(path, settings)
    assert info.value.path == path
    assert info.value.line == FRONT.count("\n") + 3
    assert "no alt text" in str(info.value)
    assert str(info.value).startswith(f"{path}:{info.value.line}: ")


def test_unreadable_files(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(IssueError, match="no such file"):
        load_issue(tmp_path / "missing.md", settings)
    binary = tmp_path / "2026-11-20-binary.md"
    binary.write_bytes(b"---\ntitle: \xff\xfe\n")
    with pytest.raises(IssueError, match="not UTF-8") as info:
        load_issue(binary, settings)
    assert info.value.line == 2


def test_parse_result_collects_everything(settings: Settings) -> None:
    text = FRONT.replace("status: ready", "status: redy\ntitel: x") + "## Empty\n\n## Full\n\nx\n"
    result = parse_issue(text, path=Path("issues/2026-11-20-x.md"), settings=settings)
    assert result.issue is None
    messages = [p.message for p in result.errors]
    assert any("'titel'" in m and "did you mean 'title'" in m for m in messages)
    assert any("status 'redy'" in m and "did you mean 'ready'" in m for m in messages)
    assert any("section 'Empty' is empty" in m for m in messages)


def test_documented_examples_parse_cleanly(settings: Settings) -> None:
    """Every example in docs/issue-format.md, assembled into one issue, passes check."""
    doc = (REPO / "docs" / "issue-format.md").read_text(encoding="utf-8")
    front = re.findall(r"```yaml\n(.*?)```", doc, re.DOTALL)[0]
    bodies = re.findall(r"```markdown\n(.*?)```", doc, re.DOTALL)
    assert len(bodies) >= 7
    path = settings.issues_dir / "2026-11-20-docs.md"
    path.write_text(front + "\n## Examples\n\n" + "\n".join(bodies), encoding="utf-8")
    problems = check_issue(path, settings)
    assert [str(p) for p in problems if p.is_error] == []
    issue = load_issue(path, settings)
    assert issue.hero is not None
    assert issue.spotlight is not None
    assert issue.cta is not None
