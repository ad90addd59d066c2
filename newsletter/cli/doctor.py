"""``newsletter doctor [--dns]``: whether this deployment is ready to send, and what to fix."""

from __future__ import annotations

import os
import sys

import click

from newsletter.cli import AppContext, main, pass_app
from newsletter.doctor import (
    DnsResolver,
    Finding,
    Status,
    config_failed,
    diagnose,
    verdict,
)
from newsletter.errors import ConfigError

_COLOURS = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "red"}


def parse_nameserver(value: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[IPv6]:PORT`` or a bare IPv6 address, as (host, port)."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    else:  # a name, an IPv4 address, or a bare IPv6 address
        host, port = value, "53"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(value)
    return host, int(port)


def _nameserver(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[str, int] | None:
    if value is None:
        return None
    try:
        return parse_nameserver(value)
    except ValueError:
        raise click.BadParameter(f"expected HOST or HOST:PORT, got {value!r}") from None


def show(finding: Finding) -> None:
    label = click.style(f"{finding.status.value:<4}", fg=_COLOURS[finding.status], bold=True)
    click.echo(f"{label}  {finding.check:<11} {finding.message}")
    if finding.advice:
        click.echo(f"{'':17}-> {finding.advice}")
    for record in finding.records:
        click.echo(f"{'':17}   {record}")


@main.command("doctor")
@click.option("--dns", "check_dns", is_flag=True, help="Also check the published DNS records.")
@click.option(
    "--nameserver",
    metavar="HOST[:PORT]",
    callback=_nameserver,
    help="Ask this DNS server with --dns (default: the system's resolver).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 120),
    default=10.0,
    show_default=True,
    help="Seconds for each network check.",
)
@pass_app
def doctor(
    app: AppContext, check_dns: bool, nameserver: tuple[str, int] | None, timeout: float
) -> None:
    """Check that this deployment is ready to send; exit 1 when something blocks sending.

    Config, database, SMTP relay (reachable, TLS, login), DKIM and the DNS records to publish
    (SPF, DMARC), the public site (https, /healthz), the signing key, the editor's address and
    bounce handling. Each finding says what to do.
    """
    try:
        settings = app.settings
    except ConfigError as exc:
        findings = [config_failed(exc)]
    else:
        dns = DnsResolver(nameserver, timeout=timeout) if check_dns else None
        # the one place the environment is read: to tell a key set there from the local file
        findings = diagnose(settings, environ=os.environ, dns=dns, timeout=timeout)
    for finding in findings:
        show(finding)
    status = verdict(findings)
    fails = sum(f.status is Status.FAIL for f in findings)
    warns = sum(f.status is Status.WARN for f in findings)
    if status:
        click.secho(f"not ready: {fails} problem(s) block sending, {warns} warning(s)", fg="red")
    else:
        click.secho(f"ready to send ({warns} warning(s))", fg="green")
    sys.exit(status)
