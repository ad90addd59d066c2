"""``newsletter new``: a publication folder to start from, with the package's sample issue.

What it writes (:func:`create_publication`): a commented ``newsletter.toml`` with the name
filled in, ``issues/`` with the sample issue and its images, a ``.gitignore`` for what a run
leaves behind, an empty ``templates/`` (the theme's overrides) with a README, and a README for
the editors. The theme itself stays in the package; only files an editor changes are copied.
"""

from __future__ import annotations

import json
import re
import shutil
from email.headerregistry import Address
from pathlib import Path

from newsletter.errors import ScaffoldError
from newsletter.templating import packaged, theme_dir

DEFAULT_NAME = "The Weekly"
# the domain the generated addresses use until the editor puts theirs in
PLACEHOLDER_DOMAIN = "example.org"

CONFIG = """\
# {name}: publication settings. newsletter's docs/configuration.md describes every key.
# Every key can be overridden by an environment variable: NEWSLETTER_<SECTION>_<KEY> (e.g.
# NEWSLETTER_PUBLICATION_BASE_URL) or NEWSLETTER_<KEY> for the top-level keys
# (NEWSLETTER_DATABASE_URL, NEWSLETTER_SMTP_URL). Secrets never go here:
# NEWSLETTER_SECRET_KEY (token signing) and NEWSLETTER_SMTP_PASSWORD come from the environment.
# Without NEWSLETTER_SECRET_KEY a key is made once in var/secret.key (git-ignored).

# SQLite file beside this one; postgresql://user@host/db for several workers
database_url = "sqlite:///newsletter.db"
# the default is `newsletter sink`, a local SMTP server that stores mail in var/maildir;
# put your relay here (smtp://user@relay.example:587, or smtps://relay.example:465)
smtp_url = "smtp://127.0.0.1:8025"
issues_dir = "issues"
# your own versions of theme files, by the same relative path (see templates/README.md);
# every file not there comes from the theme in the package
templates_dir = "templates"
maildir = "var/maildir"

[publication]
name = {name_toml}
# change the addresses to your own domain before the first real send
sender = {sender_toml}
reply_to = "editors@{domain}"
# the postal address every issue shows in its footer (required by anti-spam law)
postal_address = {postal_toml}
# where `newsletter serve` is reached: links in the email point here (https in production)
base_url = "http://127.0.0.1:8000"
lang = "en-GB"
default_list = "weekly"
timezone = "Europe/London"
# who gets the editor's report after each send
editor_email = "editor@{domain}"

[brand]
logo_url = "http://127.0.0.1:8000/images/logo.png"
logo_alt = {name_toml}
primary_color = "#1f3a5f"
accent_color = "#c0392b"
background_color = "#f2f2ee"
text_color = "#1d1d1b"

# one table per mailing list; an issue names its list in `list:` (else default_list)
[lists.weekly]
name = {name_toml}
description = "The week's news, every Friday."
# when `python scheduler.py` sends the next ready issue
schedule = "fri 13:00 Europe/London"

[smtp]
connections = 4
timeout = 30
# messages per second (0: as fast as the relay takes them) and an hourly cap (0: none)
rate = 0
hourly_cap = 0

[delivery]
max_attempts = 8
retry_base_seconds = 60
max_age_hours = 48

# What comes back (bounces, complaints). Set a bounce domain to turn VERP on: every issue then
# goes out from bounces+<signed token>@<domain>, and `newsletter inbound` matches each report.
[bounces]
# domain = "bounce.{domain}"
soft_limit = 3
soft_days = 30

# DKIM signing: a key file and the selector published in DNS
# [dkim]
# selector = "news"
# key_file = "/etc/newsletter/dkim.key"
"""

GITIGNORE = """\
# what running newsletter leaves here: the SQLite database, the local signing key
# (var/secret.key), the sink's Maildir, image copies and built files
newsletter.db
newsletter.db-*
var/
build/
*.secret
"""

TEMPLATES_README = """\
# Your templates

Put a file here to replace the theme's file with the same relative path; every other file
still comes from the theme in the package. To restyle the email's CSS, for instance, copy
the theme's `email/email.css.j2` to `templates/email/email.css.j2` and edit it:

    {theme}

The theme's folders: `email/` (the issue as MJML, its plain text, its CSS), `web/` (the
subscribe, confirm and unsubscribe pages), `confirm/` (the confirmation email), `archive/`,
`preview/` and `admin/`. After upgrading newsletter, compare your copies with the theme's:
a file here is yours, and upgrades do not change it.
"""

README = """\
# {name}

The newsletter's files: `newsletter.toml` (settings), `issues/` (one Markdown file per issue,
images in `issues/images/`) and `templates/` (your changes to the theme).

    newsletter demo          # a local database, demo subscribers, the sample sent to a sink
    newsletter check         # every mistake in the issues, as path:line: message
    newsletter preview       # the issues in the browser at desktop and phone width
    newsletter build         # build/<slug>.html, .txt and a sample .eml
    newsletter doctor        # before the first real send: relay, DKIM, DNS, base_url, secrets
    newsletter send ISSUE    # send an issue to its list (configure smtp_url first)

Write an issue by copying the sample in `issues/` to `issues/YYYY-MM-DD-slug.md`: YAML front
matter (`title`, `date`, `authors`, `status: draft|ready`), then Markdown with `##` sections.
"""

# the sample issue in the package (setup.py names the same file)
SAMPLE_ISSUE = "2026-11-20-flood-barrier-vote.md"
_IMAGE = re.compile(r"""images/[^\s)"']+""")


def sample_dir() -> Path:
    """The package's sample issue and its images."""
    return packaged("sample", checkout="issues")


def _toml_string(value: str) -> str:
    # a JSON string is a TOML basic string for everything json.dumps writes
    return json.dumps(value, ensure_ascii=False)


def _check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ValueError("the name is empty")
    if any(ch in name for ch in "\r\n") or not name.isprintable():
        raise ValueError("the name must be one line of printable characters")
    return name


def config_text(name: str) -> str:
    """The commented ``newsletter.toml`` for a publication called ``name``."""
    name = _check_name(name)
    # quoted where the name needs it, and left in Unicode (the message encodes it when sent)
    sender = str(Address(display_name=name, addr_spec=f"newsletter@{PLACEHOLDER_DOMAIN}"))
    return CONFIG.format(
        name=name,
        postal_toml=_toml_string(f"{name}, 1 High Street, Yourtown"),
        name_toml=_toml_string(name),
        sender_toml=_toml_string(sender),
        domain=PLACEHOLDER_DOMAIN,
    )


def create_publication(target: Path, *, name: str = DEFAULT_NAME) -> list[Path]:
    """Write a new publication into ``target`` (missing or empty); returns the files written."""
    try:
        config = config_text(name)
    except ValueError as exc:
        raise ScaffoldError(f"--name: {exc}", path=target) from None
    if target.exists():
        if not target.is_dir():
            raise ScaffoldError("exists and is not a folder", path=target)
        if any(target.iterdir()):
            raise ScaffoldError(
                "is not empty; newsletter new only writes into a new or empty folder",
                path=target,
            )
    sample = sample_dir()
    issue = sample / SAMPLE_ISSUE
    written: list[Path] = []

    def write(relative: str, text: str) -> None:
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)

    def copy(source: Path, relative: str) -> None:
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)
        written.append(path)

    target.mkdir(parents=True, exist_ok=True)
    write("newsletter.toml", config)
    write(".gitignore", GITIGNORE)
    write("README.md", README.format(name=name.strip()))
    theme_css = theme_dir() / "email" / "email.css.j2"
    write("templates/README.md", TEMPLATES_README.format(theme=theme_css))
    # the images the sample shows, and the logo [brand] logo_url points at
    wanted = {"images/logo.png"}
    copy(issue, f"issues/{issue.name}")
    wanted.update(_IMAGE.findall(issue.read_text(encoding="utf-8")))
    for relative in sorted(wanted):
        source = sample / relative
        if source.is_file():
            copy(source, f"issues/{relative}")
    return written
