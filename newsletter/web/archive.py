"""The public archive: sent issues as web pages, newest first, and an Atom feed.

Pages come from the rendered HTML the delivery step stored in the ``issues`` table, with the
per-recipient pieces (the unsubscribe link) taken out, so the "view in browser" link in every
email shows the same issue to anyone without leaking or needing a recipient's token.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

import lxml.html
from markupsafe import escape
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from newsletter import urls
from newsletter.config import Settings
from newsletter.i18n import long_date, translations
from newsletter.model import JOIN_URL_PLACEHOLDER, PLACEHOLDERS, join_url_placeholder
from newsletter.store.issues import SentIssue, sent_copies, sent_issues
from newsletter.templating import Templates, environment

ATOM_NS = "http://www.w3.org/2005/Atom"
# What XML 1.0 cannot carry at all (control characters other than tab and line breaks,
# surrogates, U+FFFE/U+FFFF); legal in an issue file, and one would break the whole feed.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
FEED_ENTRIES = 20
# the class the email template gives what only makes sense in an inbox
_EMAIL_ONLY = "email-only"
# A page must never be framed by another site or run script; the email needs inline styles
# and its images (which may live on a CDN).
PAGE_CSP = (
    "default-src 'none'; img-src 'self' https: http: data:; style-src 'unsafe-inline'; "
    "font-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@dataclass(frozen=True)
class ArchivedIssue:
    """One sent issue as the archive shows it."""

    slug: str
    list_slug: str
    list_name: str
    title: str
    subject: str
    issue_date: datetime
    sent_at: datetime
    html: str
    authors: tuple[str, ...] = ()
    # the inbox preview line, the index's summary (empty for issues recorded before it was kept)
    preheader: str = ""

    @property
    def path(self) -> str:
        return urls.archive_issue_path(self.list_slug, self.slug)


def strip_email_only(html: str) -> str:
    """``html`` without the elements the template marks ``email-only``.

    The "view in your browser" bar and the unsubscribe line make sense only in an inbox; taken
    out whole, they leave no separator or empty bar behind. HTML stored before the marks
    existed has none and passes through unchanged.
    """
    if _EMAIL_ONLY not in html:
        return html
    doc = lxml.html.document_fromstring(html)
    for element in doc.find_class(_EMAIL_ONLY):
        element.drop_tree()
    doctype = "<!doctype html>\n" if html.lstrip()[:9].lower() == "<!doctype" else ""
    return doctype + str(lxml.html.tostring(doc, encoding="unicode"))


def public_html(
    html: str, *, subscribe_url: str, join_urls: Mapping[str, str] | None = None
) -> str:
    """The stored email HTML with every per-recipient piece removed.

    The parts marked email-only go first (:func:`strip_email_only`). A recipient's join link
    becomes the subscribe page with that list ticked (``join_urls``; one for a list no longer
    configured, the plain subscribe page). A link whose target is another placeholder (the
    unsubscribe link) is dropped with its text; a placeholder anywhere else becomes the public
    subscribe page, which is what a reader of the archive who is not (yet) a subscriber can
    use.
    """
    html = strip_email_only(html)
    for placeholder, url in (join_urls or {}).items():
        html = html.replace(placeholder, url)
    html = JOIN_URL_PLACEHOLDER.sub(subscribe_url, html)
    for placeholder in PLACEHOLDERS:
        link = re.compile(
            r"<a\b[^>]*\bhref\s*=\s*([\"'])" + re.escape(placeholder) + r"\1[^>]*>.*?</a\s*>",
            re.IGNORECASE | re.DOTALL,
        )
        html = link.sub("", html)
        html = html.replace(placeholder, subscribe_url)
    return html


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Archive:
    """Reads sent issues from the store; one instance per app."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine

    def _public(self, sent: SentIssue, *, with_html: bool) -> ArchivedIssue:
        return ArchivedIssue(
            slug=sent.slug,
            list_slug=sent.list_slug,
            list_name=sent.list_name,
            title=sent.title,
            subject=sent.subject,
            issue_date=sent.issue_date,
            sent_at=sent.sent_at,
            authors=sent.authors,
            preheader=sent.preheader,
            html=(
                public_html(sent.html, subscribe_url=self.subscribe_url, join_urls=self.join_urls)
                if with_html
                else ""
            ),
        )

    @property
    def subscribe_url(self) -> str:
        return urls.subscribe_url(self.settings.publication.base_url)

    @property
    def join_urls(self) -> dict[str, str]:
        """Each list's join placeholder -> the subscribe page with that list ticked."""
        return {
            join_url_placeholder(slug): f"{self.subscribe_url}?{urlencode({'list': slug})}"
            for slug in self.settings.lists
        }

    def absolute(self, path: str) -> str:
        return urls.absolute(self.settings.publication.base_url, path)

    def latest(
        self, *, list_slug: str | None = None, limit: int | None = None, with_html: bool = False
    ) -> list[ArchivedIssue]:
        found = sent_issues(self.engine, list_slug=list_slug, limit=limit, with_html=with_html)
        return [self._public(sent, with_html=with_html) for sent in found]

    def find(self, slug: str, list_slug: str | None = None) -> ArchivedIssue | None:
        """The issue ``slug``; without a list, the default list's copy or else the newest."""
        copies = sent_copies(self.engine, slug, list_slug)
        if not copies:
            return None
        default = self.settings.publication.default_list
        best = next((c for c in copies if c.list_slug == default), copies[0])
        return self._public(best, with_html=True)

    def feed(self) -> bytes:
        """The Atom feed (RFC 4287) of the newest sent issues, as UTF-8 XML."""
        entries = self.latest(limit=FEED_ENTRIES, with_html=True)
        pub = self.settings.publication
        _ = translations(pub.lang).gettext
        ET.register_namespace("", ATOM_NS)

        def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
            attrs = {k: _NOT_XML.sub(" ", v) for k, v in attrs.items()}
            el = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
            if text is not None:
                el.text = _NOT_XML.sub(" ", text)
            return el

        feed = ET.Element(f"{{{ATOM_NS}}}feed", {"xml:lang": pub.lang})
        feed_url = self.absolute(urls.ARCHIVE_FEED)
        sub(feed, "id", feed_url)
        sub(feed, "title", pub.name)
        sub(feed, "subtitle", _("Every issue of %(name)s") % {"name": pub.name})
        updated = max((e.sent_at for e in entries), default=datetime(2000, 1, 1, tzinfo=UTC))
        sub(feed, "updated", _rfc3339(updated))
        sub(feed, "link", rel="self", type="application/atom+xml", href=feed_url)
        sub(feed, "link", rel="alternate", type="text/html", href=self.absolute(urls.ARCHIVE))
        author = sub(feed, "author")
        sub(author, "name", pub.name)
        sub(feed, "generator", "newsletter")
        for issue in entries:
            entry = sub(feed, "entry")
            url = self.absolute(issue.path)
            sub(entry, "id", url)
            sub(entry, "title", issue.title)
            sub(entry, "updated", _rfc3339(issue.sent_at))
            sub(entry, "published", _rfc3339(issue.sent_at))
            sub(entry, "link", rel="alternate", type="text/html", href=url)
            sub(entry, "summary", issue.preheader or issue.subject)
            sub(entry, "category", term=issue.list_slug, label=issue.list_name)
            sub(entry, "content", issue.html, type="html")
        body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
        return body


def _templates(settings: Settings) -> Jinja2Templates:
    return Jinja2Templates(env=environment(settings, Templates.ARCHIVE))


def _with_nav(html: str, issue: ArchivedIssue, settings: Settings) -> str:
    """Put a slim bar linking back to the archive at the top of the email's own page."""
    lang = settings.publication.lang
    _ = translations(lang).gettext
    back = _("All issues of %(name)s") % {"name": settings.publication.name}
    bar = (
        '<div style="font-family:Helvetica,Arial,sans-serif;font-size:14px;padding:8px 12px;'
        f'background:{escape(settings.brand.primary_color)};color:#ffffff">'
        f'<a href="{urls.ARCHIVE}" style="color:#ffffff">&larr; {escape(back)}</a>'
        f" &middot; {escape(long_date(issue.issue_date.date(), lang))}</div>"
    )
    match = re.search(r"<body\b[^>]*>", html, re.IGNORECASE)
    if match is None:
        return bar + html
    return html[: match.end()] + bar + html[match.end() :]


def routes(settings: Settings, engine: Engine) -> list[BaseRoute]:
    """``/archive``, ``/archive/feed.xml`` and one page per sent issue, for ``newsletter serve``."""
    archive = Archive(settings, engine)
    templates = _templates(settings)
    headers = {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff"}

    async def index(request: Request) -> Response:
        list_slug = request.query_params.get("list") or None
        if list_slug not in settings.lists:
            list_slug = None  # only the configured lists have an archive of their own
        issues = await run_in_threadpool(archive.latest, list_slug=list_slug)
        return templates.TemplateResponse(
            request,
            "archive/index.html",
            {
                "settings": settings,
                "publication": settings.publication,
                "brand": settings.brand,
                "issues": issues,
                "lists": settings.lists,
                "current_list": list_slug,
                "subscribe_url": archive.subscribe_url,
            },
            headers=headers,
        )

    async def feed(request: Request) -> Response:
        body = await run_in_threadpool(archive.feed)
        return Response(body, media_type="application/atom+xml; charset=utf-8")

    async def page(request: Request) -> Response:
        slug = request.path_params["slug"]
        list_slug = request.path_params.get("list")
        issue = await run_in_threadpool(archive.find, slug, list_slug)
        if issue is None:
            return templates.TemplateResponse(
                request,
                "archive/not_found.html",
                {"publication": settings.publication, "brand": settings.brand},
                status_code=404,
                headers=headers,
            )
        return HTMLResponse(_with_nav(issue.html, issue, settings), headers=headers)

    return [
        Route(urls.ARCHIVE, index, name="archive"),
        Route(urls.ARCHIVE + "/", index),
        Route(urls.ARCHIVE_FEED, feed, name="archive_feed"),
        Route(urls.ARCHIVE_LIST_ISSUE, page, name="archive_list_issue"),
        Route(urls.ARCHIVE_ISSUE, page, name="archive_issue"),
    ]
