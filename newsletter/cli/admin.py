"""``newsletter admin add-user|list-users|remove-user``: the editors who may use /admin."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import click

from newsletter.addresses import normalize_email
from newsletter.cli import AppContext, main, pass_app
from newsletter.errors import StoreError
from newsletter.passwords import MIN_PASSWORD_LENGTH, check_password, hash_password
from newsletter.store.accounts import add_editor, editors, find_editor, remove_editor
from newsletter.store.database import open_current

# read here, at the edge, like click reads its own options: a one-off input, not a setting
PASSWORD_ENV = "NEWSLETTER_ADMIN_PASSWORD"  # noqa: S105 (the variable's name)


@main.group("admin")
def admin_group() -> None:
    """Editors' accounts for the dashboard at /admin on `newsletter serve`."""


def _password() -> str:
    # the environment (for scripts) or a prompt; never an argument, which `ps` would show
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        check_password(from_env)
        return from_env
    while True:
        value = click.prompt(
            f"Password (at least {MIN_PASSWORD_LENGTH} characters)",
            hide_input=True,
            confirmation_prompt=True,
            err=True,
        )
        try:
            check_password(value)
        except Exception as exc:
            click.secho(f"  {exc}", fg="red", err=True)
            continue
        return str(value)


@admin_group.command("add-user")
@click.argument("email")
@click.option(
    "--list",
    "lists",
    multiple=True,
    metavar="LIST",
    help="Only these lists (repeat); default: every list, and person-wide actions.",
)
@click.option("--reset", is_flag=True, help="Change an existing account's password and lists.")
@pass_app
def add_user(app: AppContext, email: str, lists: tuple[str, ...], reset: bool) -> None:
    """Create an editor's account; the password comes from a prompt or NEWSLETTER_ADMIN_PASSWORD."""
    settings = app.settings
    address = normalize_email(email)
    for slug in lists:
        settings.mailing_list(slug)
    engine = open_current(settings.database_url)
    try:
        with engine.connect() as conn:
            if find_editor(conn, address) is not None and not reset:
                raise StoreError(f"{address} already has an account; use --reset to change it")
        digest = hash_password(_password())
        with engine.begin() as conn:
            add_editor(
                conn,
                address,
                digest,
                lists=list(lists) or None,
                now=datetime.now(UTC),
                replace=reset,
            )
    finally:
        engine.dispose()
    scope = ", ".join(lists) if lists else "every list"
    what = "updated (signed out everywhere)" if reset else "created"
    click.echo(f"{address}: account {what}; sees {scope}")


@admin_group.command("list-users")
@pass_app
def list_users(app: AppContext) -> None:
    """Every editor's account."""
    engine = open_current(app.settings.database_url)
    try:
        with engine.connect() as conn:
            found = editors(conn)
    finally:
        engine.dispose()
    if not found:
        click.echo("no accounts; create one with `newsletter admin add-user EMAIL`")
    for editor, created, last in found:
        scope = ", ".join(editor.lists) if editor.lists is not None else "every list"
        seen = last.astimezone().strftime("%Y-%m-%d %H:%M") if last else "never"
        click.echo(f"{editor.email}  ({scope}; created {created:%Y-%m-%d}, last login {seen})")


@admin_group.command("remove-user")
@click.argument("email")
@pass_app
def remove_user(app: AppContext, email: str) -> None:
    """Delete an editor's account and end their sessions."""
    engine = open_current(app.settings.database_url)
    try:
        with engine.begin() as conn:
            removed = remove_editor(conn, email)
    finally:
        engine.dispose()
    if not removed:
        raise StoreError(f"no account for {email.strip().lower()}")
    click.echo(f"{email.strip().lower()}: account removed")
