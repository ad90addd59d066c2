"""Rendering: a real email (structure, escaping, no network) and a plain text that reads well."""

from __future__ import annotations

import dataclasses
import re
import secrets
import socket
from pathlib import Path
from typing import Any

import lxml.html
import pytest

from newsletter.config import Settings
from newsletter.issues import load_issue
from newsletter.markup import typography
from newsletter.model import UNSUBSCRIBE_URL_PLACEHOLDER, Issue, RenderedIssue
from newsletter.plaintext import WIDTH, wrap
from newsletter.rendering import Renderer, image_url, render_issue

SAMPLE = "2026-11-20-flood-barrier-vote.md"
NASTY = 'A <script>alert("x")</script> & "quotes" \' </mj-text></mjml>'
# Markdown text gets typographic quotes, so the body uses a variant without straight quotes
NASTY_MD = "A <script>alert(1)</script> & <b>bold</b> </mj-text></mjml> {{ x }} {% y %}"


@pytest.fixture
def renderer(settings: Settings) -> Renderer:
    return Renderer(settings)


@pytest.fixture
def sample(settings: Settings) -> Issue:
    return load_issue(settings.issues_dir / SAMPLE, settings)


@pytest.fixture
def rendered(renderer: Renderer, sample: Issue) -> RenderedIssue:
    return renderer.render(sample)


def test_rendered_issue_fields(rendered: RenderedIssue, sample: Issue) -> None:
    assert rendered.issue is sample
    assert rendered.subject == sample.subject
    assert rendered.preheader == sample.preheader
    assert rendered.archive_url == "https://news.test.example/archive/flood-barrier-vote"


def test_html_is_a_real_email(rendered: RenderedIssue, sample: Issue) -> None:
    html = rendered.html
    assert html.startswith("<!doctype html>")
    doc = lxml.html.fromstring(html)
    assert doc.get("lang") == "en"
    # the 600 px layout, with the stacking rules for small screens kept in <style>
    assert "max-width:600px" in html.replace(" ", "")
    styles = " ".join(doc.xpath("//style/text()"))
    assert "@media only screen and (max-width:479px)" in styles
    assert "@media only screen and (min-width:480px)" in styles
    # Outlook conditionals survive the inliner
    assert "<!--[if mso | IE]>" in html
    assert "<!--[if mso]>" in html
    # styles are inlined: links carry their colour themselves
    first_link = doc.xpath("//a[contains(@href, 'consultations/parking')]")[0]
    assert "color:#1f3a5f" in first_link.get("style").replace(" ", "")
    # nothing fetched from elsewhere: no web fonts, no external stylesheets, no scripts
    assert "fonts.googleapis" not in html
    assert not doc.xpath("//link | //script")


def test_hidden_preheader_comes_first(rendered: RenderedIssue) -> None:
    doc = lxml.html.fromstring(rendered.html)
    (preheader,) = doc.find_class("preheader")
    style = preheader.get("style").replace(" ", "")
    assert "display:none" in style
    assert "mso-hide:all" in style  # Outlook ignores display:none on a div
    # no colour of its own: white text on white is what spam filters flag (low contrast)
    assert "color" not in style
    assert preheader.text_content().startswith(rendered.preheader)
    # it is the first text in the body, so inboxes show it after the subject
    assert " ".join(doc.body.text_content().split()).startswith(rendered.preheader)


def test_every_image_has_alt_and_width(rendered: RenderedIssue, sample: Issue) -> None:
    doc = lxml.html.fromstring(rendered.html)
    images = doc.xpath("//img")
    assert len(images) >= 3  # hero, footbridge, keeper (the test config has no logo)
    for img in images:
        assert img.get("alt"), lxml.html.tostring(img)
        assert re.fullmatch(r"\d+", img.get("width") or ""), lxml.html.tostring(img)
        assert img.get("src").startswith("https://news.test.example/images/")
    assert sample.hero is not None
    hero = doc.xpath("//img[contains(@src, 'hero-river.png')]")[0]
    assert hero.get("alt") == sample.hero.alt
    assert hero.get("width") == "600"


def test_footer_and_placeholders(rendered: RenderedIssue) -> None:
    doc = lxml.html.fromstring(rendered.html)
    unsubscribe = doc.xpath("//a[text()='Unsubscribe']")[0]
    assert unsubscribe.get("href") == UNSUBSCRIBE_URL_PLACEHOLDER
    archive = doc.xpath(f"//a[@href='{rendered.archive_url}']")
    assert len(archive) == 2  # top "view in browser" and footer
    assert "1 Test Street, Testville" in doc.text_content()
    assert rendered.text.count(UNSUBSCRIBE_URL_PLACEHOLDER) == 1
    assert rendered.archive_url in rendered.text


def test_every_part_of_the_issue_is_in_the_html(rendered: RenderedIssue, sample: Issue) -> None:
    text = " ".join(lxml.html.fromstring(rendered.html).text_content().split())
    assert sample.title in text
    for headline in sample.headlines:
        assert headline.plain in text
    for section in sample.sections:
        assert section.heading in text
    assert "More on the river" in text
    assert "How a demountable barrier works" in text
    assert sample.spotlight is not None
    assert sample.spotlight.heading in text
    assert "People of the valley" in text
    assert sample.cta is not None
    doc = lxml.html.fromstring(rendered.html)
    assert doc.xpath(f"//a[@href='{sample.cta.url}']/text()") == ["Become a supporter"]
    assert "Cllr Miriam Osei, who proposed the motion" in text


def escape_issue(settings: Settings) -> Path:
    path = settings.issues_dir / "2026-11-20-escape.md"
    path.write_text(
        f"""---
title: '{NASTY.replace("'", "''")}'
date: 2026-11-20
authors: ['Ana <b>Brook</b>']
hero:
  src: images/hero-river.png
  alt: '{NASTY.replace("'", "''")}'
  credit: '{NASTY.replace("'", "''")}'
headlines: ['{NASTY.replace("'", "''")}', 'Fish & chips', 'x < y']
---

## Section <i>one</i> & two

{NASTY_MD}

::: related {NASTY_MD}
- [{NASTY_MD}](https://millbrook.example/?a=1&b="2") — {NASTY_MD}
:::

::: cta
{NASTY_MD}

[{NASTY_MD}](https://millbrook.example/support)
:::
""",
        encoding="utf-8",
    )
    return path


def test_nothing_from_the_issue_can_break_the_markup(settings: Settings) -> None:
    issue = load_issue(escape_issue(settings), settings)
    rendered = render_issue(issue, settings)
    doc = lxml.html.fromstring(rendered.html)
    assert not doc.xpath("//script | //i | //b")
    # the title gets typographic quotes like the body; the markup stays text
    assert doc.xpath("//h1")[0].text_content() == typography(NASTY)
    assert doc.xpath("//title")[0].text_content() == issue.subject
    hero = doc.xpath("//img[contains(@src, 'hero-river')]")[0]
    assert hero.get("alt") == typography(NASTY)
    text = doc.text_content()
    assert text.count(typography(NASTY)) >= 3  # <title>, <h1>, hero credit
    # paragraph, related heading, card title, teaser, CTA text, CTA button
    assert text.count(NASTY_MD) == 6
    assert "Fish & chips" in text
    assert "x < y" in text
    assert "Section <i>one</i> & two" in text
    card = doc.xpath("//a[contains(@class, 'card-title')]")[0]
    assert card.text_content() == NASTY_MD
    assert card.get("href") == "https://millbrook.example/?a=1&b=%222%22"
    # and the text part shows the words as written
    assert typography(NASTY) in rendered.text
    assert rendered.text.count(NASTY_MD) == 5  # the related heading is in capitals there


def test_rendering_makes_no_network_connection(
    settings: Settings, sample: Issue, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    # a fresh renderer and a style premailer has not cached, so nothing is skipped by a cache
    rendered = Renderer(settings).render(sample)
    fresh = f"fresh-{secrets.token_hex(4)}"
    extra = Renderer(settings).inline_css(
        rendered.html.replace("</head>", f"<style>.{fresh} {{ color: red; }}</style></head>")
    )
    assert fresh in extra
    assert attempts == []


def test_a_missing_templates_dir_means_no_overrides(
    settings: Settings, sample: Issue, tmp_path: Path
) -> None:
    # templates_dir is the publication's override folder; without it the theme renders alone
    bare = dataclasses.replace(settings, templates_dir=tmp_path / "nowhere")
    assert Renderer(bare).render(sample).html == Renderer(settings).render(sample).html


def test_image_urls(settings: Settings) -> None:
    assert image_url("images/hero.png", settings) == "https://news.test.example/images/hero.png"
    assert image_url("./images/a.png", settings) == "https://news.test.example/images/a.png"
    assert image_url("https://cdn.example/a.png", settings) == "https://cdn.example/a.png"


# -- plain text ------------------------------------------------------------------------------


def test_text_lines_fit_78_columns_and_urls_stay_whole(rendered: RenderedIssue) -> None:
    for line in rendered.text.splitlines():
        if len(line) > WIDTH:
            # only a URL too long for any line may stick out, and then it is alone
            assert re.fullmatch(r"\s*(\* |> )?<?https?://\S+", line), line
    urls = re.findall(r"https?://[^\s>]+", rendered.text)
    assert "https://millbrook.example/explainers/demountable-barriers" in urls
    assert "https://millbrook.example/consultations/parking" in urls


def test_text_reads_like_the_issue(rendered: RenderedIssue, sample: Issue) -> None:
    text = rendered.text
    # the date as the locale writes it (Babel; the test publication is in "en")
    assert text.startswith("The Test Weekly\nFriday, November 20, 2026\n")
    assert "THIS WEEK\n\n* Council backs the Weir Meadow flood barrier" in text
    assert "Council backs the flood barrier\n-------------------------------\n" in text
    assert "MORE ON THE RIVER\n\n* Weir Meadow flooded three times" in text
    assert "  https://millbrook.example/news/weir-meadow-record\n" in text
    assert "PEOPLE OF THE VALLEY: The ferry keeper’s last winter" in text
    assert "Become a supporter:\nhttps://millbrook.example/support\n" in text
    assert "<a " not in text
    assert "&amp;" not in text


def test_wrap_keeps_long_urls_and_hyphenated_urls_whole() -> None:
    url = "https://millbrook.example/a-very-long-path/with-many-hyphenated-words-in-it/" + "x" * 40
    wrapped = wrap("See the report at " + url + " for the numbers.", indent="* ")
    assert "  " + url in wrapped.split("\n")
    assert all(len(line) <= WIDTH for line in wrapped.split("\n") if url not in line)
    assert wrap("one\ntwo", indent="> ", subsequent="> ") == "> one\n> two"


@pytest.mark.parametrize("words", [1, 13, 40, 200])
def test_wrap_never_loses_words(words: int) -> None:
    text = " ".join(f"word{n}" for n in range(words))
    assert wrap(text).split() == text.split()


def test_logo_has_alt_and_width(settings: Settings, sample: Issue) -> None:
    branded = dataclasses.replace(
        settings,
        brand=dataclasses.replace(
            settings.brand, logo_url="https://news.test.example/images/logo.png", logo_alt=None
        ),
    )
    doc = lxml.html.fromstring(Renderer(branded).render(sample).html)
    logo = doc.xpath("//img[contains(@src, 'logo.png')]")[0]
    assert logo.get("alt") == "The Test Weekly"  # falls back to the publication name
    assert logo.get("width") == "180"
