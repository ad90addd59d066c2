"""The ``newsletter`` command: one click group, commands grouped by topic in sibling modules.

Settings are loaded once per invocation (lazily, so ``--help`` works without a config file) and
handed to commands through :class:`AppContext`. A :class:`NewsletterError` prints as one line
and exits 1; it never shows a traceback.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from newsletter.config import Settings, load_settings
from newsletter.errors import NewsletterError


@dataclass
class AppContext:
    config_path: Path | None
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings


pass_app = click.make_pass_decorator(AppContext)


class NewsletterGroup(click.Group):
    """Turns package errors into a clear one-line message and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)


@click.group(cls=NewsletterGroup)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="NEWSLETTER_CONFIG",
    help="Path to newsletter.toml (default: ./newsletter.toml).",
)
@click.version_option(package_name="newsletter")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None) -> None:
    """Write, check, preview and deliver a weekly newsletter."""
    ctx.obj = AppContext(config_path)


def _register() -> None:
    # Each topic module adds its commands to ``main`` on import.
    import importlib

    for name in (
        "compose",
        "subscribers",
        "delivery",
        "web",
        "preview",
        "schedule",
        "report",
        "admin",
        "bounces",
        "doctor",
        "new",
    ):
        try:
            importlib.import_module(f"newsletter.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"newsletter.cli.{name}":
                raise


_register()
