"""``newsletter doctor``: is this deployment ready to send? Each finding says what to do.

The record builders and comparisons (:func:`dkim_matches`, :func:`spf_record`,
:func:`dmarc_record`, :func:`verdict`) are pure; the probes at the edges touch the database, the
SMTP relay (aiosmtplib), the public site (``/healthz``) and, with ``--dns``, DNS through a
:class:`TxtLookup` the caller hands in (:class:`DnsResolver` is the real one, dnspython).
Nothing here prints, and no finding carries a password or a key.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import json
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import aiosmtplib
from sqlalchemy import inspect, make_url, text

from newsletter.config import Settings
from newsletter.dkim import DnsRecord, Signer, ascii_domain
from newsletter.errors import ConfigError, NewsletterError
from newsletter.store.database import alembic_config, display_url, make_engine
from newsletter.transport import certificate_error, close_session, endpoint_from_settings

#: the path ``newsletter serve`` answers health checks on (newsletter.web.app.healthz_route)
HEALTHZ = "/healthz"
# the embedded default relay: `newsletter sink`, a Maildir on this machine
DEFAULT_SMTP_URL = Settings.__dataclass_fields__["smtp_url"].default


class Status(enum.Enum):
    OK = "ok"
    WARN = "warn"
    # something that stops mail from going out, or from arriving as it should
    FAIL = "fail"


@dataclass(frozen=True)
class Finding:
    """One thing the doctor looked at: what it found and, unless all is well, what to do."""

    check: str
    status: Status
    message: str
    advice: str | None = None
    # DNS records to publish, as zone-file lines
    records: tuple[str, ...] = field(default=())


class DnsLookupError(NewsletterError):
    """DNS could not be asked (timeout, no server answered): not the same as "no record"."""


class TxtLookup(Protocol):
    """What the doctor needs from DNS: the TXT strings at a name, joined per record."""

    def txt(self, name: str) -> list[str]:
        """The TXT records at ``name`` ([] when there are none); DnsLookupError if DNS fails."""
        ...


class DnsResolver:
    """TXT lookups through dnspython: the system's resolver, or ``nameserver`` (host, port)."""

    def __init__(self, nameserver: tuple[str, int] | None = None, *, timeout: float = 5.0) -> None:
        import dns.resolver

        self._resolver = dns.resolver.Resolver(configure=nameserver is None)
        if nameserver is not None:
            self._resolver.nameservers = [nameserver[0]]
            self._resolver.port = nameserver[1]
        self._resolver.lifetime = timeout

    def txt(self, name: str) -> list[str]:
        import dns.exception
        import dns.resolver

        try:
            answer = self._resolver.resolve(name, "TXT", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            raise DnsLookupError(f"cannot look up {name}: {exc}") from None
        # a record longer than 255 bytes arrives as several strings, joined (RFC 7208 3.3)
        return [
            b"".join(rdata.strings).decode("utf-8", errors="replace")
            for rdata in answer
            if hasattr(rdata, "strings")
        ]


# --- pure: records, comparisons, the verdict ----------------------------------------------


def tags(record: str) -> dict[str, str]:
    """``v=DKIM1; k=rsa; p=...`` as {tag: value}; whitespace inside values is dropped."""
    found: dict[str, str] = {}
    for part in record.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            found[name.strip().lower()] = "".join(value.split())
    return found


def dkim_matches(published: str, expected: str) -> bool:
    """Whether a published DKIM record carries the same key as ``expected`` (RFC 6376 3.6.1:
    ``k`` defaults to rsa; ``v``, when present, must be DKIM1)."""
    have, want = tags(published), tags(expected)
    if have.get("v", "DKIM1") != "DKIM1":
        return False
    return (
        have.get("k", "rsa").lower() == want.get("k", "rsa").lower()
        and bool(have.get("p"))
        and have.get("p") == want.get("p")
    )


def domain_of(address: str) -> str:
    """The ASCII domain of an address (``The Weekly <news@example.org>`` -> ``example.org``)."""
    return ascii_domain(parseaddr(address)[1].rpartition("@")[2])


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def envelope_domain(settings: Settings) -> str:
    """The domain SPF is checked for: the bounce (Return-Path) domain, else the From domain."""
    return ascii_domain(settings.bounce_domain or domain_of(settings.publication.sender))


def spf_record(settings: Settings) -> DnsRecord:
    """A starting SPF record for the envelope domain, from what the relay is.

    Only the operator knows every address that sends as the domain: a provider's relay has an
    ``include:`` of its own, a local MTA sends from this machine's public address.
    """
    host = urlsplit(settings.smtp_url).hostname or ""
    if is_loopback(host):
        mechanism = "mx"
    else:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            mechanism = f"a:{host}"
        else:
            mechanism = f"ip{address.version}:{address}"
    return DnsRecord(envelope_domain(settings), f"v=spf1 {mechanism} ~all")


def dmarc_record(settings: Settings) -> DnsRecord:
    """A DMARC record that only reports (``p=none``), the safe first step."""
    domain = domain_of(settings.publication.sender)
    return DnsRecord(
        f"_dmarc.{domain}", f"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}; adkim=r; aspf=r"
    )


def verdict(findings: Sequence[Finding]) -> int:
    """The exit status: 1 when anything blocks sending, else 0 (warnings do not)."""
    return 1 if any(f.status is Status.FAIL for f in findings) else 0


# --- the checks -------------------------------------------------------------------------


def config_failed(exc: ConfigError) -> Finding:
    """What a configuration that does not load looks like as a finding."""
    return Finding(
        "config",
        Status.FAIL,
        str(exc),
        "fix the key it names in newsletter.toml or the NEWSLETTER_* environment; "
        "nothing else can be checked until the configuration loads",
    )


def diagnose(
    settings: Settings,
    *,
    environ: Mapping[str, str],
    dns: TxtLookup | None = None,
    https_context: ssl.SSLContext | None = None,
    timeout: float = 10.0,
) -> list[Finding]:
    """Every check, in the order an operator fixes things. ``environ`` is the process
    environment (to tell a key set there from the generated local one); ``dns`` is given with
    ``--dns``; ``https_context`` verifies the public site (default: the system's CAs)."""
    where = settings.source or Path("newsletter.toml")
    findings = [Finding("config", Status.OK, f"{where} loads")]
    findings.append(check_database(settings, timeout=timeout))
    findings += asyncio.run(check_smtp(settings, timeout=timeout))
    findings += check_dkim(settings, dns)
    findings += check_sender_records(settings, dns)
    findings += check_site(settings, context=https_context, timeout=timeout)
    findings.append(check_secret_key(environ))
    findings.append(check_editor(settings))
    findings.append(check_bounces(settings, timeout=min(timeout, 3.0)))
    return findings


def check_database(settings: Settings, *, timeout: float = 10.0) -> Finding:
    """Reachable, and migrated to the newest revision (what ``newsletter init`` does)."""
    shown = display_url(settings.database_url)
    url = make_url(settings.database_url)
    # connecting would create an empty SQLite file: say so instead
    if (
        url.get_backend_name() == "sqlite"
        and url.database not in (None, "", ":memory:")
        and not Path(url.database or "").exists()
    ):
        return Finding("database", Status.FAIL, f"no database at {shown}", "run `newsletter init`")
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    # a server that drops packets would otherwise hold the doctor for minutes
    options = (
        {"connect_args": {"connect_timeout": max(1, round(timeout))}}
        if url.get_backend_name() == "postgresql"
        else {}
    )
    engine = make_engine(settings.database_url, **options)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            current = None
            if inspect(conn).has_table("alembic_version"):
                current = MigrationContext.configure(conn).get_current_revision()
    except Exception as exc:  # the driver's own errors: refused, unknown host, bad password
        return Finding(
            "database",
            Status.FAIL,
            f"cannot reach the database at {shown}: {type(exc).__name__}: "
            f"{str(getattr(exc, 'orig', None) or exc).splitlines()[0]}",
            "check database_url (NEWSLETTER_DATABASE_URL), that the server runs and that this "
            "user may connect",
        )
    finally:
        engine.dispose()
    if current != head:
        state = "not set up" if current is None else f"at revision {current}"
        return Finding(
            "database",
            Status.FAIL,
            f"the database at {shown} is {state}; this release needs revision {head}",
            "run `newsletter init` (it migrates, and is safe to run again)",
        )
    return Finding("database", Status.OK, f"{shown} answers, schema at revision {head}")


def _tls_failed(where: str, exc: BaseException) -> Finding:
    cert = certificate_error(exc)
    if cert is None:
        return Finding(
            "smtp.tls", Status.FAIL, f"TLS with {where} failed: {exc}", "check the relay's TLS"
        )
    return Finding(
        "smtp.tls",
        Status.FAIL,
        f"the certificate of {where} does not verify ({cert.verify_message or cert.reason})",
        "use the host name the certificate is issued for in smtp_url, or, for a relay with a "
        "private CA, set smtp.ca_file to that CA's certificate (PEM)",
    )


async def check_smtp(settings: Settings, *, timeout: float) -> list[Finding]:
    """Reachable, TLS verified, login accepted: the three things the transport needs."""
    try:
        endpoint = endpoint_from_settings(settings)
    except ConfigError as exc:
        return [Finding("smtp", Status.FAIL, str(exc), "fix smtp_url or smtp.ca_file")]
    where = endpoint.where
    smtp = aiosmtplib.SMTP(
        hostname=endpoint.hostname,
        port=endpoint.port,
        use_tls=endpoint.use_tls,
        # STARTTLS by hand below, so each step is its own finding
        start_tls=False,
        tls_context=endpoint.tls_context,
        timeout=timeout,
    )
    findings: list[Finding] = []
    try:
        try:
            response = await smtp.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            if endpoint.use_tls and certificate_error(exc) is not None:
                return [
                    Finding("smtp", Status.OK, f"the relay at {where} answers (implicit TLS)"),
                    _tls_failed(where, exc),
                ]
            advice = "check smtp_url, that the relay runs, and that this host may connect to it"
            if settings.smtp_url == DEFAULT_SMTP_URL:
                advice = (
                    "smtp_url is the embedded default, the local sink: point it at your relay "
                    "(or start `newsletter sink` to try things on this machine)"
                )
            return [
                Finding("smtp", Status.FAIL, f"cannot reach the relay at {where}: {exc}", advice)
            ]
        findings.append(
            Finding("smtp", Status.OK, f"the relay at {where} answers: {response.code}")
        )
        findings.append(await _tls(smtp, endpoint.use_tls, where, endpoint.username))
        if findings[-1].status is Status.FAIL:
            return findings
        findings.append(await _login(smtp, where, endpoint.username, endpoint.password))
    except (aiosmtplib.SMTPException, OSError) as exc:
        findings.append(
            Finding("smtp", Status.FAIL, f"the session with {where} broke off: {exc}", None)
        )
    finally:
        await close_session(smtp)
    return findings


async def _tls(smtp: aiosmtplib.SMTP, implicit: bool, where: str, username: str | None) -> Finding:
    if not implicit:
        await smtp.ehlo()
        if smtp.supports_extension("starttls"):
            try:
                await smtp.starttls()
            except (aiosmtplib.SMTPException, OSError) as exc:
                return _tls_failed(where, exc)
            await smtp.ehlo()
        else:
            host = where.rpartition(":")[0]
            if username:
                return Finding(
                    "smtp.tls",
                    Status.FAIL,
                    f"{where} offers no STARTTLS, and the password for {username} is never sent "
                    "unencrypted, so sending stops there",
                    "use smtps:// or the relay's submission port (usually 587)",
                )
            if is_loopback(host):
                return Finding(
                    "smtp.tls", Status.OK, f"no TLS: the relay is on this machine ({where})"
                )
            return Finding(
                "smtp.tls",
                Status.WARN,
                f"{where} offers no STARTTLS: every issue travels to it unencrypted",
                "enable TLS on the relay, or use smtps:// or its submission port (usually 587)",
            )
    ssl_object = smtp.get_transport_info("ssl_object")
    version = ssl_object.version() if isinstance(ssl_object, ssl.SSLObject) else "TLS"
    how = "implicit TLS" if implicit else "STARTTLS"
    return Finding("smtp.tls", Status.OK, f"{how} ({version}), the certificate verifies")


async def _login(
    smtp: aiosmtplib.SMTP, where: str, username: str | None, password: str | None
) -> Finding:
    if not username:
        return Finding(
            "smtp.login", Status.OK, "no login configured (the relay takes mail by address)"
        )
    if not password:
        return Finding(
            "smtp.login",
            Status.FAIL,
            f"a login as {username} is configured but NEWSLETTER_SMTP_PASSWORD is not set",
            "put NEWSLETTER_SMTP_PASSWORD in the environment file (/etc/newsletter/env)",
        )
    if not smtp.supports_extension("auth"):
        return Finding(
            "smtp.login",
            Status.FAIL,
            f"{where} does not offer AUTH for {username}",
            "remove the user from smtp_url and smtp.username if the relay needs no login",
        )
    try:
        await smtp.login(username, password)
    except aiosmtplib.SMTPAuthenticationError as exc:
        # the server's reply only: the password is never part of it
        return Finding(
            "smtp.login",
            Status.FAIL,
            f"{where} refused the login for {username}: {exc.code} {exc.message}",
            "check NEWSLETTER_SMTP_PASSWORD and the user in smtp_url or smtp.username",
        )
    return Finding("smtp.login", Status.OK, f"login accepted for {username}")


def check_dkim(settings: Settings, dns: TxtLookup | None) -> list[Finding]:
    """The keys load, the records to publish, and (with ``dns``) whether they are published."""
    config = settings.dkim
    if not config.enabled:
        domain = domain_of(settings.publication.sender)
        return [
            Finding(
                "dkim",
                Status.WARN,
                "mail is not DKIM-signed: Gmail and Yahoo require a signature from bulk senders "
                "and one-click unsubscribe counts only under one",
                "make a key (openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
                "-out /etc/newsletter/dkim.pem) and set [dkim] key_path, selector and "
                f'domain = "{domain}"; the doctor then prints the record to publish',
            )
        ]
    try:
        signer = Signer.from_config(config)
    except (ConfigError, ValueError) as exc:
        return [
            Finding(
                "dkim",
                Status.FAIL,
                f"the DKIM key cannot be used: {exc}",
                "check that the file exists, is readable by the service user, and holds an "
                "unencrypted PEM key",
            )
        ]
    assert signer is not None
    findings: list[Finding] = []
    for record, key in zip(signer.dns_records(), signer.keys, strict=True):
        kind = key.kind
        if dns is None:
            findings.append(
                Finding(
                    "dkim",
                    Status.OK,
                    f"{kind} key for selector {key.selector} loads; publish it at {record.name} "
                    "(run with --dns to check)",
                    records=(record.zone_line(),),
                )
            )
            continue
        findings.append(_published_dkim(record, kind, dns))
    return findings


def _published_dkim(record: DnsRecord, kind: str, dns: TxtLookup) -> Finding:
    try:
        published = dns.txt(record.name)
    except DnsLookupError as exc:
        return Finding(
            "dkim", Status.WARN, str(exc), "try again, or check the resolver", (record.zone_line(),)
        )
    keys = [value for value in published if "p" in tags(value)]
    if any(dkim_matches(value, record.value) for value in keys):
        return Finding("dkim", Status.OK, f"{kind} key published at {record.name} and matches")
    if not keys:
        message = f"no DKIM record at {record.name}: receivers cannot verify the {kind} signature"
    else:
        message = (
            f"the record at {record.name} holds another {kind} key than the one signing "
            "(every signature fails)"
        )
    return Finding(
        "dkim",
        Status.FAIL,
        message,
        "publish this record (replacing any other at that name), then wait for the TTL",
        (record.zone_line(),),
    )


def check_sender_records(settings: Settings, dns: TxtLookup | None) -> list[Finding]:
    """SPF for the envelope domain and DMARC for the From domain: what to publish, and with
    ``dns`` whether something is there (the doctor does not evaluate SPF's mechanisms)."""
    spf, dmarc = spf_record(settings), dmarc_record(settings)
    spf_advice = (
        "a starting point: list every address that sends as this domain (a provider documents "
        "an include: for its relays; a local MTA sends from this machine's public address)"
    )
    if dns is None:
        return [
            Finding(
                "spf",
                Status.OK,
                f"publish an SPF record for {spf.name} (run with --dns to check)",
                spf_advice,
                (spf.zone_line(),),
            ),
            Finding(
                "dmarc",
                Status.OK,
                f"publish a DMARC record at {dmarc.name} (run with --dns to check)",
                "start with p=none, read the reports, then move to p=quarantine",
                (dmarc.zone_line(),),
            ),
        ]
    return [
        _published_policy("spf", spf, "v=spf1", spf_advice, dns),
        _published_policy(
            "dmarc", dmarc, "v=DMARC1", "start with p=none, then move to p=quarantine", dns
        ),
    ]


def _published_policy(
    check: str, record: DnsRecord, prefix: str, advice: str, dns: TxtLookup
) -> Finding:
    try:
        found = [
            value
            for value in dns.txt(record.name)
            if value.strip().lower().startswith(prefix.lower())
        ]
    except DnsLookupError as exc:
        return Finding(check, Status.WARN, str(exc), "try again, or check the resolver")
    if len(found) == 1:
        return Finding(check, Status.OK, f"{record.name} publishes {found[0]}")
    if found:
        return Finding(
            check,
            Status.WARN,
            f"{record.name} has {len(found)} {prefix} records: receivers ignore them all",
            "keep exactly one",
        )
    return Finding(
        check,
        Status.WARN,
        f"no {prefix} record at {record.name}: receivers may junk or refuse the mail",
        advice,
        (record.zone_line(),),
    )


def check_site(
    settings: Settings, *, context: ssl.SSLContext | None, timeout: float
) -> list[Finding]:
    """``base_url`` is https (one-click unsubscribe needs it, RFC 8058) and answers /healthz."""
    base = settings.publication.base_url.rstrip("/")
    findings: list[Finding] = []
    if urlsplit(base).scheme != "https":
        findings.append(
            Finding(
                "base_url",
                Status.FAIL,
                f"{base} is not https: one-click unsubscribe (RFC 8058) needs an https link, "
                "and links in every email would travel in clear",
                "serve the site behind TLS (deploy/nginx-newsletter.conf) and set "
                "publication.base_url to its https:// address",
            )
        )
    else:
        findings.append(Finding("base_url", Status.OK, f"{base} is https"))
    if urlsplit(base).scheme not in ("http", "https"):
        return findings
    url = base + HEALTHZ
    # S310: the scheme is http or https, checked just above
    request = urllib.request.Request(url, headers={"User-Agent": "newsletter-doctor"})  # noqa: S310
    try:
        with urllib.request.urlopen(  # noqa: S310
            request, timeout=timeout, context=context or ssl.create_default_context()
        ) as response:
            status, body = response.status, response.read(4096)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, b""
        exc.close()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        findings.append(
            Finding(
                "healthz",
                Status.FAIL,
                f"{url} does not answer ({reason}): the links in the email would not work",
                "start `newsletter serve` (deploy/newsletter-serve.service) behind the proxy, "
                "and check DNS and the certificate for the site",
            )
        )
        return findings
    try:
        healthy = status == 200 and json.loads(body) == {"status": "ok"}
    except ValueError:
        healthy = False
    if healthy:
        findings.append(Finding("healthz", Status.OK, f"{url} answers ok"))
    else:
        findings.append(
            Finding(
                "healthz",
                Status.FAIL,
                f"{url} answers {status}, not ok"
                + (": the app cannot use its database" if status == 503 else ""),
                "check `journalctl -u newsletter-serve` and the proxy's upstream",
            )
        )
    return findings


def check_secret_key(environ: Mapping[str, str]) -> Finding:
    """The signing key comes from the environment, not the generated local file."""
    if environ.get("NEWSLETTER_SECRET_KEY"):
        return Finding("secret_key", Status.OK, "NEWSLETTER_SECRET_KEY is set in the environment")
    return Finding(
        "secret_key",
        Status.WARN,
        "NEWSLETTER_SECRET_KEY is not set: links are signed with the generated var/secret.key, "
        "which other hosts and a fresh checkout do not share (their links would stop working)",
        "put NEWSLETTER_SECRET_KEY (32+ random characters: python3 -c 'import secrets; "
        "print(secrets.token_urlsafe(32))') in /etc/newsletter/env",
    )


def check_editor(settings: Settings) -> Finding:
    editor = settings.publication.editor_email
    if editor:
        return Finding("editor", Status.OK, f"test sends and reports go to {editor}")
    return Finding(
        "editor",
        Status.WARN,
        "publication.editor_email is not set: `send --test`, the preview's test send and the "
        "scheduler's reports have nowhere to go",
        "set publication.editor_email",
    )


def check_bounces(settings: Settings, *, timeout: float) -> Finding:
    """Bounce handling: a VERP domain, and the receiver (or a provider's webhook) behind it."""
    domain = settings.bounce_domain
    if domain is None:
        return Finding(
            "bounces",
            Status.WARN,
            "bounce handling is off: bounces go to the From address and dead addresses are "
            "mailed every week (receivers count that against the sender)",
            "set [bounces] domain, point its MX at this host, and run `newsletter inbound` "
            "(deploy/newsletter-inbound.service); see docs/bounces.md",
        )
    config = settings.bounces
    if config.provider is not None:
        return Finding(
            "bounces",
            Status.OK,
            f"bounces to {config.prefix}+…@{domain}, {config.provider} reports by webhook",
        )
    host = "127.0.0.1" if config.listen_host in ("0.0.0.0", "::", "") else config.listen_host  # noqa: S104
    try:
        with socket.create_connection((host, config.listen_port), timeout=timeout):
            pass
    except OSError as exc:
        return Finding(
            "bounces",
            Status.WARN,
            f"bounces go to {config.prefix}+…@{domain}, but nothing answers on "
            f"{host}:{config.listen_port} ({exc.strerror or exc})",
            "start `newsletter inbound` (deploy/newsletter-inbound.service)",
        )
    return Finding(
        "bounces",
        Status.OK,
        f"bounces go to {config.prefix}+…@{domain}; the receiver answers on "
        f"{host}:{config.listen_port}",
    )
