"""Markdown in issues: the shared parser, and inline runs turned into escaped HTML plus text.

An :class:`InlineReader` converts markdown-it inline tokens into :class:`~newsletter.model.Inline`
values and checks what they point at (links that work from an inbox, image paths inside the
issues folder), reporting problems through a callback so the issue parser can collect them all.
"""

from __future__ import annotations

import html
import posixpath
import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from markdown_it import MarkdownIt
from markdown_it.rules_core.smartquotes import smartquotes
from markdown_it.rules_core.state_core import StateCore
from markdown_it.token import Token
from mdit_py_plugins.container import container_plugin

from newsletter.config import Settings
from newsletter.diagnostics import Severity
from newsletter.model import Image, Inline

# (severity, line, message): how a reader hands a problem back to whoever collects them
Report = Callable[[Severity, int, str], None]

_MD: MarkdownIt | None = None

# The only typography applied besides quotes (docs/issue-format.md lists them). markdown-it's
# own "replacements" rule is off: it turns "(R)" into ®, "(C)" into ©, "+-" into ± and
# "?!!!" into "!!!", which in a caption naming people "(R)ight" and "(L)eft" is a factual error.
# "--" is an en dash between two spaces ("A -- B") or between two characters ("10--12"), so a
# command-line "--flag" stays as typed.
_EM_DASH = re.compile(r"(?<![-])---(?![-])")
_EN_DASH_SPACED = re.compile(r"(^|\s)--(?=\s|$)")
_EN_DASH_JOINED = re.compile(r"(?<=[^-\s])--(?=[^-\s])")
_ELLIPSIS = re.compile(r"(?<![.])[.]{3}(?![.])")


def punctuate(text: str) -> str:
    """Dashes and the ellipsis of one run of text: ``---`` → —, ``--`` → –, ``...`` → …."""
    if "--" not in text and "..." not in text:
        return text
    text = _EM_DASH.sub("\u2014", text)
    text = _EN_DASH_SPACED.sub("\\1\u2013", text)
    text = _EN_DASH_JOINED.sub("\u2013", text)
    return _ELLIPSIS.sub("\u2026", text)


def _punctuation_rule(state: StateCore) -> None:
    """Core rule: :func:`punctuate` every text token, except the text of an autolink."""
    for token in state.tokens:
        if token.type != "inline" or not token.children:
            continue
        in_autolink = 0
        for child in token.children:
            if child.type == "link_open" and child.info == "auto":
                in_autolink += 1
            elif child.type == "link_close" and child.info == "auto":
                in_autolink -= 1
            elif child.type == "text" and not in_autolink:
                child.content = punctuate(child.content)


def markdown_parser() -> MarkdownIt:
    """The shared Markdown parser: CommonMark, raw HTML off (escaped), quotes and dashes."""
    global _MD
    if _MD is None:
        md = MarkdownIt("commonmark", {"html": False, "typographer": True})
        md.enable(["smartquotes", "strikethrough"])
        md.disable("replacements", ignoreInvalid=True)
        # after the quotes, before text_join: a backslash-escaped "\-\-" is still its own
        # token here, so an editor can keep two hyphens
        md.core.ruler.after("smartquotes", "punctuation", _punctuation_rule)
        # One generic container so an unknown or misspelled block name is reported, not
        # silently read as text; the name is the first word of its info string.
        container_plugin(md, "block", validate=lambda params, *_: bool(params.strip()))
        _MD = md
    return _MD


def typography(value: str) -> str:
    """Plain text (a title, an author, a credit) with the same quotes and dashes as the body.

    Runs the parser's own smart-quote rule and :func:`punctuate` over the text as one token,
    so nothing in it is read as Markdown: ``*`` and ``[`` stay as typed.
    """
    if not value or not ('"' in value or "'" in value or "--" in value or "..." in value):
        return value
    md = markdown_parser()
    text = Token("text", "", 0, content=value)
    inline = Token("inline", "", 0, content=value, children=[text])
    state = StateCore(value, md, {}, [inline])
    smartquotes(state)
    _punctuation_rule(state)
    return text.content


def one_line(value: str) -> str:
    """Collapse all whitespace (CR/LF included) so the value is safe in a header."""
    return " ".join(value.split())


class InlineReader:
    """Inline Markdown to :class:`Inline`, checking links and images as it goes."""

    def __init__(self, settings: Settings, report: Report) -> None:
        self.settings = settings
        self.report = report
        # (anchor, line) of every "[text](#anchor)" link, for the parser to check once it
        # knows every section's anchor
        self.anchor_links: list[tuple[str, int]] = []

    def text(self, source: str, line: int) -> Inline:
        """Inline Markdown from the front matter (headlines, captions)."""
        env: dict[str, Any] = {}
        tokens = markdown_parser().parseInline(source, env)
        return self.inline(tokens[0].children or [] if tokens else [], line)

    def image(self, token: Token, line: int) -> Image | None:
        """An image token as an Image (its title is the caption); None if it has no alt text."""
        src = str(token.attrGet("src") or "")
        alt = typography(one_line(plain(token.children or []) or token.content))
        if not alt:
            self.report(
                Severity.ERROR,
                line,
                f"image {src!r} has no alt text; write ![what it shows]({src})",
            )
            return None
        src = self.image_src(src, line)
        title = token.attrGet("title")
        caption = self.text(str(title), line) if title else None
        return Image(src=src, alt=alt, caption=caption, line=line)

    def image_src(self, src: str, line: int) -> str:
        """Images are https:// URLs or paths inside the issues folder, nothing else."""
        parts = urlsplit(src)
        if parts.scheme in ("http", "https"):
            if not parts.netloc:
                self.report(Severity.ERROR, line, f"image address {src!r} has no host")
            return src
        if parts.scheme or parts.netloc or src.startswith("/"):
            self.report(
                Severity.ERROR, line, f"image {src!r}: use a path under issues/ or an https:// URL"
            )
            return src
        normal = posixpath.normpath(src)
        if normal.startswith("..") or not src:
            self.report(Severity.ERROR, line, f"image {src!r} points outside the issues folder")
        return src

    def url(self, url: str, line: int) -> str:
        """Links must work from an inbox: absolute http(s) or mailto; '/path' means our site.

        ``#anchor`` jumps to a section of this issue (checked by the parser, which knows them).
        """
        if url.startswith("#"):
            anchor = unquote(url[1:])
            if not anchor:
                self.report(
                    Severity.ERROR,
                    line,
                    "a link to '#' goes nowhere; name the section: [text](#section-anchor)",
                )
            else:
                self.anchor_links.append((anchor, line))
            return url
        parts = urlsplit(url)
        if url.startswith("/") and not url.startswith("//"):
            return self.settings.publication.base_url.rstrip("/") + url
        web = parts.scheme in ("http", "https")
        if web and parts.hostname and ("." in parts.hostname or parts.hostname == "localhost"):
            return url
        if parts.scheme == "mailto" and "@" in parts.path:
            return url
        self.report(
            Severity.ERROR, line, f"malformed link {url!r}; use a full https:// address or mailto:"
        )
        return url

    def inline(self, children: Sequence[Token], line: int) -> Inline:
        """Escaped HTML and plain text (links as ``text <url>``) for one run of inline tokens."""
        out_html: list[str] = []
        out_text: list[str] = []
        words: list[str] = []
        links: list[tuple[str, int]] = []  # (url, text position) of open links
        for child in children:
            kind = child.type
            if kind == "text":
                if "](" in child.content and not links:
                    # markdown-it leaves a link it refuses (javascript:, data:, a bad bracket)
                    # as literal text; the reader would see the raw syntax
                    self.report(
                        Severity.ERROR,
                        line,
                        "this looks like a link Markdown could not read: check the brackets and "
                        "use an https:// or mailto: address (malformed link)",
                    )
                out_html.append(html.escape(child.content, quote=False))
                out_text.append(child.content)
                words.append(child.content)
            elif kind == "softbreak":
                out_html.append("\n")
                out_text.append(" ")
                words.append(" ")
                line += 1
            elif kind == "hardbreak":
                out_html.append("<br>\n")
                out_text.append("\n")
                words.append(" ")
                line += 1
            elif kind == "code_inline":
                out_html.append(f"<code>{html.escape(child.content, quote=False)}</code>")
                out_text.append(child.content)
                words.append(child.content)
            elif kind in (
                "em_open",
                "em_close",
                "strong_open",
                "strong_close",
                "s_open",
                "s_close",
            ):
                tag = {"em": "em", "strong": "strong", "s": "s"}[kind.rsplit("_", 1)[0]]
                out_html.append(f"<{'/' if child.nesting < 0 else ''}{tag}>")
            elif kind == "link_open":
                url = self.url(str(child.attrGet("href") or ""), line)
                out_html.append(f'<a href="{html.escape(url)}">')
                links.append((url, len(out_text)))
            elif kind == "link_close" and links:
                url, start = links.pop()
                out_html.append("</a>")
                label = "".join(out_text[start:]).strip()
                # a jump within the email has nothing to show in the text part
                if not url.startswith("#") and label not in (url, url.removeprefix("mailto:")):
                    out_text.append(f" <{url}>")
            elif kind == "image":
                alt = plain(child.children or []) or child.content
                self.report(
                    Severity.WARNING,
                    line,
                    "images inside a sentence are shown as their alt text; put the "
                    "image on its own line to show it",
                )
                out_html.append(html.escape(alt, quote=False))
                out_text.append(alt)
                words.append(alt)
        return Inline("".join(out_html), "".join(out_text), plain="".join(words))


def plain(children: Sequence[Token]) -> str:
    """The words of inline tokens, without markup or link targets."""
    parts = []
    for child in children:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            parts.append(plain(child.children or []) or child.content)
    return "".join(parts)


def join(parts: Sequence[Inline]) -> Inline:
    """Several paragraphs as one run, with line breaks between them."""
    if len(parts) == 1:
        return parts[0]
    return Inline(
        "<br>\n".join(p.html for p in parts),
        "\n".join(p.text for p in parts),
        plain=" ".join(p.plain for p in parts),
    )
