"""``newsletter preview``: the editors' live preview on a local port."""

from __future__ import annotations

import click
import uvicorn

from newsletter.cli import AppContext, main, pass_app
from newsletter.config import Settings, load_settings
from newsletter.web.preview import DEFAULT_PORT, allowed_hosts_for, create_preview_app


@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on; the preview is for the editor's own machine.",
)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535))
@pass_app
def preview(app: AppContext, host: str, port: int) -> None:
    """Preview every issue in the browser, reloading as files are saved."""
    settings = app.settings

    def reload_settings() -> Settings:
        return load_settings(settings.source)

    # bound elsewhere on purpose, the editor reaches it by a name we cannot know
    allowed = allowed_hosts_for(host)
    loopback = allowed != ("*",)
    application = create_preview_app(
        settings, reload_settings=reload_settings, allowed_hosts=allowed
    )
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"Previewing {settings.issues_dir} at http://{shown}:{port}/ (Ctrl-C to stop)")
    if not loopback:
        click.secho(
            f"warning: listening on {host}: anyone who can reach it can read unsent issues "
            "and send test emails",
            fg="yellow",
            err=True,
        )
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_level="warning",
        ws="none",
        # open live-reload streams would otherwise hold Ctrl-C up until they time out
        timeout_graceful_shutdown=1,
    )
