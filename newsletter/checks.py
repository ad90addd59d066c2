"""``newsletter check``: every problem in an issue file at once, as ``path:line: message``.

Parsing problems come from :mod:`newsletter.issues`; this module adds what needs the outside
world or a full render: image files that must exist, and the size of the finished email
against Gmail's clipping limit. It never raises for bad input; a file that cannot be read is a
problem like any other.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from newsletter.config import Settings
from newsletter.diagnostics import Problem, Severity
from newsletter.errors import IssueError, NewsletterError
from newsletter.i18n import language_problems
from newsletter.images import ImageSet, plan_images, read_original
from newsletter.issues import parse_issue, read_issue_text
from newsletter.layout import displayed_images
from newsletter.model import JOIN_URL_PLACEHOLDER, UNSUBSCRIBE_URL_PLACEHOLDER, Issue
from newsletter.rendering import Renderer

__all__ = [
    "Inspection",
    "Problem",
    "Severity",
    "check_issue",
    "email_size",
    "image_width",
    "inspect_issue",
]

# Gmail hides everything after the first 102 KB of HTML behind "[Message clipped]" -- and the
# footer with the unsubscribe link is at the end.
GMAIL_CLIP_BYTES = 102 * 1024
SIZE_WARNING_BYTES = 90 * 1024
IMAGE_WARNING_BYTES = 400 * 1024
# A real unsubscribe link is longer than the placeholder; measure with one of typical length.
_SAMPLE_UNSUBSCRIBE_URL = "https://news.example.org/unsubscribe/" + "x" * 64


@dataclass(frozen=True)
class Inspection:
    """What ``check`` found in one file, and what it made on the way.

    ``issue`` is None when the file does not parse; ``images`` and ``html`` (the email as
    :meth:`Renderer.render_html` makes it, with ``images`` linked) are None when it was not
    rendered in full. ``build`` writes from them instead of rendering a second time.
    """

    problems: tuple[Problem, ...]
    issue: Issue | None = None
    images: ImageSet | None = None
    html: str | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]


def check_issue(
    path: Path, settings: Settings, *, renderer: Renderer | None = None
) -> list[Problem]:
    """All problems with the issue at ``path``, errors and warnings, ordered by line."""
    return list(inspect_issue(path, settings, renderer=renderer).problems)


def inspect_issue(
    path: Path, settings: Settings, *, renderer: Renderer | None = None
) -> Inspection:
    """:func:`check_issue`, keeping the parsed issue and the rendered HTML."""
    try:
        text = read_issue_text(path)
    except IssueError as exc:
        return Inspection((Problem(path, exc.line or 1, Severity.ERROR, exc.message),))
    result = parse_issue(text, path=path, settings=settings)
    problems = list(result.problems)
    # the fixed text's language is the publication's, but an editor checks issues: say it here
    problems += [
        Problem(path, 1, Severity.WARNING, message)
        for message in language_problems(settings.publication.lang)
    ]
    images = html = None
    if result.issue is not None:
        problems.extend(_check_images(result.issue, settings))
    if result.issue is not None and not any(p.is_error for p in problems):
        images = plan_images(result.issue, settings)
        found, html = _check_render(result.issue, settings, renderer, images)
        problems.extend(found)
    problems.sort(key=lambda p: (p.line, p.severity is not Severity.ERROR))
    return Inspection(tuple(problems), result.issue, images if html else None, html)


def email_size(html: str) -> int:
    """Bytes of the HTML part as a recipient gets it (placeholders filled with typical links)."""
    html = JOIN_URL_PLACEHOLDER.sub(_SAMPLE_UNSUBSCRIBE_URL, html)
    return len(html.replace(UNSUBSCRIBE_URL_PLACEHOLDER, _SAMPLE_UNSUBSCRIBE_URL).encode())


def image_width(path: Path) -> int | None:
    """The upright pixel width of an image file (any format Pillow reads); None if unreadable."""
    original = read_original(path)
    return original.width if original is not None else None


def _check_images(issue: Issue, settings: Settings) -> Iterator[Problem]:
    for image, slot in displayed_images(issue):
        if image.src.startswith(("http://", "https://")):
            continue
        line = image.line or 1
        file = settings.issues_dir / image.src
        try:
            size = file.stat().st_size if file.is_file() else None
        except OSError:  # a name too long for the file system, a permission problem...
            size = None
        if size is None:
            yield Problem(
                issue.path,
                line,
                Severity.ERROR,
                f"image {image.src!r} not found (looked for {file})",
            )
            continue
        original = read_original(file)
        if original is None:
            yield Problem(
                issue.path,
                line,
                Severity.WARNING,
                f"image {image.src!r} is not a picture Pillow can read (PNG, JPEG, GIF, WebP), "
                "so no sharp copy is made and mail programs may not show it",
            )
        # the email links a resized copy; only an original sent as it is weighs on readers
        if (original is None or original.animated) and size > IMAGE_WARNING_BYTES:
            size //= 1024
            yield Problem(
                issue.path,
                line,
                Severity.WARNING,
                f"image {image.src!r} is {size} KB and is sent as it is; phones on slow "
                f"connections will wait for it (aim for under {IMAGE_WARNING_BYTES // 1024} KB)",
            )
        if original is not None and original.width < slot.pixels:
            yield Problem(
                issue.path,
                line,
                Severity.WARNING,
                f"image {image.src!r} is {original.width} px wide but shown {slot.width} px "
                f"wide, so it looks soft on high-density screens; export it at "
                f"{slot.pixels} px or wider (the email gets a copy resized to fit)",
            )


def _check_render(
    issue: Issue, settings: Settings, renderer: Renderer | None, images: ImageSet
) -> tuple[list[Problem], str | None]:
    """Problems of the finished email (its size), and its HTML if it was finished."""
    renderer = renderer or Renderer(settings)
    try:
        # the same image links the email will have, without writing the copies
        context = renderer.context(issue, images)
        # MJML and the inliner only add to the template's output, and they cost nearly all of
        # the render (the inliner half a second per thousand sections): an email far past the
        # clip before them is not measured to the byte.
        floor = email_size(renderer.render_mjml(issue, context))
        html = None if floor >= 2 * GMAIL_CLIP_BYTES else renderer.render_html(issue, context)
    except NewsletterError as exc:
        return [Problem(issue.path, 1, Severity.ERROR, f"cannot render: {exc}")], None
    size = floor if html is None else email_size(html)
    if size >= GMAIL_CLIP_BYTES:
        at_least = "at least " if html is None else ""
        return [
            Problem(
                issue.path,
                1,
                Severity.ERROR,
                f"the email is {at_least}{size / 1024:.0f} KB; Gmail clips messages over "
                f"{GMAIL_CLIP_BYTES // 1024} KB and hides the unsubscribe link. Shorten it.",
            )
        ], html
    if size >= SIZE_WARNING_BYTES:
        return [
            Problem(
                issue.path,
                1,
                Severity.WARNING,
                f"the email is {size / 1024:.0f} KB, close to Gmail's "
                f"{GMAIL_CLIP_BYTES // 1024} KB clipping limit",
            )
        ], html
    return [], html
