"""``newsletter new``: scaffold a publication folder to start from."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli import main
from newsletter.scaffold import DEFAULT_NAME, create_publication


@main.command("new")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option(
    "--name",
    default=DEFAULT_NAME,
    show_default=True,
    help="The publication's name, as readers see it.",
)
def new_command(directory: Path, name: str) -> None:
    """Create a publication in DIRECTORY (new or empty): settings, a sample issue, templates/."""
    written = create_publication(directory, name=name)
    click.echo(f"Created {name.strip()} in {directory} ({len(written)} files):")
    for path in written:
        click.echo(f"  {path.relative_to(directory)}")
    click.echo(f"Next: cd {directory} && newsletter demo")
