"""Click tracking in an issue's bodies: which links are counted, and the bodies rewritten.

Pure. :func:`tracked_links` numbers the links a send counts, in the order they appear (the
HTML part first, then the text part when asked); :func:`track_html` and :func:`track_text`
put each one's ``/r/<token>`` in its place, walking the bodies the same way, so the stored
link table and the rewritten bodies always agree. A link is never rewritten when it goes to
the newsletter's own site (unsubscribe, preferences, confirmation, join, subscribe, the
archive and its "view in browser" pages), carries a per-recipient placeholder, or is not
``http(s)``: those must keep working exactly as written, and none of them is "a story read".
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

HTML = "html"
TEXT = "text"
LABEL_LENGTH = 200

_ANCHOR = re.compile(r"<a\b([^>]*)>(.*?)</a\s*>", re.IGNORECASE | re.DOTALL)
_HREF = re.compile(r"""\bhref\s*=\s*(["'])(.*?)\1""", re.IGNORECASE | re.DOTALL)
_IMG_ALT = re.compile(r"""<img\b[^>]*\balt\s*=\s*(["'])(.*?)\1""", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
# a URL in the plain-text part: written as <url> or bare; trailing punctuation is the text's
_TEXT_URL = re.compile(r"https?://[^\s<>\"]+")
_TRAILING = ".,;:!?)]}'"
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


@dataclass(frozen=True)
class Link:
    """One counted link of an issue: its number, which part it is in, where it goes."""

    position: int
    part: str
    url: str
    label: str


def trackable(url: str, base_url: str) -> bool:
    """True when a click on ``url`` may go through the redirect."""
    if "%%" in url:
        return False  # a per-recipient placeholder (unsubscribe, join): must stay the reader's
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return False
    own = urlsplit(base_url)
    own_path = own.path.rstrip("/")
    same_site = parts.netloc.lower() == own.netloc.lower()
    return not (same_site and (parts.path == own_path or parts.path.startswith(own_path + "/")))


def _html_candidates(body: str) -> list[tuple[int, int, str, str]]:
    """(start, end) of each ``href`` value in ``body``, with the URL and the link's words."""
    found = []
    for anchor in _ANCHOR.finditer(body):
        href = _HREF.search(anchor.group(1))
        if href is None:
            continue
        start = anchor.start(1) + href.start(2)
        end = anchor.start(1) + href.end(2)
        url = html_lib.unescape(href.group(2)).strip()
        found.append((start, end, url, _label(anchor.group(2), url)))
    return found


def _label(inner: str, url: str) -> str:
    words = _SPACE.sub(" ", html_lib.unescape(_TAG.sub(" ", inner))).strip()
    if not words:
        alt = _IMG_ALT.search(inner)
        words = _SPACE.sub(" ", html_lib.unescape(alt.group(2))).strip() if alt else ""
    words = words or url
    return words if len(words) <= LABEL_LENGTH else words[: LABEL_LENGTH - 1] + "…"


def _text_candidates(body: str) -> list[tuple[int, int, str]]:
    found = []
    for match in _TEXT_URL.finditer(body):
        url = match.group(0).rstrip(_TRAILING)
        found.append((match.start(), match.start() + len(url), url))
    return found


def tracked_links(html: str, text: str, *, base_url: str, in_text: bool = False) -> list[Link]:
    """The links a send counts, numbered from 1: the HTML part's, then (``in_text``) the text's.

    A text link takes the words of the HTML link with the same URL, when there is one.
    """
    links: list[Link] = []
    words: dict[str, str] = {}
    for _start, _end, url, label in _html_candidates(html):
        if trackable(url, base_url):
            links.append(Link(len(links) + 1, HTML, url, label))
            words.setdefault(url, label)
    if in_text:
        for _start, _end, url in _text_candidates(text):
            if trackable(url, base_url):
                links.append(Link(len(links) + 1, TEXT, url, words.get(url, url)))
    return links


def _splice(body: str, spans: Sequence[tuple[int, int, str]]) -> str:
    out: list[str] = []
    last = 0
    for start, end, value in spans:
        out.append(body[last:start])
        out.append(value)
        last = end
    out.append(body[last:])
    return "".join(out)


def track_html(
    html: str,
    links: Sequence[Link],
    link_url: Callable[[Link], str],
    *,
    base_url: str,
    pixel: str | None = None,
) -> str:
    """``html`` with each of ``links`` (its HTML part's) pointing at ``link_url(link)``.

    The document is walked as :func:`tracked_links` walked it; an occurrence whose URL is not
    the stored one (the bodies changed) is left as written rather than sent somewhere else.
    ``pixel``, an image URL, goes last in the body (the open pixel).
    """
    ours = iter([link for link in links if link.part == HTML])
    spans = []
    for start, end, url, _label in _html_candidates(html):
        if not trackable(url, base_url):
            continue
        link = next(ours, None)
        if link is None:
            break
        if link.url == url:
            spans.append((start, end, html_lib.escape(link_url(link), quote=True)))
    tracked = _splice(html, spans)
    if pixel is not None:
        img = (
            f'<img src="{html_lib.escape(pixel, quote=True)}" width="1" height="1" alt="" '
            'style="display:block;width:1px;height:1px;border:0;">'
        )
        ends = list(_BODY_END.finditer(tracked))
        at = ends[-1].start() if ends else len(tracked)
        tracked = tracked[:at] + img + tracked[at:]
    return tracked


def track_text(
    text: str, links: Sequence[Link], link_url: Callable[[Link], str], *, base_url: str
) -> str:
    """``text`` with each of ``links`` (its text part's) replaced by ``link_url(link)``."""
    ours = iter([link for link in links if link.part == TEXT])
    spans = []
    for start, end, url in _text_candidates(text):
        if not trackable(url, base_url):
            continue
        link = next(ours, None)
        if link is None:
            break
        if link.url == url:
            spans.append((start, end, link_url(link)))
    return _splice(text, spans)
