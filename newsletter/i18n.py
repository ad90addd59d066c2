"""The publication's language: gettext catalogs (Babel), and dates and lists in its locale.

Catalogs ship as ``.po`` files inside the package (``newsletter/locale/<lang>/LC_MESSAGES/
newsletter.po``) and are compiled in memory when first used, so an editable install and a
wheel work with no build step. ``publication.lang`` is a BCP 47 tag (``en``, ``en-GB``,
``uk``): its catalog is tried first, then its base language's, then English, which is the
msgids themselves. :func:`language_problems` says what ``check`` should warn about: a tag
Babel does not know, a language with no catalog, or a catalog missing some strings.
"""

from __future__ import annotations

import functools
import gettext
import io
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.lists import format_list
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "newsletter"
TEMPLATE = LOCALE_DIR / f"{DOMAIN}.pot"
SOURCE = "en"  # the msgids are English


def _identifier(lang: str) -> str:
    return lang.strip().replace("-", "_")


@functools.cache
def locale(lang: str) -> Locale:
    """The Babel locale for ``lang`` (``en-GB`` or ``en_GB``); English when Babel knows none."""
    try:
        return Locale.parse(_identifier(lang) or SOURCE)
    except (UnknownLocaleError, ValueError):
        return Locale.parse(SOURCE)


def _candidates(lang: str) -> list[str]:
    """``en_GB`` → ``["en_GB", "en"]``: the catalog folders to try, most specific first."""
    ident = _identifier(lang)
    names = [ident]
    if "_" in ident:
        names.append(ident.split("_", 1)[0])
    return [name for name in dict.fromkeys(names) if name]


@functools.cache
def catalog(name: str) -> Catalog | None:
    """The catalog in ``locale/<name>/``, read from its ``.po``; None if there is none."""
    path = LOCALE_DIR / name / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not path.is_file():
        return None
    with path.open("rb") as fh:
        return read_po(fh, locale=name, domain=DOMAIN)


def _compiled(cat: Catalog) -> Translations:
    buffer = io.BytesIO()
    write_mo(buffer, cat, use_fuzzy=False)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


@functools.cache
def translations(lang: str) -> gettext.NullTranslations:
    """gettext for ``lang``, falling back to its base language, then to the English msgids."""
    chain: gettext.NullTranslations = gettext.NullTranslations()
    for name in reversed(_candidates(lang)):
        cat = catalog(name)
        if cat is None or name == SOURCE:
            continue
        compiled = _compiled(cat)
        compiled.add_fallback(chain)
        chain = compiled
    return chain


@functools.cache
def _template_ids() -> frozenset[str]:
    if not TEMPLATE.is_file():
        return frozenset()
    with TEMPLATE.open("rb") as fh:
        return frozenset(
            str(m.id if isinstance(m.id, str) else m.id[0]) for m in read_po(fh) if m.id
        )


def missing_messages(lang: str) -> list[str]:
    """The msgids of the template that no catalog of ``lang`` translates (English shows)."""
    if _identifier(lang).split("_")[0] == SOURCE:
        return []
    translated: set[str] = set()
    for name in _candidates(lang):
        cat = catalog(name)
        if cat is None:
            continue
        for message in cat:
            key = message.id if isinstance(message.id, str) else message.id[0]
            strings = message.string if isinstance(message.string, tuple) else (message.string,)
            if key and not message.fuzzy and all(strings):
                translated.add(str(key))
    return sorted(_template_ids() - translated)


def language_problems(lang: str) -> list[str]:
    """What is wrong with ``publication.lang``, in words for ``check``; empty when all is well."""
    ident = _identifier(lang)
    try:
        Locale.parse(ident)
    except (UnknownLocaleError, ValueError):
        return [
            f"publication.lang {lang!r} is not a language tag Babel knows (try 'en', 'en-GB' "
            "or 'uk'); dates and fixed text fall back to English"
        ]
    if locale(lang).language == SOURCE:
        return []
    if not any(catalog(name) is not None for name in _candidates(lang)):
        return [
            f"publication.lang {lang!r}: newsletter has no translation into this language; "
            'fixed text ("This week", the footer, the web pages) falls back to English. '
            "docs/translations.md says how to add one"
        ]
    missing = missing_messages(lang)
    if missing:
        shown = "; ".join(repr(m) for m in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        return [
            f"publication.lang {lang!r}: {len(missing)} fixed string(s) have no translation and "
            f"show in English: {shown}{more}"
        ]
    return []


def long_date(value: date, lang: str) -> str:
    """The issue date as the locale writes it in full (``Friday, 20 November 2026``)."""
    return format_date(value, "full", locale=locale(lang))


def names(items: Iterable[str], lang: str) -> str:
    """``A``, ``A and B``, ``A, B and C``, with the locale's words and commas."""
    values: Sequence[str] = list(items)
    if not values:
        return ""
    return format_list(values, locale=locale(lang))


def number(value: float, lang: str) -> str:
    """``1,140`` in English, ``1 140`` in Ukrainian."""
    return format_decimal(value, locale=locale(lang))
