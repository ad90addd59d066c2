"""Settings: ``newsletter.toml`` plus ``NEWSLETTER_*`` environment variables, loaded once.

Every entry point calls :func:`load_settings` once and passes the frozen :class:`Settings` down;
no other module reads the environment. Secrets (the signing key, the SMTP password) come only
from the environment. A missing, unknown or mistyped key is a :class:`ConfigError` naming it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import ipaddress
import os
import re
import secrets
import tempfile
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from newsletter.errors import ConfigError

ENV_PREFIX = "NEWSLETTER_"
DEFAULT_CONFIG = "newsletter.toml"
# shorter webhook secrets and old signing keys are refused
MIN_SECRET_LENGTH = 16
# the signing key (NEWSLETTER_SECRET_KEY or var/secret.key): shorter ones are refused
MIN_SIGNING_KEY_BYTES = 32
# random bytes in a generated key file (written URL-safe base64: 43 characters)
GENERATED_KEY_BYTES = 32


@dataclass(frozen=True)
class Publication:
    """Who sends the newsletter and where its public pages live."""

    name: str
    sender: str
    postal_address: str
    base_url: str
    reply_to: str | None = None
    lang: str = "en"
    default_list: str = "weekly"
    timezone: str = "UTC"
    # where `send --test`, the preview's "send me a test" and scheduler reports go
    editor_email: str | None = None


@dataclass(frozen=True)
class Brand:
    """The look shared by the email and the web pages.

    The ``dark_*`` colours are used where the reader's mail program is in dark mode; each one
    left out is derived from the light colours (:mod:`newsletter.palette`).
    """

    logo_url: str | None = None
    logo_alt: str | None = None
    logo_width: int = 180
    primary_color: str = "#1f3a5f"
    accent_color: str = "#c0392b"
    background_color: str = "#f2f2ee"
    text_color: str = "#1d1d1b"
    font_family: str = "Georgia, 'Times New Roman', serif"
    heading_font_family: str = "Helvetica, Arial, sans-serif"
    # a logo drawn for dark backgrounds (light lettering); the light one shows without it
    dark_logo_url: str | None = None
    dark_background_color: str | None = None
    dark_surface_color: str | None = None
    dark_text_color: str | None = None
    dark_primary_color: str | None = None
    dark_accent_color: str | None = None


@dataclass(frozen=True)
class Labels:
    """The small headings above blocks; each one unset is the translation of the default."""

    this_week: str | None = None  # above the headlines ("This week")
    related: str | None = None  # a related block without a heading ("Related stories")
    spotlight: str | None = None  # a spotlight without label= ("Spotlight")
    more_from_us: str | None = None  # a newsletters block without a heading ("More from us")


@dataclass(frozen=True)
class MailingList:
    """One newsletter the publication runs; subscribers can be on several."""

    slug: str
    name: str
    description: str = ""
    # weekly slot, e.g. "fri 13:00 Europe/Kyiv"; None means no automatic sends
    schedule: str | None = None


@dataclass(frozen=True)
class Smtp:
    """How to reach the relay and how hard to push it."""

    connections: int = 4
    timeout: float = 30.0
    recycle_after: int = 1000
    # messages per second across all connections; 0 means no limit
    rate: float = 0.0
    # messages per rolling hour for relays with quotas; 0 means no cap
    hourly_cap: int = 0
    # VERP envelope sender template, e.g. "bounces+{local}={domain}@example.org"; None: From
    return_path: str | None = None
    username: str | None = None
    # PEM CA certificate(s) trusted in addition to the system's, for a relay with a private CA
    ca_file: Path | None = None
    # the relay counts as unreachable (exit 75) only when no connection opened for this long;
    # before that a failed connection is taken out with backoff while the others keep sending
    unreachable_after: float = 60.0


@dataclass(frozen=True)
class Delivery:
    """Retry and batching policy of the delivery engine."""

    max_attempts: int = 8
    retry_base_seconds: float = 60.0
    retry_max_seconds: float = 3600.0
    max_age_hours: float = 48.0
    batch_size: int = 200
    lease_seconds: float = 300.0
    # `newsletter send` stays for retries (and other senders' leases) due within this; 0: never
    max_wait_minutes: float = 15.0


@dataclass(frozen=True)
class Dkim:
    """Optional DKIM signing: key_path, selector and domain together, or none of them."""

    # PEM RSA private key (PKCS#1 or PKCS#8), outside the repository
    key_path: Path | None = None
    selector: str | None = None
    # d=: the From address's domain or a parent of it, so that DMARC aligns
    domain: str | None = None
    # a second signature, ed25519-sha256 (RFC 8463), beside the RSA one: its own key and selector
    ed25519_key_path: Path | None = None
    ed25519_selector: str | None = None
    # a relay that signs for other senders' domains: d= need not match the From address
    allow_unaligned: bool = False

    @property
    def enabled(self) -> bool:
        return self.key_path is not None


@dataclass(frozen=True)
class Bounces:
    """What comes back: the VERP bounce domain, the inbound receiver, and the policy."""

    # VERP on: the envelope sender is <prefix>+<token>@<domain> (smtp.return_path also does it)
    domain: str | None = None
    prefix: str = "bounces"
    # soft bounces (mailbox full, delays) suppress after soft_limit deliveries within soft_days
    soft_limit: int = 3
    soft_days: float = 30.0
    # `newsletter inbound`: where the SMTP receiver listens (behind Postfix, or as the MX)
    listen_host: str = "127.0.0.1"
    listen_port: int = 2525
    # bigger messages are refused at DATA (552); a DSN with the whole original is well under
    max_message_bytes: int = 10 * 1024 * 1024
    # local part of the address feedback loops (ARF complaints) are sent to, at the bounce domain
    feedback_local: str = "fbl"
    # raw reports are kept this long (bounded per report); events are kept for good
    raw_days: float = 90.0
    # a relay that reports by webhook echoes our delivery token back from its own header:
    # "postmark", "mailgun" or "sendgrid" adds that provider's metadata header to every issue
    provider: str | None = None
    # `bounces import --imap`: the user (the password is NEWSLETTER_IMAP_PASSWORD)
    imap_user: str | None = None
    # PEM CA certificate(s) trusted for the IMAP server in addition to the system's
    imap_ca_file: Path | None = None
    # SES: the SNS topic ARNs whose notifications are accepted (empty: the webhook is off)
    ses_topic_arns: str = ""
    # Postmark: the webhook's basic-auth user (the password is NEWSLETTER_WEBHOOK_POSTMARK_PASSWORD)
    postmark_user: str = "postmark"
    # Mailgun: how old a signed timestamp may be
    webhook_max_age_seconds: float = 300.0

    @property
    def enabled(self) -> bool:
        return self.domain is not None


#: Relays whose metadata header carries our delivery token back in their webhooks.
PROVIDERS = ("postmark", "mailgun", "sendgrid")


@dataclass(frozen=True)
class WebhookSecrets:
    """The webhooks' secrets, from NEWSLETTER_WEBHOOK_* only (never printed)."""

    postmark_password: str | None = field(default=None, repr=False)
    mailgun_signing_key: str | None = field(default=None, repr=False)
    # SendGrid's verification key is public, but it decides what is believed: environment too
    sendgrid_public_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Scheduler:
    """How forgiving the weekly scheduler is when it was down at the slot."""

    misfire_grace_minutes: float = 60.0


@dataclass(frozen=True)
class Analytics:
    """What the publication counts about its readers; everything is off by default."""

    # links in the HTML part go through {base_url}/r/<token>, counted per issue and link
    clicks: bool = False
    # the plain-text part's links too (they become long opaque URLs in the text)
    clicks_in_text: bool = False
    # clicks and opens tied to the recipient (unique counts, the subscriber page): consent!
    per_subscriber: bool = False
    # a 1x1 image at the end of the HTML part; always an estimate (image proxies, Apple MPP)
    opens: bool = False
    # raw click and open rows are deleted after this many days; the per-link totals stay
    retention_days: int = 90
    # a request this soon after the recipient's delivery is a mail-security scanner's
    # (known only with per_subscriber; otherwise bursts and user agents tell)
    scanner_window_seconds: float = 10.0


@dataclass(frozen=True)
class Admin:
    """The editors' dashboard at /admin on ``newsletter serve``."""

    # a session ends this long after login, and after idle_minutes without a request
    session_hours: float = 12.0
    idle_minutes: float = 60.0
    # failed logins allowed per account and per client address in 15 minutes
    login_attempts: int = 5


@dataclass(frozen=True)
class Serve:
    """How ``newsletter serve`` meets the network: proxies, other sites' forms, time limits."""

    # addresses (or CIDR networks) of the reverse proxies in front: X-Forwarded-For and
    # X-Forwarded-Proto are believed only from these; from anyone else they are ignored
    trusted_proxies: tuple[str, ...] = ()
    # other sites whose pages may post the subscribe form here ("https://example.org"),
    # beside base_url's own origin
    form_origins: tuple[str, ...] = ()
    # seconds a client has to send a request's headers, and then its body, before the
    # connection is closed (slow clients tie up a connection each)
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    # connections at once; beyond it requests are answered 503
    max_connections: int = 256


@dataclass(frozen=True)
class Subscribe:
    """The subscribe form's limits on confirmation emails (docs/subscribers.md)."""

    # per mailbox (Gmail's dotted and +tagged variants are one) in a rolling day; 0: no cap
    confirmations_per_day: int = 3


@dataclass(frozen=True)
class Settings:
    """Everything the package needs to know, loaded once per process."""

    publication: Publication
    brand: Brand = field(default_factory=Brand)
    labels: Labels = field(default_factory=Labels)
    lists: Mapping[str, MailingList] = field(default_factory=dict)
    smtp: Smtp = field(default_factory=Smtp)
    delivery: Delivery = field(default_factory=Delivery)
    dkim: Dkim = field(default_factory=Dkim)
    scheduler: Scheduler = field(default_factory=Scheduler)
    bounces: Bounces = field(default_factory=Bounces)
    analytics: Analytics = field(default_factory=Analytics)
    admin: Admin = field(default_factory=Admin)
    serve: Serve = field(default_factory=Serve)
    subscribe: Subscribe = field(default_factory=Subscribe)
    # may hold a database password: kept out of repr like the secrets below
    database_url: str = field(default="sqlite:///newsletter.db", repr=False)
    smtp_url: str = "smtp://127.0.0.1:8025"
    issues_dir: Path = Path("issues")
    templates_dir: Path = Path("templates")
    # where `build` and `send` put the resized copies of issue images (served at /images/_derived)
    derived_images_dir: Path = Path("var/images")
    maildir: Path = Path("var/maildir")
    # secrets: environment only, never printed (repr=False)
    secret_key: bytes = field(default=b"", repr=False)
    # earlier signing keys (NEWSLETTER_SECRET_KEY_OLD): their links still verify, nothing new
    # is signed with them
    secret_key_old: tuple[bytes, ...] = field(default=(), repr=False)
    smtp_password: str | None = field(default=None, repr=False)
    imap_password: str | None = field(default=None, repr=False)
    webhooks: WebhookSecrets = field(default_factory=WebhookSecrets, repr=False)
    root: Path = Path(".")
    source: Path | None = None

    def mailing_list(self, slug: str | None) -> MailingList:
        """The list named ``slug`` (or the default list); unknown names are a ConfigError."""
        slug = slug or self.publication.default_list
        try:
            return self.lists[slug]
        except KeyError:
            known = ", ".join(sorted(self.lists)) or "none"
            raise ConfigError(
                "lists", f"no list named {slug!r} (known: {known})", source=self._src()
            ) from None

    @property
    def bounce_domain(self) -> str | None:
        """The VERP domain: ``[bounces] domain``, else the domain of ``smtp.return_path``."""
        if self.bounces.domain:
            return self.bounces.domain
        if self.smtp.return_path:
            return self.smtp.return_path.rpartition("@")[2] or None
        return None

    @property
    def bounce_prefix(self) -> str:
        """The VERP local part before ``+``: ``[bounces] prefix``, or ``smtp.return_path``'s."""
        if not self.bounces.domain and self.smtp.return_path:
            return self.smtp.return_path.rpartition("@")[0].partition("+")[0] or "bounces"
        return self.bounces.prefix

    @property
    def token_keys(self) -> tuple[bytes, ...]:
        """The keys a signed link is checked against: the current one, then the earlier ones."""
        return (self.secret_key, *self.secret_key_old)

    def _src(self) -> str | None:
        return str(self.source) if self.source else None


_SECTIONS: dict[str, type[Any]] = {
    "publication": Publication,
    "brand": Brand,
    "labels": Labels,
    "smtp": Smtp,
    "delivery": Delivery,
    "dkim": Dkim,
    "scheduler": Scheduler,
    "bounces": Bounces,
    "analytics": Analytics,
    "admin": Admin,
    "serve": Serve,
    "subscribe": Subscribe,
}
_TOP_LEVEL = (
    "database_url",
    "smtp_url",
    "issues_dir",
    "templates_dir",
    "derived_images_dir",
    "maildir",
)
_PATH_DEFAULTS = {
    "issues_dir": "issues",
    "templates_dir": "templates",
    "derived_images_dir": "var/images",
    "maildir": "var/maildir",
}
# Colours go into CSS and HTML attributes: only #rgb or #rrggbb, so none can carry markup.
_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
_PATH_KEYS = set(_PATH_DEFAULTS)


def load_settings(
    path: Path | str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read ``newsletter.toml`` (or ``path``) and apply ``NEWSLETTER_*`` overrides.

    ``NEWSLETTER_CONFIG`` names the file when ``path`` is None. Section keys are overridden by
    ``NEWSLETTER_<SECTION>_<KEY>`` (``NEWSLETTER_PUBLICATION_BASE_URL``), top-level keys by
    ``NEWSLETTER_<KEY>`` (``NEWSLETTER_DATABASE_URL``).
    """
    env = os.environ if environ is None else environ
    config_path = Path(path or env.get(ENV_PREFIX + "CONFIG") or DEFAULT_CONFIG)
    src = str(config_path)
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            "file", f"{config_path} not found; create it or set NEWSLETTER_CONFIG", source=src
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("file", f"not valid TOML: {exc}", source=src) from None
    root = config_path.resolve().parent

    known_top = set(_SECTIONS) | set(_TOP_LEVEL) | {"lists"}
    for key in raw:
        if key not in known_top:
            raise ConfigError(key, "unknown key" + _did_you_mean(key, known_top), source=src)

    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(name, "must be a table ([" + name + "])", source=src)
        sections[name] = _build(cls, name, table, env, src, root)

    top: dict[str, Any] = {}
    for key in _TOP_LEVEL:
        value: Any = env.get(ENV_PREFIX + key.upper(), raw.get(key))
        if value is None:
            continue
        if not isinstance(value, str):
            raise ConfigError(key, "must be a string", source=src)
        top[key] = (root / value) if key in _PATH_KEYS else value
    if "database_url" in top:
        top["database_url"] = _resolve_sqlite(top["database_url"], root)
    else:
        top["database_url"] = _resolve_sqlite("sqlite:///newsletter.db", root)
    for key, default in _PATH_DEFAULTS.items():
        top.setdefault(key, root / default)

    lists = _load_lists(raw.get("lists", {}), src)
    publication: Publication = sections["publication"]
    if not lists:
        lists = {
            publication.default_list: MailingList(
                slug=publication.default_list, name=publication.name
            )
        }
    if publication.default_list not in lists:
        raise ConfigError(
            "publication.default_list",
            f"{publication.default_list!r} is not one of the [lists.*] tables",
            source=src,
        )
    try:
        ZoneInfo(publication.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            "publication.timezone", f"unknown time zone {publication.timezone!r}", source=src
        ) from None
    _check_dkim(sections["dkim"], publication, src)
    _check_bounces(sections["bounces"], sections["smtp"], src)
    _check_analytics(sections["analytics"], sections["admin"], src)
    _check_serve(sections["serve"], src)

    return Settings(
        **sections,
        **top,
        lists=lists,
        secret_key=_secret_key(env, root),
        secret_key_old=_old_secret_keys(env),
        smtp_password=env.get(ENV_PREFIX + "SMTP_PASSWORD") or None,
        imap_password=_secret(env, "IMAP_PASSWORD", minimum=1),
        webhooks=WebhookSecrets(
            postmark_password=_secret(env, "WEBHOOK_POSTMARK_PASSWORD"),
            mailgun_signing_key=_secret(env, "WEBHOOK_MAILGUN_SIGNING_KEY"),
            sendgrid_public_key=_secret(env, "WEBHOOK_SENDGRID_PUBLIC_KEY", minimum=40),
        ),
        root=root,
        source=config_path,
    )


_DNS_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_DNS_NAME = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")


def _check_dkim(dkim: Dkim, publication: Publication, src: str) -> None:
    if not dkim.enabled:
        if dkim.ed25519_key_path is not None:
            raise ConfigError(
                "dkim.ed25519_key_path",
                "the Ed25519 signature goes beside an RSA one: set key_path, selector and "
                "domain too (receivers that know no Ed25519 need the RSA signature)",
                source=src,
            )
        return
    if not (dkim.selector and dkim.domain):
        raise ConfigError("dkim", "key_path, selector and domain go together", source=src)
    if (dkim.ed25519_key_path is None) != (dkim.ed25519_selector is None):
        raise ConfigError(
            "dkim.ed25519_selector", "ed25519_key_path and ed25519_selector go together", source=src
        )
    for key in ("selector", "ed25519_selector"):
        selector = getattr(dkim, key)
        if selector is not None and not _DNS_NAME.fullmatch(selector):
            raise ConfigError(
                f"dkim.{key}", f"{selector!r} is not a DNS name (letters, digits, -)", source=src
            )
    if dkim.ed25519_selector is not None and dkim.ed25519_selector.lower() == dkim.selector.lower():
        raise ConfigError(
            "dkim.ed25519_selector",
            "must differ from dkim.selector: each key is published under its own selector",
            source=src,
        )
    try:
        domain = _idna(dkim.domain)
    except UnicodeError:
        domain = ""
    if not _DNS_NAME.fullmatch(domain):
        raise ConfigError("dkim.domain", f"{dkim.domain!r} is not a domain name", source=src)
    if "." not in domain:
        raise ConfigError(
            "dkim.domain", f"{dkim.domain!r} is a top-level domain; sign as your own", source=src
        )
    if dkim.allow_unaligned:
        return
    try:
        from_domain = _idna(parseaddr(publication.sender)[1].rpartition("@")[2])
    except UnicodeError:
        from_domain = ""
    if from_domain != domain and not from_domain.endswith("." + domain):
        raise ConfigError(
            "dkim.domain",
            f"{dkim.domain} is neither the From address's domain ({from_domain or 'none'}, "
            "publication.sender) nor a parent of it, so DMARC would not align the signature; "
            "sign as that domain, or set dkim.allow_unaligned = true for a relay that signs "
            "for other domains",
            source=src,
        )


def _check_bounces(bounces: Bounces, smtp: Smtp, src: str) -> None:
    if bounces.domain is not None:
        try:
            domain = _idna(bounces.domain)
        except UnicodeError:
            domain = ""
        if not _DNS_NAME.fullmatch(domain) or "." not in domain:
            raise ConfigError(
                "bounces.domain", f"{bounces.domain!r} is not a domain name", source=src
            )
    if smtp.return_path is not None:
        if "{" in smtp.return_path:
            raise ConfigError(
                "smtp.return_path",
                "the envelope sender no longer carries the recipient's address (anyone could "
                "forge a bounce for it); give the bounce address, e.g. bounces@bounce.example.org, "
                "and each delivery gets bounces+<signed token>@bounce.example.org",
                source=src,
            )
        local, _, domain = smtp.return_path.rpartition("@")
        if not local or not _DNS_NAME.fullmatch(domain) or "." not in domain:
            raise ConfigError(
                "smtp.return_path", f"{smtp.return_path!r} is not an address", source=src
            )
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,23}", bounces.prefix):
        raise ConfigError(
            "bounces.prefix",
            f"{bounces.prefix!r}: letters, digits, '.', '_' or '-', at most 24 characters",
            source=src,
        )
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", bounces.feedback_local):
        raise ConfigError(
            "bounces.feedback_local", f"{bounces.feedback_local!r} is not a local part", source=src
        )
    if bounces.soft_limit < 1 or bounces.soft_days <= 0:
        raise ConfigError(
            "bounces.soft_limit", "soft_limit must be at least 1 and soft_days positive", source=src
        )
    if bounces.max_message_bytes < 64 * 1024:
        raise ConfigError(
            "bounces.max_message_bytes", "at least 65536: a DSN carries headers", source=src
        )
    if bounces.provider is not None and bounces.provider not in PROVIDERS:
        raise ConfigError(
            "bounces.provider",
            f"{bounces.provider!r} is not one of {', '.join(PROVIDERS)}",
            source=src,
        )


def _secret(env: Mapping[str, str], name: str, *, minimum: int = MIN_SECRET_LENGTH) -> str | None:
    """``NEWSLETTER_<name>`` or None; a short one is refused, naming the variable only."""
    value = env.get(ENV_PREFIX + name)
    if not value:
        return None
    if len(value) < minimum:
        raise ConfigError(ENV_PREFIX + name, f"too short; use at least {minimum} random characters")
    return value


def _check_analytics(analytics: Analytics, admin: Admin, src: str) -> None:
    if analytics.retention_days < 1:
        raise ConfigError(
            "analytics.retention_days", "must be at least 1 (days of raw rows kept)", source=src
        )
    if analytics.clicks_in_text and not analytics.clicks:
        raise ConfigError(
            "analytics.clicks_in_text", "needs analytics.clicks = true as well", source=src
        )
    if analytics.scanner_window_seconds < 0:
        raise ConfigError("analytics.scanner_window_seconds", "must not be negative", source=src)
    for key in ("session_hours", "idle_minutes"):
        if getattr(admin, key) <= 0:
            raise ConfigError(f"admin.{key}", "must be positive", source=src)
    if admin.login_attempts < 1:
        raise ConfigError("admin.login_attempts", "must be at least 1", source=src)


def _check_serve(serve: Serve, src: str) -> None:
    for proxy in serve.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(
                "serve.trusted_proxies",
                f"{proxy!r} is not an IP address or network (203.0.113.7, 10.0.0.0/8)",
                source=src,
            ) from None
    for origin in serve.form_origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise ConfigError(
                "serve.form_origins",
                f"{origin!r} is not an origin (scheme and host, as https://example.org)",
                source=src,
            )
    for key in ("header_timeout", "body_timeout"):
        if getattr(serve, key) <= 0:
            raise ConfigError(f"serve.{key}", "must be positive (seconds)", source=src)
    if serve.max_connections < 1:
        raise ConfigError("serve.max_connections", "must be at least 1", source=src)


def _idna(domain: str) -> str:
    domain = domain.strip().rstrip(".").lower()
    return domain if domain.isascii() else domain.encode("idna").decode("ascii")


def _build(
    cls: type[Any],
    section: str,
    table: Mapping[str, Any],
    env: Mapping[str, str],
    src: str,
    root: Path,
) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in table:
        if key not in fields:
            raise ConfigError(
                f"{section}.{key}", "unknown key" + _did_you_mean(key, fields), source=src
            )
    values: dict[str, Any] = {}
    for name in fields:
        env_name = f"{ENV_PREFIX}{section.upper()}_{name.upper()}"
        if env_name in env:
            raw_value: Any = env[env_name]
            where = env_name
        elif name in table:
            raw_value = table[name]
            where = src
        else:
            if fields[name].default is dataclasses.MISSING:
                raise ConfigError(f"{section}.{name}", "missing required key", source=src)
            continue
        values[name] = _cast(hints[name], raw_value, f"{section}.{name}", where, root)
        color = values[name] if name.endswith("_color") else None
        if color is not None and not _COLOR.fullmatch(color):
            raise ConfigError(
                f"{section}.{name}",
                f"expected a colour as #rrggbb or #rgb, got {color!r}",
                source=where,
            )
    return cls(**values)


def _cast(hint: Any, value: Any, key: str, where: str, root: Path) -> Any:
    optional = False
    if typing.get_origin(hint) is tuple:
        # a list of strings: a TOML array, or comma-separated in an environment variable
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise ConfigError(key, f"expected a list of strings, got {value!r}", source=where)
        return tuple(item.strip() for item in items if item.strip())
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = True
        hint = args[0]
    if optional and (value is None or value == ""):
        return None
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if hint is int:
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if hint is Path:
            return root / str(value)
        if hint is str:
            if not isinstance(value, str):
                raise ValueError(value)
            return value
    except (TypeError, ValueError):
        name = getattr(hint, "__name__", str(hint))
        raise ConfigError(key, f"expected {name}, got {value!r}", source=where) from None
    raise ConfigError(key, f"unsupported type {hint}", source=where)  # pragma: no cover


def _load_lists(table: Any, src: str) -> dict[str, MailingList]:
    if not isinstance(table, dict):
        raise ConfigError("lists", "must be a table of [lists.<slug>] tables", source=src)
    known = {f.name for f in dataclasses.fields(MailingList)} - {"slug"}
    lists: dict[str, MailingList] = {}
    for slug, entry in table.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"lists.{slug}", "must be a table", source=src)
        for key in entry:
            if key not in known:
                raise ConfigError(
                    f"lists.{slug}.{key}", "unknown key" + _did_you_mean(key, known), source=src
                )
        if "name" not in entry:
            raise ConfigError(f"lists.{slug}.name", "missing required key", source=src)
        for key, value in entry.items():
            if not isinstance(value, str):
                raise ConfigError(f"lists.{slug}.{key}", "must be a string", source=src)
        lists[slug] = MailingList(slug=slug, **entry)
    return lists


def _resolve_sqlite(url: str, root: Path) -> str:
    """Make a relative SQLite path relative to the config file, not the working directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        return prefix + str(root / url[len(prefix) :])
    return url


def _secret_key(env: Mapping[str, str], root: Path) -> bytes:
    """The HMAC key for tokens: ``NEWSLETTER_SECRET_KEY``, else a generated local key file.

    The local file (``var/secret.key``, mode 0600, git-ignored) keeps the embedded default
    working with nothing configured; production sets the environment variable. Either way a
    key shorter than :data:`MIN_SIGNING_KEY_BYTES` is refused: with a short (or empty) key
    anyone could forge unsubscribe and confirmation links.
    """
    value = env.get(ENV_PREFIX + "SECRET_KEY")
    if value:
        key = value.encode()
        if len(key) < MIN_SIGNING_KEY_BYTES:
            raise ConfigError(
                "NEWSLETTER_SECRET_KEY",
                f"too short ({len(key)} bytes); use at least {MIN_SIGNING_KEY_BYTES} random "
                "characters (python3 -c 'import secrets; print(secrets.token_urlsafe(32))')",
            )
        return key
    return _key_file(root / "var" / "secret.key")


def _key_file(path: Path) -> bytes:
    """The key in ``path``, made first if there is none: whole or not at all.

    Several processes may start together on a fresh checkout (the web app, the scheduler, a
    worker): each writes its own candidate to a temporary file and hard-links it into place;
    exactly one link succeeds and everybody reads that one, complete, file.
    """
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    var = path.parent
    try:
        var.mkdir(mode=0o700)
        # mkdir's mode is filtered through the umask; the directory holds the signing key
        var.chmod(0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(
            "NEWSLETTER_SECRET_KEY", f"not set, and {var} cannot be created: {exc.strerror}"
        ) from None
    candidate = secrets.token_urlsafe(GENERATED_KEY_BYTES).encode()
    fd, temp = tempfile.mkstemp(prefix=".secret.key.", dir=var)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(candidate)
            fh.flush()
            os.fsync(fh.fileno())
        # another process may have been first: then its key is the key
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)
    finally:
        os.unlink(temp)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    # O_NOFOLLOW and a bounded read: the key file is a few dozen bytes, never a link or a device
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(str(path), f"cannot be read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        key = fh.read(4096).strip()
    if len(key) < MIN_SIGNING_KEY_BYTES:
        raise ConfigError(
            str(path),
            f"holds {len(key)} bytes where a signing key needs at least {MIN_SIGNING_KEY_BYTES}; "
            "remove the file to have a new key made (links signed with the old one stop "
            "working) or set NEWSLETTER_SECRET_KEY",
        )
    return key


def _old_secret_keys(env: Mapping[str, str]) -> tuple[bytes, ...]:
    """``NEWSLETTER_SECRET_KEY_OLD``: earlier signing keys, comma-separated, newest first.

    Each follows the rule for the current key; an error names the key's position, never the
    key itself.
    """
    value = env.get(ENV_PREFIX + "SECRET_KEY_OLD", "")
    keys = [key.strip() for key in value.split(",") if key.strip()]
    for number, key in enumerate(keys, start=1):
        if len(key) < MIN_SECRET_LENGTH:
            raise ConfigError(
                "NEWSLETTER_SECRET_KEY_OLD",
                f"key {number} of {len(keys)} is too short; old keys are the full keys used "
                "before, at least 16 characters each, separated by commas",
            )
    return tuple(key.encode() for key in keys)


def _did_you_mean(key: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
