"""The plain-text part: wrapping rules and the filters the text template uses.

Text comes from the same model as the HTML, through its own template, never by scraping the
HTML. Lines wrap at 78 columns and a URL is never broken: a long one gets a line of its own.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable

WIDTH = 78


def wrap(text: str, width: int = WIDTH, indent: str = "", subsequent: str | None = None) -> str:
    """Wrap ``text`` to ``width``; hard line breaks in it are kept, words and URLs never split.

    ``indent`` starts the first line, ``subsequent`` (default: as many spaces) the others.
    """
    rest = " " * len(indent) if subsequent is None else subsequent
    wrapper = textwrap.TextWrapper(
        width=width,
        initial_indent=indent,
        subsequent_indent=rest,
        break_long_words=False,
        # a hyphen inside a URL is not a place to break it
        break_on_hyphens=False,
    )
    lines: list[str] = []
    for number, piece in enumerate(text.split("\n")):
        if number:
            wrapper.initial_indent = rest
        lines.extend(wrapper.wrap(piece) or [wrapper.initial_indent.rstrip()])
    return "\n".join(lines)


def underline(text: str, char: str = "=") -> str:
    """``text`` wrapped, with a rule of ``char`` under it as long as its longest line."""
    wrapped = wrap(text)
    longest = max(len(line) for line in wrapped.split("\n"))
    return f"{wrapped}\n{char * min(longest, WIDTH)}"


def join_names(names: Iterable[str]) -> str:
    """``A``, ``A and B``, ``A, B and C``."""
    items = list(names)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def tidy(text: str) -> str:
    """Strip trailing spaces and collapse runs of blank lines left by template logic."""
    lines = [line.rstrip() for line in text.strip("\n").split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out) + "\n"
