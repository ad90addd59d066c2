"""Issue files: YAML front matter plus Markdown body in, an :class:`~newsletter.model.Issue` out.

The parser never stops at the first mistake: it records every :class:`Problem` with its line
and carries on with a harmless stand-in, so ``newsletter check`` can report everything at once.
:func:`load_issue` is the strict entry point that raises the first error as an
:class:`IssueError`. Parsing is pure; only :func:`load_issue` and :func:`read_issue_text` read
files.
"""

from __future__ import annotations

import difflib
import html
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from markdown_it.token import Token

from newsletter.config import Settings
from newsletter.diagnostics import Problem, Severity
from newsletter.errors import IssueError
from newsletter.markup import InlineReader, join, markdown_parser, one_line, plain, typography
from newsletter.model import (
    JOIN_URL_PLACEHOLDER,
    PLACEHOLDERS,
    Block,
    BulletList,
    Button,
    CallToAction,
    CtaPosition,
    Figure,
    Image,
    Inline,
    Issue,
    IssueStatus,
    OtherLists,
    Paragraph,
    Part,
    Quote,
    RelatedStories,
    RelatedStory,
    Section,
    Spotlight,
)

FRONT_MATTER_KEYS = (
    "title",
    "date",
    "authors",
    "subject",
    "preheader",
    "hero",
    "headlines",
    "send_at",
    "status",
    "list",
)
REQUIRED_KEYS = ("title", "date", "authors")
HERO_KEYS = ("src", "alt", "caption", "credit")
BLOCK_NAMES = ("related", "figure", "spotlight", "cta", "newsletters")
# blocks that stand between sections rather than inside one
FEATURE_NAMES = ("spotlight", "cta", "newsletters")
BLOCK_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "figure": ("credit",),
    "spotlight": ("label",),
    "cta": ("position",),
    "newsletters": ("lists",),
}
HEADLINES_MIN, HEADLINES_MAX = 3, 6
# The dates an issue may carry. Email exists since the 1970s; the far ends of Python's range
# (year 1, year 9999) break on the first conversion (a timestamp, a time zone, a week ahead).
EARLIEST_DATE = date(1970, 1, 1)
LATEST_DATE = date(9998, 12, 31)
# The largest issue file read. A whole issue is a few dozen KB; past this size it is not an
# issue but a mistake (or an attack), and the render would take minutes and gigabytes.
MAX_ISSUE_BYTES = 2 * 1024 * 1024
PREHEADER_MAX = 140
# What a related-story card holds at 15-16 px in its half of the 600 px layout before it
# grows taller than the card beside it (about four lines of teaser, two of title).
TEASER_MAX = 120
CARD_TITLE_MAX = 80

# Control characters (and the noncharacters U+FFFE/U+FFFF) cannot appear in HTML or XML
# and make the inliner fail; they only ever arrive by accident.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
# Half of a UTF-16 pair on its own stands for no character: no file decodes to one, but a
# YAML escape ("\\ud800") makes one, and no encoder (UTF-8, the database's) will take it.
_SURROGATE = re.compile("[\ud800-\udfff]")
_FILE_NAME = re.compile(r"^(?P<date>\d{4}-\d{2}-\d{2})-(?P<slug>.+)$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# key="value", or key=value for a single word (position=top)
_ATTR = re.compile(r'(?<!\S)(?P<key>[a-z_]+)=(?:"(?P<value>[^"]*)"|(?P<bare>[^\s"]+))')
# "## Heading {#anchor}" names the section's anchor, so an edited heading keeps its links
_EXPLICIT_ANCHOR = re.compile(r"\s*\{#(?P<anchor>[^\s{}#]+)\}$")
# what an anchor drops from a heading: everything but letters, digits, spaces, - and _
_ANCHOR_DROP = re.compile(r"[^\w\s-]")
# A quote's last paragraph starting with a dash is its attribution ("— Name, role").
_ATTRIBUTION = re.compile(r"^\s*(?:—|―|–|--)\s*")
# The separator between a related story's link and its teaser.
_TEASER_SEP = re.compile(r"^\s*(?:—|–|-|:)\s*")


def slug_for(path: Path) -> str:
    """``2026-11-20-river-week.md`` -> ``river-week``; a name without a date keeps its stem."""
    match = _FILE_NAME.match(path.stem)
    return match.group("slug") if match else path.stem


def read_issue_text(path: Path) -> str:
    """The file's text, or an :class:`IssueError` saying why it cannot be read.

    Only a regular file of at most :data:`MAX_ISSUE_BYTES` is read: a FIFO named ``*.md``
    would block forever and a link to ``/dev/zero`` never ends.
    """
    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting for one
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise IssueError("no such file", path=path) from None
    except IsADirectoryError:
        raise IssueError("is a directory, not an issue file", path=path) from None
    except OSError as exc:
        raise IssueError(f"cannot read: {exc.strerror}", path=path) from None
    except ValueError:  # a NUL in the name
        raise IssueError("cannot read: the name holds a NUL character", path=path) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IssueError("is a directory, not an issue file", path=path)
        if not stat.S_ISREG(mode):
            raise IssueError("is not a regular file (a pipe or a device?)", path=path)
        with os.fdopen(fd, "rb", closefd=False) as file:
            # one byte more than allowed tells a file at the limit from one over it, even
            # one that grows while it is read
            raw = file.read(MAX_ISSUE_BYTES + 1)
    except OSError as exc:
        raise IssueError(f"cannot read: {exc.strerror}", path=path) from None
    finally:
        os.close(fd)
    if len(raw) > MAX_ISSUE_BYTES:
        raise IssueError(
            f"too large (over {MAX_ISSUE_BYTES // (1024 * 1024)} MB; an issue is text of a "
            "few dozen KB)",
            path=path,
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise IssueError("not UTF-8 text; save the file as UTF-8", path=path, line=line) from None


def load_issue(path: Path, settings: Settings) -> Issue:
    """Read and parse one issue file; the first error becomes an :class:`IssueError`."""
    result = parse_issue(read_issue_text(path), path=path, settings=settings)
    for problem in result.problems:
        if problem.is_error:
            raise IssueError(problem.message, path=path, line=problem.line)
    assert result.issue is not None  # no errors means every required part was there
    return result.issue


@dataclass
class ParseResult:
    """What the parser made of a file: the issue (None if it could not be built) and problems."""

    issue: Issue | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]


def parse_issue(text: str, *, path: Path, settings: Settings) -> ParseResult:
    """Parse issue ``text`` (from ``path``) into an Issue, collecting every problem on the way."""
    return _IssueParser(text, path, settings).parse()


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Loader(yaml.SafeLoader):
    """Safe YAML without implicit timestamps: dates are checked here, with clear messages."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _IssueParser:
    def __init__(self, text: str, path: Path, settings: Settings) -> None:
        text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
        self.original = text
        self.text = _CONTROL.sub("", text)
        self.path = path
        self.settings = settings
        self.problems: list[Problem] = []
        self.markup = InlineReader(settings, self.report)
        self.key_lines: dict[tuple[str | int, ...], int] = {}
        self.body_offset = 0  # zero-based file line where the body starts
        self.banner: CallToAction | None = None
        self.features: dict[str, int] = {}  # feature block -> line of the first one
        self.anchors: dict[str, int] = {}  # section anchor -> line of its heading
        self.suffixes: dict[str, int] = {}  # anchor base -> the last "-N" tried for it
        self.first_text: str | None = None

    # -- problems -----------------------------------------------------------------------------

    def report(self, severity: Severity, line: int, message: str) -> None:
        self.problems.append(Problem(self.path, line, severity, message))

    def error(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.path, line, Severity.ERROR, message))

    def warn(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.path, line, Severity.WARNING, message))

    def key_line(self, *key: str | int) -> int:
        while key:
            if key in self.key_lines:
                return self.key_lines[key]
            key = key[:-1]
        return 1

    # -- whole file ---------------------------------------------------------------------------

    def parse(self) -> ParseResult:
        self.check_file_name()
        if self.text != self.original:
            first = _CONTROL.search(self.original)
            line = self.original[: first.start() if first else 0].count("\n") + 1
            self.warn(line, "invisible control characters were removed (pasted from a PDF?)")
        front, body = self.split()
        meta = self.front_matter(front)
        typed = [(self.text.index(p), p) for p in PLACEHOLDERS if p in self.text]
        typed += [(m.start(), m.group()) for m in JOIN_URL_PLACEHOLDER.finditer(self.text)]
        for position, placeholder in sorted(typed):
            line = self.text[:position].count("\n") + 1
            self.warn(line, f"{placeholder} is filled in per recipient; do not type it")
        parts = self.body(body)
        if not any(isinstance(part, Section) for part in parts):
            self.error(self.body_offset + 1, "the issue has no body; add at least one ## section")
        self.check_anchor_links()
        if any(p.is_error for p in self.problems) or meta is None:
            return ParseResult(None, self.sorted_problems())
        preheader = meta.pop("preheader", None) or self.default_preheader(meta)
        issue = Issue(
            path=self.path,
            slug=slug_for(self.path),
            body=parts,
            banner=self.banner,
            preheader=preheader,
            **meta,
        )
        return ParseResult(issue, self.sorted_problems())

    def check_anchor_links(self) -> None:
        known = list(self.anchors)
        for anchor, line in self.markup.anchor_links:
            if anchor in self.anchors:
                continue
            hint = _did_you_mean(anchor, known) or (
                f" (anchors here: {', '.join(known)})"
                if known
                else " (this issue has no ## sections)"
            )
            self.error(
                line,
                f"the link to #{anchor} goes nowhere: no section has that anchor{hint}; a "
                "section's anchor is its heading in lowercase with hyphens, or the {#name} "
                "written after it",
            )

    def check_file_name(self) -> None:
        slug = slug_for(self.path)
        if not _FILE_NAME.match(self.path.stem):
            self.warn(1, "name issue files YYYY-MM-DD-slug.md so they sort by date")
        if not _SLUG.match(slug):
            self.error(
                1,
                f"the file name gives the slug {slug!r}, which becomes a URL; use only "
                "lowercase letters, digits and hyphens",
            )

    def sorted_problems(self) -> list[Problem]:
        return sorted(self.problems, key=lambda p: p.line)

    def split(self) -> tuple[str | None, str]:
        lines = self.text.split("\n")
        if not lines or lines[0].rstrip() != "---":
            self.error(1, "the file must start with front matter: a line '---', YAML, then '---'")
            return None, self.text
        for index in range(1, len(lines)):
            if lines[index].rstrip() in ("---", "..."):
                self.body_offset = index + 1
                return "\n".join(lines[1:index]), "\n".join(lines[index + 1 :])
        self.error(1, "the front matter is never closed; add a line '---' after it")
        return None, ""

    # -- front matter -------------------------------------------------------------------------

    def front_matter(self, source: str | None) -> dict[str, Any] | None:
        if source is None:
            return None
        try:
            loader = _Loader(source)
            try:
                node = loader.get_single_node()
                data = loader.construct_document(node) if node is not None else {}
            finally:
                loader.dispose()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = 2 + (mark.line if mark else 0)
            self.error(line, f"front matter is not valid YAML: {exc.problem or exc.context}")
            return None
        except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
            self.error(2, f"front matter is not valid YAML: {exc}")
            return None
        if not isinstance(data, dict):
            self.error(2, "front matter must be 'key: value' lines")
            return None
        assert node is not None or not data
        if node is not None:
            self.record_lines(node, ())
        try:
            cleaned = self.clean_value(data, ())
        except RecursionError:
            self.error(2, "the front matter is nested too deeply to read")
            return None
        assert isinstance(cleaned, dict)
        return self.fields({str(k): v for k, v in cleaned.items()})

    def clean_value(self, value: Any, key: tuple[str | int, ...]) -> Any:
        """``value`` without control characters (a warning) or lone surrogates (an error).

        YAML escapes (``"\\e"``, ``"\\uffff"``, ``"\\ud800"``) make characters the file's
        own text cannot hold, so the check on the raw text does not see them.
        """
        if isinstance(value, dict):
            cleaned: dict[Any, Any] = {}
            for name, item in value.items():
                # the clean name in the path: it goes into messages, which must print
                name = self.clean_value(name, key)
                cleaned[name] = self.clean_value(item, (*key, str(name)))
            return cleaned
        if isinstance(value, list):
            return [self.clean_value(v, (*key, index)) for index, v in enumerate(value)]
        if not isinstance(value, str):
            return value
        name = ".".join(map(str, key)) or "a key"
        surrogate = _SURROGATE.search(value)
        if surrogate:
            self.error(
                self.key_line(*key),
                f"{name} holds \\u{ord(surrogate.group()):04x}, half of a UTF-16 pair that stands "
                "for no character on its own; write the character itself",
            )
            value = _SURROGATE.sub("\ufffd", value)
        if _CONTROL.search(value):
            self.warn(
                self.key_line(*key),
                f"invisible control characters were removed from {name}",
            )
            value = _CONTROL.sub("", value)
        return value

    def record_lines(self, node: yaml.Node, prefix: tuple[str | int, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                line = 2 + key_node.start_mark.line
                if key in seen and isinstance(key_node, yaml.ScalarNode):
                    self.error(line, f"duplicate key {key!r}")
                seen.add(key)
                self.key_lines.setdefault((*prefix, key), line)
                if len(prefix) < 2:
                    self.record_lines(value_node, (*prefix, key))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.key_lines[(*prefix, index)] = 2 + item.start_mark.line

    def text_value(self, value: Any, *key: str | int) -> str | None:
        if isinstance(value, bool) or value is None or isinstance(value, dict | list):
            self.error(self.key_line(*key), f"{'.'.join(map(str, key))} must be text")
            return None
        return one_line(str(value))

    def prose_value(self, value: Any, *key: str | int) -> str | None:
        """Text a reader sees (a title, a name, a credit): typographic quotes and dashes."""
        text = self.text_value(value, *key)
        return typography(text) if text else text

    def fields(self, data: Mapping[str, Any]) -> dict[str, Any] | None:
        for key in data:
            if key not in FRONT_MATTER_KEYS:
                self.error(
                    self.key_line(key),
                    f"unknown front matter key {key!r}" + _did_you_mean(key, FRONT_MATTER_KEYS),
                )
        for key in REQUIRED_KEYS:
            if key not in data:
                self.error(2, f"front matter is missing the required key {key!r}")

        title = self.prose_value(data["title"], "title") if "title" in data else None
        if title == "":
            self.error(self.key_line("title"), "title is empty")
        issue_date = self.date_value(data["date"]) if "date" in data else None
        authors = self.authors(data["authors"]) if "authors" in data else None
        subject = None
        if data.get("subject") is not None:
            subject = self.prose_value(data["subject"], "subject")
        preheader = None
        if data.get("preheader") is not None:
            preheader = self.prose_value(data["preheader"], "preheader")
            if preheader and len(preheader) > PREHEADER_MAX:
                self.warn(
                    self.key_line("preheader"),
                    f"preheader is {len(preheader)} characters; inboxes show about 90-"
                    f"{PREHEADER_MAX}",
                )
        hero = self.hero(data["hero"]) if data.get("hero") is not None else None
        headlines = self.headlines(data["headlines"]) if "headlines" in data else ()
        send_at = self.send_at(data["send_at"]) if data.get("send_at") is not None else None
        status = self.status(data.get("status", "draft"))
        mailing_list = self.mailing_list(data["list"]) if data.get("list") is not None else None

        if not title or issue_date is None or not authors or status is None:
            return None
        return {
            "title": title,
            "date": issue_date,
            "authors": authors,
            "subject": subject or f"{self.settings.publication.name}: {title}",
            "preheader": preheader,
            "hero": hero,
            "headlines": headlines,
            "send_at": send_at,
            "status": status,
            "list": mailing_list,
        }

    def date_value(self, value: Any) -> date | None:
        text = str(value).strip()
        try:
            if not _DATE.match(text):
                raise ValueError(text)
            parsed = date.fromisoformat(text)
        except ValueError:
            self.error(self.key_line("date"), f"bad date {text!r}; write it as YYYY-MM-DD")
            return None
        if not EARLIEST_DATE <= parsed <= LATEST_DATE:
            self.error(self.key_line("date"), _out_of_range("date", text))
            return None
        match = _FILE_NAME.match(self.path.stem)
        if match and match.group("date") != text:
            self.warn(
                self.key_line("date"),
                f"date {text} does not match the file name ({match.group('date')})",
            )
        return parsed

    def authors(self, value: Any) -> tuple[str, ...] | None:
        items = value if isinstance(value, list) else [value]
        authors = []
        for index, item in enumerate(items):
            name = self.prose_value(item, "authors", index)
            if name:
                authors.append(name)
        if not authors:
            self.error(self.key_line("authors"), "authors must name at least one person")
            return None
        return tuple(authors)

    def hero(self, value: Any) -> Image | None:
        line = self.key_line("hero")
        if not isinstance(value, dict):
            self.error(line, "hero must have src, alt, caption and credit lines under it")
            return None
        for key in value:
            if str(key) not in HERO_KEYS:
                self.error(
                    self.key_line("hero", str(key)),
                    f"unknown hero key {key!r}" + _did_you_mean(str(key), HERO_KEYS),
                )
        src = self.text_value(value.get("src"), "hero", "src") if "src" in value else None
        if not src:
            self.error(line, "hero needs a src (an image path such as images/hero.png)")
        alt = self.prose_value(value.get("alt"), "hero", "alt") if "alt" in value else None
        if not alt:
            self.error(line, "hero image has no alt text; describe the picture for screen readers")
        caption = None
        if value.get("caption") is not None:
            text = self.text_value(value["caption"], "hero", "caption")
            if text:
                caption = self.markup.text(text, self.key_line("hero", "caption"))
        credit = None
        if value.get("credit") is not None:
            credit = self.prose_value(value["credit"], "hero", "credit")
        if not src or not alt:
            return None
        self.markup.image_src(src, self.key_line("hero", "src"))
        return Image(src=src, alt=alt, caption=caption, credit=credit or None, line=line)

    def headlines(self, value: Any) -> tuple[Inline, ...]:
        line = self.key_line("headlines")
        if not isinstance(value, list):
            self.error(line, "headlines must be a list, one '- headline' per line")
            return ()
        result = []
        for index, item in enumerate(value):
            text = self.text_value(item, "headlines", index)
            if text:
                result.append(self.markup.text(text, self.key_line("headlines", index)))
        if not HEADLINES_MIN <= len(result) <= HEADLINES_MAX:
            self.warn(
                line,
                f"{len(result)} headlines; a digest reads best with "
                f"{HEADLINES_MIN}-{HEADLINES_MAX}",
            )
        return tuple(result)

    def send_at(self, value: Any) -> datetime | None:
        text = str(value).strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            self.error(
                self.key_line("send_at"),
                f"bad send_at {text!r}; write it as YYYY-MM-DD HH:MM (optionally +02:00)",
            )
            return None
        if not EARLIEST_DATE <= parsed.date() <= LATEST_DATE:
            self.error(self.key_line("send_at"), _out_of_range("send_at", text))
            return None
        if parsed.tzinfo is None:
            # A bare time means the publication's own clock, not the server's.
            parsed = parsed.replace(tzinfo=ZoneInfo(self.settings.publication.timezone))
        return parsed

    def status(self, value: Any) -> IssueStatus | None:
        text = str(value).strip().lower()
        try:
            return IssueStatus(text)
        except ValueError:
            choices = [s.value for s in IssueStatus]
            self.error(
                self.key_line("status"),
                f"status {value!r} is not one of {', '.join(choices)}"
                + _did_you_mean(text, choices),
            )
            return None

    def mailing_list(self, value: Any) -> str | None:
        text = str(value).strip()
        if text not in self.settings.lists:
            known = ", ".join(sorted(self.settings.lists))
            self.error(
                self.key_line("list"),
                f"no list named {text!r} (known: {known})"
                + _did_you_mean(text, self.settings.lists),
            )
            return None
        return text

    def default_preheader(self, meta: Mapping[str, Any]) -> str:
        """The inbox preview: the headlines if any, else the opening paragraph, trimmed."""
        headlines: Sequence[Inline] = meta.get("headlines", ())
        if headlines:
            text = " · ".join(one_line(h.plain) for h in headlines)
        else:
            text = self.first_text or str(meta["title"])
        if len(text) > PREHEADER_MAX:
            text = text[: PREHEADER_MAX - 1].rsplit(" ", 1)[0].rstrip(" ·,;:") + "…"
        return text

    # -- body ---------------------------------------------------------------------------------

    def body(self, source: str) -> tuple[Part, ...]:
        """The body as parts in written order: sections, and the features between them.

        A feature (spotlight, call to action, "more from us") written inside a section splits
        it: the section's text after the feature follows it as a part without a heading.
        """
        try:
            tokens = markdown_parser().parse(source)
        except RecursionError:
            self.error(self.body_offset + 1, "the Markdown is nested too deeply to read")
            return ()
        self.body_lines = source.split("\n")
        parts: list[Part] = []
        # the open section: its heading (text, line, anchor), whether that heading is shown
        # already (a feature split the section), and its blocks since then
        heading: tuple[str, int, str] | None = None
        shown = False
        blocks: list[Block] = []

        def flush(*, closing: bool) -> None:
            nonlocal shown, blocks
            if blocks:
                if heading is not None and not shown:
                    parts.append(
                        Section(heading[0], tuple(blocks), anchor=heading[2], line=heading[1])
                    )
                else:
                    parts.append(Section(None, tuple(blocks), line=self.block_line(blocks[0])))
                shown = heading is not None
                blocks = []
            elif closing and heading is not None and not shown:
                self.error(
                    heading[1], f"section {heading[0]!r} is empty; write something or drop it"
                )

        index = 0
        while index < len(tokens):
            token = tokens[index]
            end = _matching_close(tokens, index)
            line = self.line_of(token)
            if token.type == "heading_open" and token.tag in ("h1", "h2"):
                if token.tag == "h1":
                    self.warn(line, "use '##' for sections; the title comes from the front matter")
                flush(closing=True)
                heading, shown = self.section_heading(tokens[index + 1], line), False
            elif token.type == "container_block_open" and _block_name(token) in FEATURE_NAMES:
                feature = self.feature(tokens[index : end + 1], line)
                if feature is not None:
                    flush(closing=False)
                    parts.append(feature)
            else:
                blocks.extend(self.block(tokens[index : end + 1], top_level=True))
            index = end + 1
        flush(closing=True)
        return tuple(parts)

    def section_heading(self, inline: Token, line: int) -> tuple[str, int, str]:
        text, anchor = self.anchored(one_line(plain(inline.children or [])), line)
        if not text:
            self.error(line, "a section heading is empty")
        return text, line, anchor

    def anchored(self, heading: str, line: int) -> tuple[str, str]:
        """A heading without its ``{#anchor}``, and the anchor, unique within the issue."""
        explicit = _EXPLICIT_ANCHOR.search(heading)
        text = heading[: explicit.start()].rstrip() if explicit else heading
        anchor = explicit.group("anchor") if explicit else anchor_for(text)
        if explicit and anchor in self.anchors:
            self.error(line, f"two sections have the anchor #{anchor}; give this one another")
        # the first free "-N" after the base: taken anchors only accumulate, so the search for
        # a base resumes where it last stopped (from 0 every time, twenty thousand "## News"
        # headings took twenty thousand steps each)
        base, number = anchor, self.suffixes.get(anchor, 0)
        if number:
            anchor = f"{base}-{number}"
        while anchor in self.anchors:
            number += 1
            anchor = f"{base}-{number}"
        self.suffixes[base] = number
        self.anchors[anchor] = line
        return text, anchor

    @staticmethod
    def block_line(block: Block) -> int | None:
        return block.line

    def line_of(self, token: Token) -> int:
        return self.body_offset + (token.map[0] if token.map else 0) + 1

    def blocks(self, tokens: Sequence[Token]) -> list[Block]:
        result: list[Block] = []
        index = 0
        while index < len(tokens):
            end = _matching_close(tokens, index)
            result.extend(self.block(tokens[index : end + 1], top_level=False))
            index = end + 1
        return result

    def block(self, tokens: Sequence[Token], *, top_level: bool) -> list[Block]:
        """One top-level token group (open ... close) as zero or more model blocks."""
        token = tokens[0]
        line = self.line_of(token)
        kind = token.type
        if kind == "paragraph_open":
            return self.paragraph(tokens[1], line)
        if kind in ("bullet_list_open", "ordered_list_open"):
            items = self.list_items(tokens)
            return [BulletList(tuple(items), ordered=kind == "ordered_list_open", line=line)]
        if kind == "blockquote_open":
            return self.quote(tokens[1:-1], line)
        if kind == "heading_open":
            # ### and below have no slot in a digest; keep the words as a bold line.
            text = html.escape(plain(tokens[1].children or []), quote=False)
            self.warn(line, "only '##' headings start sections; this one is shown as bold text")
            return [Paragraph(Inline(f"<strong>{text}</strong>", html.unescape(text)), line=line)]
        if kind in ("fence", "code_block"):
            self.warn(line, "code blocks do not survive email clients; shown as plain text")
            content = token.content.rstrip("\n")
            return [Paragraph(Inline(html.escape(content, quote=False), content), line=line)]
        if kind == "hr":
            return []
        if kind == "container_block_open":
            return self.container(tokens, line, top_level=top_level)
        self.warn(line, f"this Markdown ({kind}) is not supported in email and was left out")
        return []

    def paragraph(self, inline: Token, line: int) -> list[Block]:
        children = inline.children or []
        content = inline.content.strip()
        if content.startswith(":::"):
            name = content[3:].lstrip(":").split(maxsplit=1)
            if not name:
                self.error(
                    line,
                    "':::' closes no block; when blocks nest, give the outer one more colons "
                    "(':::: spotlight' ... '::::')",
                )
            else:
                self.unknown_block(name[0], line)
            return []
        images = [c for c in children if c.type == "image"]
        others = [c for c in children if c.type not in ("image", "softbreak", "hardbreak")]
        if len(images) == 1 and not any(c.type != "text" or c.content.strip() for c in others):
            image = self.markup.image(images[0], line)
            return [Figure(image, line=line)] if image else []
        result = self.markup.inline(children, line)
        if self.first_text is None and result.plain:
            self.first_text = one_line(result.plain)
        return [Paragraph(result, line=line)]

    def unknown_block(self, name: str, line: int) -> None:
        self.error(
            line,
            f"unknown block '::: {name}'"
            + (_did_you_mean(name, BLOCK_NAMES) or f" (blocks: {', '.join(BLOCK_NAMES)})"),
        )

    def list_items(self, tokens: Sequence[Token]) -> list[Inline]:
        items: list[Inline] = []
        depth = 0
        current: list[Inline] = []
        for token in tokens[1:-1]:
            if token.type == "list_item_open":
                depth += 1
                if depth == 1:
                    current = []
            elif token.type == "list_item_close":
                depth -= 1
                if depth == 0:
                    items.append(join(current))
            elif token.type == "inline":
                if depth > 1:
                    self.warn(self.line_of(token), "nested lists are flattened in email")
                current.append(self.markup.inline(token.children or [], self.line_of(token)))
        return items

    def quote(self, tokens: Sequence[Token], line: int) -> list[Block]:
        paragraphs = [
            self.markup.inline(t.children or [], self.line_of(t))
            for t in tokens
            if t.type == "inline"
        ]
        attribution = None
        if len(paragraphs) > 1 and _ATTRIBUTION.match(paragraphs[-1].plain):
            attribution = one_line(_ATTRIBUTION.sub("", paragraphs.pop().plain))
        if not paragraphs:
            self.error(line, "the quote is empty")
            return []
        return [Quote(tuple(paragraphs), attribution=attribution or None, line=line)]

    # -- ::: blocks ---------------------------------------------------------------------------

    def block_header(self, opening: Token, line: int) -> tuple[str, str, dict[str, str]]:
        """A ``:::`` line's block name, free text (a heading) and ``key="value"`` attributes."""
        name, rest = [*opening.info.strip().split(maxsplit=1), ""][:2]
        attrs: dict[str, str] = {}
        known = BLOCK_ATTRIBUTES.get(name, ())
        for match in _ATTR.finditer(rest):
            key = match.group("key")
            if key not in known:
                allowed = f"'::: {name}' takes {', '.join(known)}" if known else "none here"
                self.error(
                    line,
                    f"unknown attribute {key!r}" + (_did_you_mean(key, known) or f" ({allowed})"),
                )
                continue
            attrs[key] = typography(one_line(match.group("value") or match.group("bare") or ""))
        # the free text is a heading: Markdown like any other, so entities and *emphasis* read
        free = self.markup.text(one_line(_ATTR.sub("", rest)), line).plain
        if name in BLOCK_NAMES:  # an unknown name is reported once, not twice
            self.check_closed(opening, line)
        return name, free, attrs

    def container(self, tokens: Sequence[Token], line: int, *, top_level: bool) -> list[Block]:
        name, free, attrs = self.block_header(tokens[0], line)
        inner = tokens[1:-1]
        if name == "related":
            return self.related(inner, line, heading=free)
        if name == "figure":
            return self.figure(inner, line, attrs)
        if name in FEATURE_NAMES:
            # top-level features never come here: the body loop takes them
            self.error(line, f"'::: {name}' cannot sit inside another block")
            return []
        self.unknown_block(name, line)
        return []

    def feature(self, tokens: Sequence[Token], line: int) -> Part | None:
        """A spotlight, call to action or "more from us" block at the top level of the body."""
        name, free, attrs = self.block_header(tokens[0], line)
        inner = tokens[1:-1]
        if name == "cta":
            cta = self.cta_block(inner, line, free, attrs)
            if cta is None or cta.position is not CtaPosition.TOP:
                return self.once(
                    cta,
                    "cta",
                    line,
                    "only one call to action per issue (and one banner with position=top)",
                )
            if self.banner is not None:
                self.error(line, "only one call to action can sit at the top (position=top)")
            else:
                self.banner = cta
            return None
        if name == "spotlight":
            spotlight = self.spotlight_block(inner, line, free, attrs)
            return self.once(spotlight, name, line, "only one spotlight per issue")
        lists = self.other_lists_block(inner, line, free, attrs)
        return self.once(lists, name, line, f"only one '::: {name}' block per issue")

    def once(self, part: Part | None, name: str, line: int, message: str) -> Part | None:
        if part is None:
            return None
        if name in self.features:
            self.error(line, message)
            return None
        self.features[name] = line
        return part

    def check_closed(self, opening: Token, line: int) -> None:
        assert opening.map is not None
        end = opening.map[1]
        closer = self.body_lines[end].strip() if end < len(self.body_lines) else ""
        if not (closer and set(closer) == {":"} and len(closer) >= len(opening.markup)):
            self.error(
                line,
                f"'{opening.markup} {opening.info.strip()}' is never closed; end it "
                f"with a line '{opening.markup}'",
            )

    def related(self, tokens: Sequence[Token], line: int, *, heading: str) -> list[Block]:
        lists = [t for t in tokens if t.type == "bullet_list_open" and t.level == tokens[0].level]
        stories: list[RelatedStory] = []
        usage = "write each related story as '- [Title](https://...) — one-line teaser'"
        if not lists or any(
            t.level == tokens[0].level and t.type not in ("bullet_list_open", "bullet_list_close")
            for t in tokens
        ):
            self.error(line, "a related block holds only a list; " + usage)
            return []
        for token in tokens:
            if token.type != "inline" or token.level != tokens[0].level + 3:
                continue
            story = self.related_story(token, usage)
            if story:
                stories.append(story)
        if not stories:
            return []
        return [RelatedStories(tuple(stories), heading=heading or None, line=line)]

    def related_story(self, token: Token, usage: str) -> RelatedStory | None:
        line = self.line_of(token)
        children = list(token.children or [])
        thumbnail = None
        images = [c for c in children if c.type == "image"]
        if images:
            # '- ![alt](images/x.png) [Title](url) — teaser': the picture goes on the card
            thumbnail = self.markup.image(images[0], line)
            if len(images) > 1:
                self.error(line, "a related story has one thumbnail at most")
            children = [c for c in children if c.type != "image"]
            while children and (
                children[0].type in ("softbreak", "hardbreak")
                or (children[0].type == "text" and not children[0].content.strip())
            ):
                children.pop(0)
        if not children or children[0].type != "link_open":
            self.error(
                line,
                "a related story starts with its link (after its thumbnail, if it has one); "
                + usage,
            )
            return None
        close = next(
            (i for i, c in enumerate(children) if c.type == "link_close"), len(children) - 1
        )
        url = self.markup.url(str(children[0].attrGet("href") or ""), line)
        title = one_line(plain(children[1:close]))
        teaser = one_line(_TEASER_SEP.sub("", plain(children[close + 1 :]), count=1))
        if not title:
            self.error(line, "a related story needs a title as its link text; " + usage)
            return None
        if not teaser:
            self.warn(line, f"related story {title!r} has no teaser; " + usage)
        elif len(teaser) > TEASER_MAX:
            self.warn(
                line,
                f"the teaser of {title!r} is {len(teaser)} characters; a card holds about "
                f"{TEASER_MAX} before it grows taller than the card beside it",
            )
        if len(title) > CARD_TITLE_MAX:
            self.warn(
                line,
                f"the related story title {title!r} is {len(title)} characters; a card holds "
                f"about {CARD_TITLE_MAX}",
            )
        return RelatedStory(url=url, title=title, teaser=teaser, line=line, thumbnail=thumbnail)

    def figure(self, tokens: Sequence[Token], line: int, attrs: Mapping[str, str]) -> list[Block]:
        inlines = [t for t in tokens if t.type == "inline"]
        if not inlines or not any(c.type == "image" for c in inlines[0].children or []):
            self.error(line, "a figure starts with its image: '![Alt text](images/photo.png)'")
            return []
        first = inlines[0].children or []
        image_token = next(c for c in first if c.type == "image")
        image = self.markup.image(image_token, self.line_of(inlines[0]))
        if image is None:
            return []
        captions = [self.markup.inline(t.children or [], self.line_of(t)) for t in inlines[1:]]
        caption = join(captions) if captions else image.caption
        credit = attrs.get("credit") or None
        return [
            Figure(
                Image(image.src, image.alt, caption=caption, credit=credit, line=image.line),
                line=line,
            )
        ]

    def spotlight_block(
        self, tokens: Sequence[Token], line: int, heading: str, attrs: Mapping[str, str]
    ) -> Spotlight | None:
        if not heading:
            self.error(line, "the spotlight needs a heading: '::: spotlight Meet the ferry keeper'")
            return None
        blocks = self.blocks(tokens)
        if not blocks:
            self.error(line, "the spotlight is empty")
            return None
        label = attrs.get("label") or None
        heading, anchor = self.anchored(heading, line)
        return Spotlight(
            heading=heading, blocks=tuple(blocks), label=label, anchor=anchor, line=line
        )

    def cta_block(
        self, tokens: Sequence[Token], line: int, heading: str, attrs: Mapping[str, str]
    ) -> CallToAction | None:
        usage = (
            "a call to action ends with its button as a link on its own line: '[Label](URL)', "
            "or two links on two lines for a main and a second button"
        )
        position = CtaPosition.BODY
        if "position" in attrs:
            try:
                position = CtaPosition(attrs["position"].lower())
            except ValueError:
                choices = [p.value for p in CtaPosition]
                self.error(
                    line,
                    f"position={attrs['position']!r} is not one of {', '.join(choices)}"
                    + _did_you_mean(attrs["position"], choices),
                )
                return None
        # the buttons are the last top-level paragraph
        groups: list[tuple[int, int]] = []
        index = 0
        while index < len(tokens):
            end = _matching_close(tokens, index)
            groups.append((index, end))
            index = end + 1
        last = groups[-1] if groups else None
        if last is None or tokens[last[0]].type != "paragraph_open":
            self.error(line, "the call to action has no button; " + usage)
            return None
        button_line = self.line_of(tokens[last[0]])
        buttons = self.buttons(tokens[last[0] + 1].children or [], button_line, usage)
        if buttons is None:
            return None
        blocks: list[Paragraph | BulletList] = []
        for start, end in groups[:-1]:
            for block in self.block(tokens[start : end + 1], top_level=False):
                if isinstance(block, Paragraph | BulletList):
                    blocks.append(block)
                else:
                    self.error(
                        block.line or line,
                        "a call to action holds paragraphs, lists and its buttons; move "
                        f"this {block.kind} out of it",
                    )
        return CallToAction(
            blocks=tuple(blocks),
            buttons=tuple(buttons),
            heading=heading or None,
            position=position,
            line=line,
        )

    def buttons(self, children: Sequence[Token], line: int, usage: str) -> list[Button] | None:
        """One or two links, alone in their paragraph (one per line, or side by side)."""
        buttons: list[Button] = []
        depth = 0
        start = 0
        url = ""
        for index, child in enumerate(children):
            if child.type == "link_open":
                if depth:
                    break
                depth, start = 1, index
                url = self.markup.url(str(child.attrGet("href") or ""), line)
            elif child.type == "link_close" and depth:
                depth = 0
                label = one_line(plain(children[start + 1 : index]))
                if not label:
                    self.error(line, "a button has no label; " + usage)
                    return None
                buttons.append(Button(label=label, url=url))
            elif not depth and not (
                child.type in ("softbreak", "hardbreak")
                or (child.type == "text" and not child.content.strip(" \t·|"))
            ):
                self.error(line, usage)
                return None
        if not buttons or depth:
            self.error(line, usage)
            return None
        if len(buttons) > 2:
            self.error(line, f"a call to action has at most two buttons, not {len(buttons)}")
            return None
        return buttons

    def other_lists_block(
        self, tokens: Sequence[Token], line: int, heading: str, attrs: Mapping[str, str]
    ) -> OtherLists | None:
        slugs: tuple[str, ...] = ()
        if attrs.get("lists"):
            slugs = tuple(dict.fromkeys(s.strip() for s in attrs["lists"].split(",") if s.strip()))
            for slug in slugs:
                if slug not in self.settings.lists:
                    known = ", ".join(sorted(self.settings.lists))
                    self.error(
                        line,
                        f"no list named {slug!r} (known: {known})"
                        + _did_you_mean(slug, self.settings.lists),
                    )
        elif len(self.settings.lists) < 2:
            self.warn(
                line,
                "'::: newsletters' offers the publication's other lists, and newsletter.toml "
                "has only one [lists.*]: the block shows nothing",
            )
        paragraphs = [
            self.markup.inline(t.children or [], self.line_of(t))
            for t in tokens
            if t.type == "inline"
        ]
        if any(t.type not in ("paragraph_open", "paragraph_close", "inline") for t in tokens):
            self.error(line, "'::: newsletters' holds at most a short paragraph of text")
        intro = join(paragraphs) if paragraphs else None
        return OtherLists(lists=slugs, heading=heading or None, intro=intro, line=line)


def _out_of_range(key: str, text: str) -> str:
    return (
        f"{key} {text} is out of range; an issue is dated between {EARLIEST_DATE.year} and "
        f"{LATEST_DATE.year}"
    )


def _block_name(token: Token) -> str:
    return (token.info.strip().split(maxsplit=1) or [""])[0]


def anchor_for(heading: str) -> str:
    """A section's anchor, as GitHub makes them: lowercase, words joined by hyphens.

    Letters of any script are kept (``## Вода`` → ``вода``); punctuation is dropped.
    """
    words = _ANCHOR_DROP.sub("", heading.lower()).split()
    return "-".join(words).strip("-") or "section"


def _matching_close(tokens: Sequence[Token], index: int) -> int:
    """Index of the token closing ``tokens[index]`` (itself for self-contained tokens)."""
    if tokens[index].nesting != 1:
        return index
    depth = 0
    for pos in range(index, len(tokens)):
        depth += tokens[pos].nesting
        if depth == 0:
            return pos
    return len(tokens) - 1
