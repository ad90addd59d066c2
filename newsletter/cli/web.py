"""``newsletter serve``: the public web app (subscribe, unsubscribe, archive) under uvicorn."""

from __future__ import annotations

import click
import uvicorn

from newsletter.cli import AppContext, main, pass_app
from newsletter.cli.subscribers import open_store
from newsletter.web import server
from newsletter.web.app import create_app


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@pass_app
def serve(app: AppContext, host: str, port: int) -> None:
    """Serve subscribe, confirm, unsubscribe and the archive (behind a TLS proxy in production)."""
    settings = app.settings
    with open_store(settings) as engine:
        click.echo(f"Serving {settings.publication.name} on http://{host}:{port}/ (Ctrl-C stops)")
        web = create_app(settings, engine=engine)
        uvicorn.Server(server.config(web, settings.serve, host=host, port=port)).run()
