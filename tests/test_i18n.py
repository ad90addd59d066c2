"""The publication's own language: a ``lang = "uk"`` publication shows no English fixed text.

The issue, the publication's name and its lists are written in Ukrainian here, so any Latin
word left in what a reader sees (URLs aside) is a fixed string that missed its translation;
each is also compared against the catalog's msgids.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import lxml.html
import pytest
from babel.messages.pofile import read_po
from sqlalchemy import Engine
from starlette.testclient import TestClient

from newsletter import i18n
from newsletter.checks import check_issue
from newsletter.config import Settings, load_settings
from newsletter.images import plan_images
from newsletter.issues import load_issue
from newsletter.rendering import Renderer
from newsletter.web.app import create_app
from tests.conftest import TEST_SECRET, write_config
from tests.smtpd import SMTPServer

UK_PUBLICATION = """
[publication]
name = "Тестовий тижневик"
sender = "Тестовий тижневик <weekly@test.example>"
postal_address = "вул. Тестова, 1, Тестове"
base_url = "https://news.test.example"
default_list = "weekly"
timezone = "Europe/Kyiv"
lang = "uk"

[lists.weekly]
name = "Тестовий тижневик"
description = "Тиждень у Тестовому щоп’ятниці."

[lists.business]
name = "Діловий огляд"
description = "Торгівля й робота двічі на місяць."
"""

UK_ISSUE = """---
title: Міст відкрили, а паром іде на пенсію
date: 2026-11-20
authors: [Ганна Брук, Томаш Вале]
hero:
  src: images/hero-river.png
  alt: Річка на світанку
  caption: Вода піднялася на два метри.
  credit: Ілюстрація редакції
headlines:
  - "[Міст відкрили](#міст) у суботу."
  - Паромник іде на пенсію.
  - Автобус повертається на старий маршрут.
status: ready
---

::: cta Підтримайте редакцію position=top
Нас читають безкоштовно, бо нас підтримують читачі.

[Долучитися](https://millbrook.example/join)
:::

Доброго дня. Ось що сталося за тиждень.

## Міст {#міст}

Міст між вокзалом і городами відкрили в суботу.

> Ми чекали на нього десять років.
>
> -- Мирослава Осей

::: figure credit="Ілюстрація редакції"
![Новий сталевий міст над річкою](images/footbridge.png)

Прогін завдовжки 48 метрів.
:::

::: related
- [Як працює бар’єр](https://millbrook.example/a) — Панелі, стовпи й дві години попередження.
:::

::: related Більше про річку
- [Три повені за п’ять років](https://millbrook.example/b) — Рівень води й збитки.
- [Бар’єр ухвалили](https://millbrook.example/c) — Сім голосів проти чотирьох.
- [Дерева замість сталі](https://millbrook.example/d) — Чому меншість хотіла садити ліс.
:::

:::: spotlight Остання зима паромника
::: figure
![Паромник у темно-синьому пальті](images/keeper.png)
:::

Тридцять чотири зими Іво перевозив людей через річку.
::::

::: newsletters
:::

::: cta Місцеві новини в місцевих руках
У нас чотири репортери й жодного платного доступу.

Членство коштує від 100 гривень на місяць.

[Стати членом](https://millbrook.example/m)
[Подарувати членство](https://millbrook.example/g)
:::
"""

# what a reader may see in Latin letters: URLs and addresses are taken out before this
ALLOWED_LATIN = {"Atom"}
_URL = re.compile(r"(https?://|mailto:)\S+|\S+@\S+|%%\w+%%")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


def msgid_fragments() -> list[str]:
    """The literal pieces of every English msgid (placeholders cut out), longest first."""
    with i18n.TEMPLATE.open("rb") as fh:
        catalog = read_po(fh)
    pieces: set[str] = set()
    for message in catalog:
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        for msgid in ids:
            for piece in re.split(r"%\(\w+\)[sd]", str(msgid)):
                piece = piece.strip(" .,:;?!()")
                if re.search(r"[A-Za-z]{3,}", piece):
                    pieces.add(piece)
    return sorted(pieces, key=len, reverse=True)


def assert_no_english(text: str, where: str) -> None:
    visible = _URL.sub(" ", text)
    latin = set(_LATIN_WORD.findall(visible)) - ALLOWED_LATIN
    assert not latin, f"{where}: English words left: {sorted(latin)}"
    for piece in msgid_fragments():
        assert piece not in visible, f"{where}: untranslated {piece!r}"


def visible_text(html: str) -> str:
    doc = lxml.html.fromstring(html)
    for hidden in doc.xpath("//style | //script"):
        hidden.drop_tree()
    alts = " ".join(doc.xpath("//img/@alt | //@aria-label | //title/text()"))
    return doc.text_content() + " " + alts


@pytest.fixture
def uk_settings(project: Path, tmp_path: Path) -> Settings:
    path = write_config(project, database_url=f"sqlite:///{tmp_path / 'uk.db'}")
    return uk(path)


def uk(path: Path) -> Settings:
    text = path.read_text(encoding="utf-8")
    start = text.index("[publication]")
    end = text.index("[smtp]")
    path.write_text(text[:start] + UK_PUBLICATION + "\n" + text[end:], encoding="utf-8")
    return load_settings(path, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})


def test_catalogs_are_complete() -> None:
    assert i18n.missing_messages("uk") == []
    assert i18n.missing_messages("en") == []
    assert i18n.language_problems("uk") == []
    assert i18n.language_problems("en-GB") == []
    assert len(msgid_fragments()) > 50


def test_a_ukrainian_issue_has_no_english_fixed_text(uk_settings: Settings) -> None:
    path = uk_settings.issues_dir / "2026-11-20-uk.md"
    path.write_text(UK_ISSUE, encoding="utf-8")
    assert [p for p in check_issue(path, uk_settings) if "lang" in p.message] == []
    issue = load_issue(path, uk_settings)
    rendered = Renderer(uk_settings).render(issue, plan_images(issue, uk_settings))
    html = rendered.html
    assert 'lang="uk"' in html
    assert_no_english(visible_text(html), "HTML part")
    assert_no_english(rendered.text, "text part")
    # the labels and dates in Ukrainian, numbers and lists by the locale
    text = " ".join(visible_text(html).split())
    assert "Цього тижня" in text
    assert "пʼятниця, 20 листопада 2026 р." in text
    assert "Текст: Ганна Брук і Томаш Вале" in text
    assert "1 хв читання" in text
    assert "Читайте також" in text  # the related block without a heading
    assert "Відписатися" in text
    assert "Інші наші розсилки" in text  # "more from us", with the list's own name
    assert "Надсилати мені «Діловий огляд»" in text
    assert "ЦЬОГО ТИЖНЯ" in rendered.text


def test_labels_can_be_set_in_the_config(uk_settings: Settings, project: Path) -> None:
    config = project / "newsletter.toml"
    config.write_text(
        config.read_text(encoding="utf-8")
        + '\n[labels]\nthis_week = "Головне за тиждень"\nrelated = "Також цікаво"\n',
        encoding="utf-8",
    )
    settings = load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})
    path = settings.issues_dir / "2026-11-20-uk.md"
    path.write_text(UK_ISSUE, encoding="utf-8")
    text = Renderer(settings).render(load_issue(path, settings)).text
    assert "ГОЛОВНЕ ЗА ТИЖДЕНЬ" in text
    assert "ТАКОЖ ЦІКАВО" in text
    assert "ЦЬОГО ТИЖНЯ" not in text


def test_an_unknown_or_untranslated_language_is_a_warning(settings: Settings) -> None:
    path = settings.issues_dir / "2026-11-20-flood-barrier-vote.md"
    for lang, words in (("xx-nowhere", "not a language tag"), ("de", "no translation")):
        publication = settings.publication.__class__(
            **{**settings.publication.__dict__, "lang": lang}
        )
        local = settings.__class__(**{**settings.__dict__, "publication": publication})
        problems = [p for p in check_issue(path, local) if "publication.lang" in p.message]
        assert len(problems) == 1, problems
        assert words in problems[0].message
        assert not problems[0].is_error
        # and it still renders, in English
        text = Renderer(local).render(load_issue(path, local)).text
        assert "THIS WEEK" in text


@pytest.fixture
def uk_web(project: Path, database_url: str, smtpd: SMTPServer) -> Settings:
    return uk(write_config(project, database_url=database_url, smtp_url=smtpd.url))


@pytest.fixture
def uk_client(uk_web: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(uk_web, engine=engine), base_url="https://news.test.example") as c:
        yield c


def test_web_pages_and_confirmation_in_ukrainian(uk_client: TestClient, smtpd: SMTPServer) -> None:
    pages = {
        "subscribe": uk_client.get("/subscribe"),
        "not found": uk_client.get("/nowhere"),
        "archive": uk_client.get("/archive"),
        "bad link": uk_client.get("/confirm/not-a-token"),
        "bad unsubscribe link": uk_client.get("/unsubscribe/not-a-token"),
    }
    inbox = uk_client.post("/subscribe", data={"email": "reader@example.org"})
    pages["check inbox"] = inbox
    deadline = time.monotonic() + 10
    while not smtpd.handler.messages and time.monotonic() < deadline:
        time.sleep(0.02)  # the confirmation goes out after the response
    (received,) = smtpd.handler.messages
    message = received.message
    assert message["Subject"] == "Підтвердьте підписку на Тестовий тижневик"
    for part in ("plain", "html"):
        body = message.get_body((part,))
        assert body is not None
        content = body.get_content()
        assert_no_english(visible_text(content) if part == "html" else content, part)
    text = message.get_body(("plain",)).get_content()
    link = re.search(r"https://news\.test\.example(/confirm/\S+)", text).group(1)
    pages["confirm"] = uk_client.get(link)
    pages["confirmed"] = uk_client.post(link)
    for name, page in pages.items():
        assert 'lang="uk"' in page.text, name
        assert_no_english(visible_text(page.text), name)


def test_editor_reports_in_ukrainian(uk_settings: Settings) -> None:
    import dataclasses
    from datetime import UTC, datetime, timedelta

    from newsletter.emails import SendSummary, Skipped, send_report_message, skipped_message

    settings = dataclasses.replace(
        uk_settings,
        publication=dataclasses.replace(uk_settings.publication, editor_email="ed@test.example"),
    )
    start = datetime(2026, 11, 20, 11, tzinfo=UTC)
    summary = SendSummary(
        slug="uk",
        title="Міст відкрили",
        list_slug="weekly",
        recipients=1234,
        sent=1200,
        failed=30,
        pending=4,
        started_at=start,
        finished_at=start + timedelta(minutes=3, seconds=5),
        failures=(("a@example.org", "550 5.1.1"),) * 25,
        finished=False,
        error="relay unreachable",
    )
    skipped = [
        Skipped("uk", "Чернетка", "weekly", start, "draft"),
        Skipped("uk2", "Стара", "weekly", start, "stale"),
    ]
    for message in (send_report_message(settings, summary), skipped_message(settings, skipped)):
        assert message is not None
        for part in ("plain", "html"):
            body = message.get_body((part,))
            assert body is not None
            content = body.get_content()
            # what is left in Latin letters is data: slugs, addresses, the relay's own words
            for data in ("uk2", "uk", "weekly", "relay unreachable", "a@example.org"):
                content = content.replace(data, " ")
            assert_no_english(visible_text(content) if part == "html" else content, part)
        assert_no_english(str(message["Subject"]).replace("weekly", ""), "subject")
    report = send_report_message(settings, summary)
    assert report is not None
    text = report.get_body(("plain",)).get_content()
    assert "Одержувачів:" in text
    assert "1\u00a0234" in text  # numbers as the locale writes them (a no-break space)
    assert "3 хв 5 с" in text
    assert "… і ще 5" in text
