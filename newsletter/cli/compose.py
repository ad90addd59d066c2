"""``newsletter build`` and ``newsletter check``: issue files to email files, and their lint."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from newsletter.checks import check_issue, inspect_issue
from newsletter.cli import AppContext, main, pass_app
from newsletter.config import Settings
from newsletter.emails import sample_copy
from newsletter.errors import IssueError
from newsletter.images import ImageSet, write_derivatives
from newsletter.model import Issue, RenderedIssue
from newsletter.rendering import Renderer

ISSUES_ARGUMENT = click.argument(
    "paths", metavar="ISSUE...", nargs=-1, type=click.Path(path_type=Path, dir_okay=False)
)


def issue_paths(settings: Settings, paths: Sequence[Path]) -> list[Path]:
    """The files named, or every ``*.md`` in the issues folder when none are."""
    if paths:
        return list(paths)
    found = [_shorter(path) for path in sorted(settings.issues_dir.glob("*.md"))]
    if not found:
        raise IssueError(
            "no issue files (*.md) here; name one or add some", path=settings.issues_dir
        )
    return found


def _shorter(path: Path) -> Path:
    """``issues/x.md`` rather than ``/home/editor/site/issues/x.md`` when under the cwd."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


@main.command()
@ISSUES_ARGUMENT
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder for the output (default: build/ next to newsletter.toml).",
)
@pass_app
def build(app: AppContext, paths: tuple[Path, ...], output: Path | None) -> None:
    """Render issues to <slug>.html, <slug>.txt and a sample <slug>.eml.

    Says what `check` finds first (on stderr), and builds nothing if that is an error. With no
    ISSUE, builds every issue in the issues folder.
    """
    settings = app.settings
    renderer = Renderer(settings)
    # Check everything first, saying what `check` says: a mistake in the third file should
    # not leave two built, and an issue Gmail would clip is not built without a word.
    files = issue_paths(settings, paths)
    inspections = [inspect_issue(path, settings, renderer=renderer) for path in files]
    errors = 0
    for inspection in inspections:
        errors += len(inspection.errors)
        for problem in inspection.problems:
            click.secho(str(problem), fg="red" if problem.is_error else "yellow", err=True)
    if errors:
        click.secho(f"{errors} error(s); nothing built", fg="red", err=True)
        raise SystemExit(1)
    out_dir = output or settings.root / "build"
    out_dir.mkdir(parents=True, exist_ok=True)
    for inspection in inspections:
        issue, images = inspection.issue, inspection.images
        # no errors: it parsed and rendered
        assert issue is not None
        assert images is not None
        for made in write_derivatives(images):
            click.echo(f"made {_shorter(made)}")
        written = write_issue(
            issue, renderer, settings, out_dir, images=images, html=inspection.html
        )
        for path in written:
            click.echo(f"wrote {path}")


def write_issue(
    issue: Issue,
    renderer: Renderer,
    settings: Settings,
    out_dir: Path,
    *,
    images: ImageSet | None = None,
    html: str | None = None,
) -> list[Path]:
    """Write the three files for ``issue``; returns their paths.

    ``images`` are its derivatives, made already (:func:`newsletter.images.derive_images`);
    ``html`` its email HTML when ``check`` rendered it already, with these ``images``.
    """
    if html is None:
        rendered = renderer.render(issue, images)
    else:
        context = renderer.context(issue, images)
        text = renderer.render_text(issue, context)
        rendered = RenderedIssue(
            issue=issue,
            subject=issue.subject,
            preheader=issue.preheader,
            html=html,
            text=text,
            archive_url=context["archive_url"],
        )
    message = sample_copy(rendered, settings)
    html_path = out_dir / f"{issue.slug}.html"
    text_path = out_dir / f"{issue.slug}.txt"
    eml_path = out_dir / f"{issue.slug}.eml"
    html_path.write_text(rendered.html, encoding="utf-8")
    text_path.write_text(rendered.text, encoding="utf-8")
    eml_path.write_bytes(message.as_bytes())
    return [html_path, text_path, eml_path]


@main.command()
@ISSUES_ARGUMENT
@pass_app
def check(app: AppContext, paths: tuple[Path, ...]) -> None:
    """Report every problem in the issues as path:line: message; exit 1 on errors.

    With no ISSUE, checks every issue in the issues folder.
    """
    settings = app.settings
    files = issue_paths(settings, paths)
    renderer = Renderer(settings)
    errors = warnings = 0
    for path in files:
        for problem in check_issue(path, settings, renderer=renderer):
            if problem.is_error:
                errors += 1
            else:
                warnings += 1
            colour = "red" if problem.is_error else "yellow"
            click.echo(click.style(str(problem), fg=colour))
    noun = "file" if len(files) == 1 else "files"
    summary = f"{len(files)} {noun} checked: {errors} error(s), {warnings} warning(s)"
    click.echo(summary, err=True)
    if errors:
        raise SystemExit(1)
