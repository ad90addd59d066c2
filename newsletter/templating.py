"""Jinja environments, built in one place: the email, the site, the preview and the archive.

Each kind keeps the options its templates were written for (autoescaping by extension,
strictness about undefined names, whitespace control). Whatever every environment should have
(a theme loader under the publication's own templates, a translation extension) goes here once.

Templates come from the theme that ships with the package, file by file overridden by the
publication's ``templates_dir``: ``templates/email/issue.mjml.j2`` there replaces the theme's
``email/issue.mjml.j2`` and nothing else. A missing ``templates_dir`` means no overrides.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from newsletter import i18n
from newsletter.config import Settings
from newsletter.errors import RenderError

_PACKAGE = Path(__file__).resolve().parent


class Templates(enum.Enum):
    """Which templates an environment renders."""

    # templates/email: the issue as MJML, its plain text and its CSS
    EMAIL = "email"
    # templates/web and templates/confirm: the public site's pages and the confirmation email
    PAGES = "pages"
    # templates/preview: the editors' preview
    PREVIEW = "preview"
    # templates/archive: the public archive (rendered through Starlette's Jinja2Templates)
    ARCHIVE = "archive"
    # templates/admin: the editors' dashboard (English; every string through _() for later)
    ADMIN = "admin"


@dataclass(frozen=True)
class _Kind:
    folder: str | None
    autoescape: Callable[[str | None], bool]
    strict: bool
    trim: bool


_KINDS = {
    Templates.EMAIL: _Kind(
        folder="email",
        # everything from the issue is escaped in the HTML; the text part and the CSS are not HTML
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("mjml.j2", "html.j2", "html"),
            disabled_extensions=("txt.j2", "css.j2"),
            default_for_string=True,
            default=True,
        ),
        strict=True,
        trim=True,
    ),
    Templates.PAGES: _Kind(
        folder=None,
        autoescape=jinja2.select_autoescape(("html", "htm", "xml", "j2")),
        strict=True,
        trim=True,
    ),
    Templates.PREVIEW: _Kind(
        folder=None, autoescape=jinja2.select_autoescape(("html",)), strict=True, trim=True
    ),
    # what Starlette's Jinja2Templates builds by default, which the archive pages were written for
    Templates.ARCHIVE: _Kind(
        folder=None, autoescape=jinja2.select_autoescape(), strict=False, trim=False
    ),
    Templates.ADMIN: _Kind(
        folder="admin",
        autoescape=jinja2.select_autoescape(("html",), default_for_string=True, default=True),
        strict=True,
        trim=True,
    ),
}


def packaged(name: str, *, checkout: str) -> Path:
    """A folder the package carries: ``newsletter/<name>`` when installed from a wheel.

    In a checkout (an editable install, or the tests) the repository's own ``checkout`` folder
    is that source; ``setup.py`` copies it into the wheel, so there is one copy in git.
    """
    installed = _PACKAGE / name
    if installed.is_dir():
        return installed
    source = _PACKAGE.parent / checkout
    if source.is_dir():
        return source
    raise RenderError(f"the package's {name} folder is missing ({installed}); reinstall newsletter")


def theme_dir() -> Path:
    """The default theme: every template the package renders, by relative path."""
    return packaged("theme", checkout="templates")


def template_folder(settings: Settings, kind: Templates) -> Path:
    """Where the publication's own templates of ``kind`` (its overrides) are looked up."""
    folder = _KINDS[kind].folder
    return settings.templates_dir / folder if folder else settings.templates_dir


def theme_folder(kind: Templates) -> Path:
    """Where the theme's templates of ``kind`` are."""
    folder = _KINDS[kind].folder
    return theme_dir() / folder if folder else theme_dir()


def theme_loader(settings: Settings, kind: Templates) -> jinja2.BaseLoader:
    """The publication's file where there is one, else the theme's, by relative path."""
    return jinja2.ChoiceLoader(
        [
            jinja2.FileSystemLoader(template_folder(settings, kind)),
            jinja2.FileSystemLoader(theme_folder(kind)),
        ]
    )


def environment(
    settings: Settings,
    kind: Templates,
    *,
    filters: Mapping[str, Callable[..., Any]] | None = None,
    globals: Mapping[str, Any] | None = None,
) -> jinja2.Environment:
    """A new Jinja environment for ``kind``, with ``filters`` and ``globals`` added.

    The site and the preview see ``publication`` (and the site ``brand``) as globals.
    """
    options = _KINDS[kind]
    env = jinja2.Environment(
        loader=theme_loader(settings, kind),
        # every kind selects by extension (select_autoescape above): HTML is always escaped
        autoescape=options.autoescape,  # noqa: S701
        undefined=jinja2.StrictUndefined if options.strict else jinja2.Undefined,
        trim_blocks=options.trim,
        lstrip_blocks=options.trim,
        extensions=["jinja2.ext.i18n"],
    )
    # every fixed string goes through gettext, in the publication's language; values passed
    # to _() are escaped like any other (newstyle)
    lang = settings.publication.lang
    if kind is Templates.ADMIN:
        # the editors' dashboard stays in English (its strings are gettext-ready, no catalog)
        env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
    else:
        env.install_gettext_translations(  # type: ignore[attr-defined]
            i18n.translations(lang), newstyle=True
        )
    env.filters.update(
        longdate=lambda value: i18n.long_date(value, lang),
        join_names=lambda items: i18n.names(items, lang),
        number=lambda value: i18n.number(value, lang),
    )
    if kind is Templates.PAGES:
        env.globals.update(publication=settings.publication, brand=settings.brand)
    elif kind in (Templates.PREVIEW, Templates.ADMIN):
        env.globals.update(publication=settings.publication)
    env.globals.update(globals or {})
    env.filters.update(filters or {})
    return env
