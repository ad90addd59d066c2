"""The digest's blocks: written order, anchors, calls to action, cards, byline, mail craft."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import lxml.html
import pytest

from newsletter.checks import check_issue
from newsletter.config import Settings
from newsletter.issues import anchor_for, load_issue, parse_issue
from newsletter.model import CallToAction, CtaPosition, Section, Spotlight
from newsletter.palette import contrast, palette
from newsletter.rendering import Renderer, reading_minutes

FRONT = """---
title: Blocks
date: 2026-11-20
authors: [Ana Brook, Tomasz Vale]
headlines:
  - "[Jump to the vote](#the-vote) and **bold** inside."
  - "[The vote, again](#the-vote) in another headline."
  - Plain line.
status: ready
---
"""
CTA = """::: cta Keep local news going
First paragraph of the appeal.

Second paragraph, with *emphasis*.

[Become a member](https://millbrook.example/join)
[Gift a membership](https://millbrook.example/gift)
:::
"""
BANNER = """::: cta position=top
Members pay for this newsletter.

[Join](https://millbrook.example/join?from=banner)
:::
"""


def write(settings: Settings, body: str, front: str = FRONT) -> Path:
    path = settings.issues_dir / "2026-11-20-blocks.md"
    path.write_text(front + body, encoding="utf-8")
    return path


def body_in_order() -> str:
    return (
        BANNER
        + "Intro text.\n\n## The vote\n\nBefore the spotlight.\n\n"
        + ':::: spotlight The ferry keeper {#keeper} label="People"\n'
        + "::: figure\n![Ivo](images/keeper.png)\n:::\n\nKeeper text.\n::::\n\n"
        + "After the spotlight, still in the vote section; [the keeper](#keeper).\n\n"
        + CTA
        + "\n## Closing\n\nThe last words.\n"
    )


def test_parts_keep_the_order_written(settings: Settings) -> None:
    issue = load_issue(write(settings, body_in_order()), settings)
    kinds = [(type(p).__name__, getattr(p, "heading", None)) for p in issue.body]
    assert kinds == [
        ("Section", None),  # the intro
        ("Section", "The vote"),
        ("Spotlight", "The ferry keeper"),
        ("Section", None),  # the vote section, continued after the spotlight
        ("CallToAction", "Keep local news going"),
        ("Section", "Closing"),
    ]
    assert issue.banner is not None
    assert issue.banner.position is CtaPosition.TOP
    assert isinstance(issue.body[3], Section)
    assert issue.body[3].blocks[0].content.text.startswith("After the spotlight")
    html = Renderer(settings).render(issue).html
    text = " ".join(lxml.html.fromstring(html).body.text_content().split())
    order = [
        "Members pay for this newsletter",
        "Blocks",  # the title: the banner is above it
        "Intro text",
        "Before the spotlight",
        "Keeper text",
        "After the spotlight",
        "First paragraph of the appeal",
        "The last words",
    ]
    positions = [text.index(words) for words in order]
    assert positions == sorted(positions), list(zip(order, positions, strict=True))
    plain = Renderer(settings).render(issue).text
    positions = [plain.index(w) for w in order[2:]]
    assert positions == sorted(positions)


def test_anchors_are_stable_and_linkable(settings: Settings) -> None:
    assert anchor_for("Council backs the flood barrier") == "council-backs-the-flood-barrier"
    assert anchor_for("A footbridge, at last!") == "a-footbridge-at-last"
    assert anchor_for("The ferry keeper’s last winter") == "the-ferry-keepers-last-winter"
    assert anchor_for("Вода і світло") == "вода-і-світло"
    assert anchor_for("???") == "section"
    body = (
        "## Same\n\nOne.\n\n## Same\n\nTwo.\n\n## Renamed heading {#stable}\n\nThree.\n\n"
        "See [the second](#same-1) and [the third](#stable).\n"
    )
    front = FRONT.replace("(#the-vote)", "(#same)")
    issue = load_issue(write(settings, body, front), settings)
    assert [s.anchor for s in issue.sections] == ["same", "same-1", "stable"]
    assert issue.sections[2].heading == "Renamed heading"
    rendered = Renderer(settings).render(issue)
    doc = lxml.html.fromstring(rendered.html)
    assert [h.get("id") for h in doc.xpath("//h2[@id]")] == ["same", "same-1", "stable"]
    assert doc.xpath("//a[@href='#same-1']/text()") == ["the second"]
    assert doc.xpath("//ul[contains(@class, 'headlines')]//a[@href='#same']")
    # a jump inside the email shows as its words in the text part, with no useless "<#x>"
    assert "#same" not in rendered.text
    assert "#stable" not in rendered.text
    assert "See the second and the third." in rendered.text


def test_an_unknown_anchor_is_an_error_at_its_line(settings: Settings) -> None:
    body = "## The vote\n\nText, and [a typo](#the-vot) here.\n"
    path = write(settings, body, FRONT.replace("[The vote, again](#the-vote)", "[X](#nowhere)"))
    problems = [p for p in check_issue(path, settings) if p.is_error]
    assert [(p.line, p.message.split(":")[0]) for p in problems] == [
        (7, "the link to #nowhere goes nowhere"),
        (13, "the link to #the-vot goes nowhere"),
    ]
    assert "did you mean 'the-vote'" in problems[1].message
    assert str(problems[0]).startswith(f"{path}:7: error:")


def test_headlines_are_regular_weight_so_bold_shows(settings: Settings) -> None:
    issue = load_issue(write(settings, "## The vote\n\nText.\n"), settings)
    doc = lxml.html.fromstring(Renderer(settings).render(issue).html)
    items = doc.xpath("//ul[contains(@class, 'headlines')]/li")
    assert items
    assert all("font-weight:normal" in li.get("style").replace(" ", "") for li in items)
    assert items[0].xpath(".//strong/text()") == ["bold"]


def test_call_to_action_structure(settings: Settings) -> None:
    issue = load_issue(write(settings, "## The vote\n\nText.\n\n" + CTA), settings)
    cta = issue.cta
    assert isinstance(cta, CallToAction)
    assert cta.heading == "Keep local news going"
    assert [b.content.plain for b in cta.blocks] == [
        "First paragraph of the appeal.",
        "Second paragraph, with emphasis.",
    ]
    assert [(b.label, b.url) for b in cta.buttons] == [
        ("Become a member", "https://millbrook.example/join"),
        ("Gift a membership", "https://millbrook.example/gift"),
    ]
    rendered = Renderer(settings).render(issue)
    doc = lxml.html.fromstring(rendered.html)
    band = doc.xpath("//div[contains(@class, 'cta')]")[0]
    assert band.xpath(".//h2/text()") == ["Keep local news going"]
    assert len(band.xpath(".//p[contains(@class, 'cta-paragraph')]")) == 2
    assert "<br>" not in lxml.html.tostring(band, encoding="unicode")
    links = band.xpath(".//td[contains(@class, 'button')]//a")
    assert [a.text_content() for a in links] == ["Become a member", "Gift a membership"]
    assert "Become a member:\nhttps://millbrook.example/join" in rendered.text
    assert "Gift a membership:\nhttps://millbrook.example/gift" in rendered.text


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            "::: cta\nText.\n\n[A](https://x.example/a) [B](https://x.example/b) "
            "[C](https://x.example/c)\n:::\n",
            "at most two buttons",
        ),
        ("::: cta position=side\nText.\n\n[A](https://x.example/a)\n:::\n", "position='side'"),
        ("::: cta colour=red\nText.\n\n[A](https://x.example/a)\n:::\n", "unknown attribute"),
        ("::: cta\nText and [a link](https://x.example/a) in it.\n:::\n", "ends with its button"),
        (BANNER + "\n" + BANNER, "only one call to action can sit at the top"),
        (CTA + "\n" + CTA, "only one call to action per issue"),
    ],
)
def test_call_to_action_mistakes(settings: Settings, block: str, message: str) -> None:
    result = parse_issue(
        FRONT + "## The vote\n\nText.\n\n" + block,
        path=settings.issues_dir / "2026-11-20-x.md",
        settings=settings,
    )
    assert any(message in p.message for p in result.errors), result.problems


def test_related_cards_with_thumbnails_and_long_teasers(settings: Settings) -> None:
    long = "A teaser that goes on " * 8
    body = (
        "## The vote\n\nText.\n\n::: related\n"
        "- ![A gauge](images/gauge.png) [Reading the gauge](https://x.example/g) — Short.\n"
        f"- [No picture](https://x.example/n) — {long}\n"
        "- ![A lorry](images/gritter.png) [The gritter](https://x.example/l) — Night shift.\n"
        ":::\n"
    )
    path = write(settings, body, FRONT)
    problems = check_issue(path, settings)
    (warning,) = problems
    assert warning.line == 17
    assert "a card holds about 120" in warning.message
    issue = load_issue(path, settings)
    (cards,) = [b for b in issue.sections[0].blocks if b.kind == "cards"]
    assert [s.thumbnail.alt if s.thumbnail else None for s in cards.stories] == [
        "A gauge",
        None,
        "A lorry",
    ]
    doc = lxml.html.fromstring(Renderer(settings).render(issue).html)
    rows = doc.xpath("//table[contains(@class, 'cards')]/tr[td[@class='card']]")
    # two abreast, and the odd last card keeps its width beside an empty cell
    assert [len(r.xpath("td[@class='card']")) for r in rows] == [2, 1]
    assert rows[1].xpath("td[@class='card-empty']")
    assert len(doc.xpath("//td[@class='card']//img")) == 2


def test_byline_has_the_date_and_reading_time(settings: Settings) -> None:
    words = " ".join(["word"] * 700)
    issue = load_issue(write(settings, f"## The vote\n\n{words}\n"), settings)
    assert reading_minutes(issue) == 4  # 700 words and the headlines at 220 a minute
    rendered = Renderer(settings).render(issue)
    doc = lxml.html.fromstring(rendered.html)
    byline = " ".join(doc.find_class("byline")[0].text_content().split())
    assert byline == "By Ana Brook and Tomasz Vale · Friday, November 20, 2026 · 4 min read"
    assert doc.xpath("//p[@class='byline']/time/@datetime") == ["2026-11-20"]
    assert "By Ana Brook and Tomasz Vale\n4 min read\n" in rendered.text


def test_mail_client_metas_and_dark_mode(settings: Settings) -> None:
    issue = load_issue(settings.issues_dir / "2026-12-11-first-snow.md", settings)
    html = Renderer(settings).render(issue).html
    doc = lxml.html.fromstring(html)
    metas = {m.get("name"): m.get("content") for m in doc.xpath("//head/meta[@name]")}
    assert metas["color-scheme"] == "light dark"
    assert metas["supported-color-schemes"] == "light dark"
    assert "x-apple-disable-message-reformatting" in metas
    assert metas["format-detection"].startswith("telephone=no")
    styles = "\n".join(doc.xpath("//head/style/text()"))
    assert "@media (prefers-color-scheme: dark)" in styles
    assert "[data-ogsc] h1" in styles
    assert "[data-ogsb] .paper" in styles
    dark = palette(settings.brand).dark
    assert f".paper, .paper > table {{ background: {dark.surface} !important;" in styles
    # not an HTML attribute: height is a number of pixels
    assert 'height="auto"' not in html
    assert not doc.xpath("//img[@height='auto']")


def test_dark_palette_reads_and_follows_the_brand(settings: Settings) -> None:
    for primary, accent in (("#1f3a5f", "#c0392b"), ("#000000", "#0000ff"), ("#7a0000", "#333333")):
        brand = dataclasses.replace(settings.brand, primary_color=primary, accent_color=accent)
        dark = palette(brand).dark
        assert contrast(dark.text, dark.surface) >= 4.5
        assert contrast(dark.heading, dark.surface) >= 4.5
        assert contrast(dark.label, dark.surface) >= 4.5
        assert contrast(dark.muted, dark.surface) >= 4.5
        assert contrast("#ffffff", dark.band) >= 4.5 or dark.band == primary
    chosen = dataclasses.replace(
        settings.brand, dark_surface_color="#101010", dark_primary_color="#88ccff"
    )
    assert palette(chosen).dark.surface == "#101010"
    assert palette(chosen).dark.heading == "#88ccff"


def test_dark_logo_swaps_in_dark_mode(settings: Settings) -> None:
    brand = dataclasses.replace(
        settings.brand,
        logo_url="https://news.test.example/images/logo.png",
        dark_logo_url="https://news.test.example/images/logo-dark.png",
    )
    local = dataclasses.replace(settings, brand=brand)
    issue = load_issue(local.issues_dir / "2026-11-20-flood-barrier-vote.md", local)
    doc = lxml.html.fromstring(Renderer(local).render(issue).html)
    (light,) = doc.find_class("logo-light")
    assert light.get("src").endswith("/logo.png")
    (dark,) = doc.find_class("logo-dark")
    style = dark.get("style").replace(" ", "")
    assert "display:none" in style
    assert "mso-hide:all" in style
    assert dark.xpath(".//img/@src") == ["https://news.test.example/images/logo-dark.png"]


def test_samples_stay_under_gmails_clip(settings: Settings) -> None:
    from newsletter.checks import GMAIL_CLIP_BYTES, SIZE_WARNING_BYTES, email_size
    from newsletter.images import plan_images

    renderer = Renderer(settings)
    for path in sorted(settings.issues_dir.glob("*.md")):
        issue = load_issue(path, settings)
        size = email_size(renderer.render(issue, plan_images(issue, settings)).html)
        assert size < SIZE_WARNING_BYTES < GMAIL_CLIP_BYTES, (path.name, size)


def test_sample_issue_uses_every_block(settings: Settings) -> None:
    issue = load_issue(settings.issues_dir / "2026-12-11-first-snow.md", settings)
    assert issue.banner is not None
    assert issue.cta is not None
    assert len(issue.cta.buttons) == 2
    assert isinstance(issue.spotlight, Spotlight)
    assert issue.other_lists is not None
    cards = [b for s in issue.sections for b in s.blocks if b.kind == "cards"]
    assert cards
    assert len(cards[0].stories) % 2 == 1
    assert all(s.thumbnail for s in cards[0].stories)
    assert any("(#" in h.html or 'href="#' in h.html for h in issue.headlines)
    assert any(b.kind == "quote" for s in issue.sections for b in s.blocks)
    assert re.search(r"href=\"#gauges\"", issue.headlines[1].html)


def test_more_from_us_offers_the_other_lists(settings: Settings) -> None:
    from newsletter.model import join_url_placeholder
    from newsletter.web.archive import public_html

    body = "## The vote\n\nText.\n\n::: newsletters\nAll free.\n:::\n"
    issue = load_issue(write(settings, body), settings)  # goes to the default list, weekly
    rendered = Renderer(settings).render(issue)
    doc = lxml.html.fromstring(rendered.html)
    names = [p.text_content() for p in doc.find_class("offer-name")]
    assert names == ["Business Brief"]  # every list but the issue's own
    (link,) = doc.find_class("join-link")
    assert link.get("href") == join_url_placeholder("business") == "%%JOIN_URL_BUSINESS%%"
    assert link.text_content() == "Add Business Brief to my inbox"
    assert "More from us" in doc.body.text_content()
    assert "* Business Brief\n  Add it to my inbox: %%JOIN_URL_BUSINESS%%" in rendered.text
    # in the archive the link is the subscribe page with that list ticked, for anyone
    public = public_html(
        rendered.html,
        subscribe_url="https://news.test.example/subscribe",
        join_urls={"%%JOIN_URL_BUSINESS%%": "https://news.test.example/subscribe?list=business"},
    )
    assert 'href="https://news.test.example/subscribe?list=business"' in public
    assert "%%" not in public


def test_more_from_us_names_its_lists_or_warns_when_there_are_none(settings: Settings) -> None:
    body = '## The vote\n\nText.\n\n::: newsletters Our other letters lists="business"\n:::\n'
    issue = load_issue(write(settings, body), settings)
    doc = lxml.html.fromstring(Renderer(settings).render(issue).html)
    assert "Our other letters" in doc.body.text_content()
    bad = '## The vote\n\nText.\n\n::: newsletters lists="busines"\n:::\n'
    errors = [p for p in check_issue(write(settings, bad), settings) if p.is_error]
    assert "no list named 'busines'" in errors[0].message
    assert "did you mean 'business'" in errors[0].message
    alone = dataclasses.replace(settings, lists={"weekly": settings.lists["weekly"]})
    warnings = check_issue(write(alone, "## The vote\n\nText.\n\n::: newsletters\n:::\n"), alone)
    assert any("has only one [lists.*]" in p.message for p in warnings)
    issue = load_issue(write(alone, "## The vote\n\nText.\n\n::: newsletters\n:::\n"), alone)
    assert "JOIN_URL" not in Renderer(alone).render(issue).html
