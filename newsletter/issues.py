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
import re
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
from newsletter.markup import InlineReader, join, markdown_parser, one_line, plain
from newsletter.model import (
    PLACEHOLDERS,
    Block,
    BulletList,
    CallToAction,
    Figure,
    Image,
    Inline,
    Issue,
    IssueStatus,
    Paragraph,
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
BLOCK_NAMES = ("related", "figure", "spotlight", "cta")
HEADLINES_MIN, HEADLINES_MAX = 3, 6
PREHEADER_MAX = 140

# Control characters (and the noncharacters U+FFFE/U+FFFF) cannot appear in HTML or XML
# and make the inliner fail; they only ever arrive by accident.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
_FILE_NAME = re.compile(r"^(?P<date>\d{4}-\d{2}-\d{2})-(?P<slug>.+)$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ATTR = re.compile(r'(?P<key>[a-z_]+)="(?P<value>[^"]*)"')
# A quote's last paragraph starting with a dash is its attribution ("— Name, role").
_ATTRIBUTION = re.compile(r"^\s*(?:—|―|–|--)\s*")
# The separator between a related story's link and its teaser.
_TEASER_SEP = re.compile(r"^\s*(?:—|–|-|:)\s*")


def slug_for(path: Path) -> str:
    """``2026-11-20-river-week.md`` -> ``river-week``; a name without a date keeps its stem."""
    match = _FILE_NAME.match(path.stem)
    return match.group("slug") if match else path.stem


def read_issue_text(path: Path) -> str:
    """The file's text, or an :class:`IssueError` saying why it cannot be read."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IssueError("no such file", path=path) from None
    except IsADirectoryError:
        raise IssueError("is a directory, not an issue file", path=path) from None
    except OSError as exc:
        raise IssueError(f"cannot read: {exc.strerror}", path=path) from None
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
        self.spotlight: Spotlight | None = None
        self.cta: CallToAction | None = None
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
        for placeholder in PLACEHOLDERS:
            if placeholder in self.text:
                line = self.text[: self.text.index(placeholder)].count("\n") + 1
                self.warn(line, f"{placeholder} is filled in per recipient; do not type it")
        intro, sections = self.body(body)
        if not sections and not intro:
            self.error(self.body_offset + 1, "the issue has no body; add at least one ## section")
        if any(p.is_error for p in self.problems) or meta is None:
            return ParseResult(None, self.sorted_problems())
        preheader = meta.pop("preheader", None) or self.default_preheader(meta, intro)
        issue = Issue(
            path=self.path,
            slug=slug_for(self.path),
            intro=intro,
            sections=sections,
            spotlight=self.spotlight,
            cta=self.cta,
            preheader=preheader,
            **meta,
        )
        return ParseResult(issue, self.sorted_problems())

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
        return self.fields({str(k): v for k, v in data.items()})

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

        title = self.text_value(data["title"], "title") if "title" in data else None
        if title == "":
            self.error(self.key_line("title"), "title is empty")
        issue_date = self.date_value(data["date"]) if "date" in data else None
        authors = self.authors(data["authors"]) if "authors" in data else None
        subject = None
        if data.get("subject") is not None:
            subject = self.text_value(data["subject"], "subject")
        preheader = None
        if data.get("preheader") is not None:
            preheader = self.text_value(data["preheader"], "preheader")
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
            name = self.text_value(item, "authors", index)
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
        alt = self.text_value(value.get("alt"), "hero", "alt") if "alt" in value else None
        if not alt:
            self.error(line, "hero image has no alt text; describe the picture for screen readers")
        caption = None
        if value.get("caption") is not None:
            text = self.text_value(value["caption"], "hero", "caption")
            if text:
                caption = self.markup.text(text, self.key_line("hero", "caption"))
        credit = None
        if value.get("credit") is not None:
            credit = self.text_value(value["credit"], "hero", "credit")
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

    def default_preheader(self, meta: Mapping[str, Any], intro: Sequence[Block]) -> str:
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

    def body(self, source: str) -> tuple[tuple[Block, ...], tuple[Section, ...]]:
        try:
            tokens = markdown_parser().parse(source)
        except RecursionError:
            self.error(self.body_offset + 1, "the Markdown is nested too deeply to read")
            return (), ()
        self.body_lines = source.split("\n")
        intro: list[Block] = []
        sections: list[Section] = []
        heading: tuple[str, int] | None = None
        blocks: list[Block] = []

        def close_section() -> None:
            if heading is None:
                return
            if not blocks:
                self.error(
                    heading[1], f"section {heading[0]!r} is empty; write something or drop it"
                )
            else:
                sections.append(Section(heading=heading[0], blocks=tuple(blocks), line=heading[1]))

        index = 0
        while index < len(tokens):
            token = tokens[index]
            end = _matching_close(tokens, index)
            line = self.line_of(token)
            if token.type == "heading_open" and token.tag in ("h1", "h2"):
                if token.tag == "h1":
                    self.warn(line, "use '##' for sections; the title comes from the front matter")
                close_section()
                text = one_line(plain(tokens[index + 1].children or []))
                if not text:
                    self.error(line, "a section heading is empty")
                heading, blocks = (text, line), []
            else:
                target = blocks if heading is not None else intro
                target.extend(self.block(tokens[index : end + 1], top_level=True))
            index = end + 1
        close_section()
        return tuple(intro), tuple(sections)

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

    def container(self, tokens: Sequence[Token], line: int, *, top_level: bool) -> list[Block]:
        opening = tokens[0]
        name, rest = [*opening.info.strip().split(maxsplit=1), ""][:2]
        attrs = {m.group("key"): m.group("value") for m in _ATTR.finditer(rest)}
        # the free text is a heading: Markdown like any other, so entities and *emphasis* read
        free = self.markup.text(one_line(_ATTR.sub("", rest)), line).plain
        inner = tokens[1:-1]
        if name in BLOCK_NAMES:  # an unknown name is reported once, below, not twice
            self.check_closed(opening, line)
        if name == "related":
            return self.related(inner, line, heading=free)
        if name == "figure":
            return self.figure(inner, line, attrs)
        if name in ("spotlight", "cta"):
            if not top_level:
                self.error(line, f"'::: {name}' cannot sit inside another block")
                return []
            if name == "spotlight":
                self.spotlight_block(inner, line, free, attrs)
            else:
                self.cta_block(inner, line)
            return []
        self.unknown_block(name, line)
        return []

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
        return [RelatedStories(tuple(stories), heading=heading or "Related stories", line=line)]

    def related_story(self, token: Token, usage: str) -> RelatedStory | None:
        line = self.line_of(token)
        children = token.children or []
        if not children or children[0].type != "link_open":
            self.error(line, "a related story starts with its link; " + usage)
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
        return RelatedStory(url=url, title=title, teaser=teaser, line=line)

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
        credit = one_line(attrs.get("credit", "")) or None
        return [
            Figure(
                Image(image.src, image.alt, caption=caption, credit=credit, line=image.line),
                line=line,
            )
        ]

    def spotlight_block(
        self, tokens: Sequence[Token], line: int, heading: str, attrs: Mapping[str, str]
    ) -> None:
        if self.spotlight is not None:
            self.error(line, "only one spotlight per issue")
            return
        if not heading:
            self.error(line, "the spotlight needs a heading: '::: spotlight Meet the ferry keeper'")
            return
        blocks = self.blocks(tokens)
        if not blocks:
            self.error(line, "the spotlight is empty")
            return
        label = one_line(attrs.get("label", "")) or "Spotlight"
        self.spotlight = Spotlight(heading=heading, blocks=tuple(blocks), label=label, line=line)

    def cta_block(self, tokens: Sequence[Token], line: int) -> None:
        usage = "a call to action ends with its button as a link on its own line: '[Label](URL)'"
        if self.cta is not None:
            self.error(line, "only one call to action per issue")
            return
        inlines = [t for t in tokens if t.type == "inline"]
        if not inlines:
            self.error(line, "the call to action is empty; " + usage)
            return
        button = inlines[-1].children or []
        if not (
            len(button) >= 3
            and button[0].type == "link_open"
            and button[-1].type == "link_close"
            and not any(c.type == "link_open" for c in button[1:])
        ):
            self.error(self.line_of(inlines[-1]), usage)
            return
        url = self.markup.url(str(button[0].attrGet("href") or ""), self.line_of(inlines[-1]))
        label = one_line(plain(button[1:-1]))
        text = join([self.markup.inline(t.children or [], self.line_of(t)) for t in inlines[:-1]])
        if not label:
            self.error(self.line_of(inlines[-1]), "the button has no label; " + usage)
            return
        self.cta = CallToAction(text=text, button_label=label, url=url, line=line)


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
