"""Preflight: what ``newsletter send`` checks before it records or sends anything.

Pure: settings and the issue's status in, findings out; the CLI prints them, refuses on an error
and ``--dry-run`` lists them all. Separate from ``newsletter check`` (the issue file itself) and
from the scheduler's own rules (``slots.decide``: a draft is skipped and the editor told).

- A ``status: draft`` issue is not sent to a list; a ``--test ADDR`` copy of it is.
- Through a relay that is not on this machine, ``publication.base_url`` must be https: the
  unsubscribe link is in ``List-Unsubscribe``, and mailbox providers offer one-click
  unsubscribe (RFC 8058) only for an https URL.
- Through such a relay, no ``[dkim]`` is a warning: receivers judge unsigned bulk mail harshly
  (Gmail and Yahoo ask bulk senders for DKIM aligned with From).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from newsletter.config import Settings
from newsletter.diagnostics import Severity
from newsletter.model import IssueStatus


@dataclass(frozen=True)
class Finding:
    """One preflight result: an error refuses the send, a warning is printed."""

    severity: Severity
    # the setting or field it is about: "status", "publication.base_url", "dkim"
    key: str
    message: str

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def __str__(self) -> str:
        return f"{self.severity.value}: {self.key}: {self.message}"


def relay_host(smtp_url: str) -> str:
    """The relay's host name or address from ``smtp_url`` (lower case, no brackets)."""
    return (urlsplit(smtp_url).hostname or "").lower()


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine without a lookup: ``localhost`` (and names under it,
    RFC 6761) or a loopback address. Any other name counts as remote: no DNS is asked."""
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def preflight(settings: Settings, status: IssueStatus, *, test_copy: bool) -> list[Finding]:
    """Everything that stands in the way of sending an issue of ``status`` (errors) or that the
    operator should hear first (warnings), as ``newsletter send`` decides it."""
    findings: list[Finding] = []
    if status is IssueStatus.DRAFT and not test_copy:
        findings.append(
            Finding(
                Severity.ERROR,
                "status",
                "the issue is a draft (status: draft) and is not sent to a list; set "
                "`status: ready` when it is, or send yourself a copy with --test ADDR",
            )
        )
    host = relay_host(settings.smtp_url)
    if is_loopback(host):
        return findings
    scheme = urlsplit(settings.publication.base_url).scheme.lower()
    if scheme != "https":
        findings.append(
            Finding(
                # a test copy goes to the editor only: said, not refused
                Severity.WARNING if test_copy else Severity.ERROR,
                "publication.base_url",
                f"{settings.publication.base_url} is not https, and the relay {host} is not "
                "on this machine: unsubscribe links must be https for one-click unsubscribe "
                "(RFC 8058), which Gmail and Yahoo require of bulk senders",
            )
        )
    if not settings.dkim.enabled:
        findings.append(
            Finding(
                Severity.WARNING,
                "dkim",
                f"messages through {host} go out without a DKIM signature; receivers treat "
                "unsigned bulk mail as suspect (set [dkim] key_path, selector and domain, "
                "docs/delivery.md)",
            )
        )
    return findings
