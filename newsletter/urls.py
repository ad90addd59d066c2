"""Where everything lives on the web: the route paths, and absolute URLs built from them.

The public app (:mod:`newsletter.web.app`) and the preview declare their Starlette routes
from these paths, and every link the project writes into an email, a page or a feed comes
from the builders below, so a path changes in one place. A test resolves every URL built
here through the real apps to the route it is meant for.
"""

from __future__ import annotations

import posixpath
from urllib.parse import quote

# --- the public site (``newsletter serve``), relative to ``publication.base_url`` --------------

HOME = "/"
SUBSCRIBE = "/subscribe"
CONFIRM = "/confirm/{token}"
UNSUBSCRIBE = "/unsubscribe/{token}"
# "more from us": one click from an issue onto another list (newsletter.web.join)
JOIN = "/join/{token}"
# the resized copies of issue images (newsletter.images), under IMAGES
DERIVED_IMAGES = "/images/_derived"
ARCHIVE = "/archive"
ARCHIVE_FEED = "/archive/feed.xml"
ARCHIVE_ISSUE = "/archive/{slug}"
ARCHIVE_LIST_ISSUE = "/archive/{list}/{slug}"
# issues/images, as the issues refer to them (``images/x.png``)
IMAGES = "/images"
# provider webhooks (newsletter.web.webhooks): what the mail world reports back
WEBHOOK_SES = "/webhooks/ses"
WEBHOOK_POSTMARK = "/webhooks/postmark"
WEBHOOK_MAILGUN = "/webhooks/mailgun"
WEBHOOK_SENDGRID = "/webhooks/sendgrid"
# analytics (docs/analytics.md): a tracked link's redirect and the open pixel
CLICK = "/r/{token}"
OPEN = "/o/{token}"
# the editors' dashboard
ADMIN = "/admin"

# --- the editors' preview (``newsletter preview``), on its own port ---------------------------

PREVIEW_INDEX = "/"
PREVIEW_RELOAD = "/__reload"
PREVIEW_ISSUE = "/issues/{name}"
PREVIEW_EMAIL = "/issues/{name}/email"
PREVIEW_EML = "/issues/{name}/message.eml"
PREVIEW_SEND_TEST = "/issues/{name}/send-test"
PREVIEW_IMAGE = "/images/{path:path}"


def path(template: str, **params: str) -> str:
    """``template`` with its ``{name}`` parameters filled, each percent-encoded as one segment."""
    return template.format(**{key: quote(value, safe="") for key, value in params.items()})


def absolute(base_url: str, relative: str) -> str:
    """``relative`` (a path starting with ``/``) on the publication's site."""
    return base_url.rstrip("/") + relative


def unsubscribe_url(base_url: str, token: str) -> str:
    """The page with the one-click button and preferences; also the RFC 8058 POST target."""
    return absolute(base_url, path(UNSUBSCRIBE, token=token))


def confirm_url(base_url: str, token: str) -> str:
    """The double opt-in link of a confirmation email."""
    return absolute(base_url, path(CONFIRM, token=token))


def join_url(base_url: str, token: str) -> str:
    """The page with one button that adds the token's list to the token's subscriber."""
    return absolute(base_url, path(JOIN, token=token))


def subscribe_url(base_url: str) -> str:
    return absolute(base_url, SUBSCRIBE)


def archive_url(base_url: str, slug: str) -> str:
    """An issue's "view in browser" page (the default list's copy)."""
    return absolute(base_url, path(ARCHIVE_ISSUE, slug=slug))


def archive_issue_path(list_slug: str, slug: str) -> str:
    """One list's copy of an issue in the archive."""
    return path(ARCHIVE_LIST_ISSUE, list=list_slug, slug=slug)


def issue_file_url(base_url: str, src: str) -> str:
    """The public URL of a file an issue names: ``images/x.png`` -> ``{base_url}/images/x.png``.

    Links that are absolute already stay as they are.
    """
    if src.startswith(("http://", "https://")):
        return src
    return absolute(base_url, "/" + posixpath.normpath(src).lstrip("/"))


def click_url(base_url: str, link_token: str, reader: str | None = None) -> str:
    """A tracked link: ``/r/<link token>``, with ``.<reader token>`` when counted per reader.

    Tokens are URL-safe base64 and go in as they are; ``reader`` may be a placeholder marker
    that delivery fills per recipient.
    """
    return absolute(base_url, "/r/" + link_token + ("." + reader if reader else ""))


def open_url(base_url: str, link_token: str, reader: str | None = None) -> str:
    """The open pixel's address, built like :func:`click_url`."""
    return absolute(base_url, "/o/" + link_token + ("." + reader if reader else ""))


def unsubscribe_mailto(sender_domain: str, token: str) -> str:
    """The ``mailto:`` alternative for ``List-Unsubscribe``; the token identifies the recipient.

    :mod:`newsletter.inbound.mailto` reads the request back from its subject.
    """
    return f"mailto:unsubscribe@{sender_domain}?subject=unsubscribe%20{token}"
