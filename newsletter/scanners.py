"""Telling a mail-security scanner's request from a reader's (pure).

Gateways (Microsoft Safe Links, Proofpoint, Mimecast, Barracuda ...) fetch every link of a
message as it arrives, and link previewers fetch them when a link is pasted; counted as
clicks they would make every issue look read. Three signs are used here, each cheap enough
for the redirect's hot path: the method (``HEAD`` is never a person), the user agent (known
scanners, HTTP libraries, previewers, or none at all), and a burst (one client fetching
several different links of one issue within a second, which no reader does). A fourth,
"within seconds of the recipient's delivery", needs the recipient and is applied where the
hits are written (``store.analytics``), for sends counted per subscriber.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

HEAD = "head"
SCANNER = "scanner"
BURST = "burst"
EARLY = "early"

# Substrings of the User-Agent of gateways, link checkers, previewers and HTTP libraries
# (lower case). A reader's browser or mail app sends none of these.
_AGENTS = re.compile(
    "|".join(
        (
            "barracuda",
            "proofpoint",
            "mimecast",
            "urldefense",
            "safelinks",
            "symantec",
            "messagelabs",
            "trendmicro",
            "trend micro",
            "forcepoint",
            "ironport",
            "cisco",
            "sophos",
            "fireeye",
            "trellix",
            "zscaler",
            "paloalto",
            "fortinet",
            "fortiguard",
            "checkpoint",
            "bitdefender",
            "kaspersky",
            "virustotal",
            "appriver",
            "hornetsecurity",
            "spamtitan",
            "google-safety",
            "googlebot",
            "bingbot",
            "bingpreview",
            "slackbot",
            "facebookexternalhit",
            "twitterbot",
            "linkedinbot",
            "discordbot",
            "whatsapp",
            "telegrambot",
            "skypeuripreview",
            "python-requests",
            "python-httpx",
            "python-urllib",
            "aiohttp",
            "curl/",
            "wget/",
            "go-http-client",
            "java/",
            "okhttp",
            "libwww-perl",
            "apache-httpclient",
            "headlesschrome",
            "phantomjs",
            "scanner",
            "crawler",
            "spider",
            "bot/",
            "bot;",
        )
    )
)


def automated(method: str, user_agent: str | None) -> str | None:
    """Why a request is not a reader's (``head``, ``scanner``), or None when it may be one."""
    if method.upper() == "HEAD":
        return HEAD
    agent = (user_agent or "").strip().lower()
    if not agent or _AGENTS.search(agent):
        return SCANNER
    return None


@dataclass
class _Recent:
    """One client's clicks on one issue within the window: in order, and counted per link."""

    times: deque[tuple[float, int]] = field(default_factory=deque)
    links: dict[int, int] = field(default_factory=dict)

    def add(self, now: float, position: int, window: float) -> int:
        while self.times and now - self.times[0][0] > window:
            _, old = self.times.popleft()
            left = self.links[old] - 1
            if left:
                self.links[old] = left
            else:
                del self.links[old]
        self.times.append((now, position))
        self.links[position] = self.links.get(position, 0) + 1
        return len(self.links)


@dataclass
class BurstDetector:
    """Several different links of one issue from one client within ``window`` seconds.

    Constant time per click (on the redirect's hot path, one client may be a gateway sending
    thousands). Memory is bounded: a client's entries older than the window are dropped when
    it comes back, and the whole table is swept when it grows past ``max_clients``.
    """

    window: float = 1.0
    links: int = 3
    max_clients: int = 50_000
    _recent: dict[tuple[str, int], _Recent] = field(default_factory=dict)

    def hit(self, client: str, issue_id: int, position: int, now: float) -> bool:
        """Record a click; True when it makes (or continues) a burst."""
        key = (client, issue_id)
        recent = self._recent.get(key)
        if recent is None:
            if len(self._recent) >= self.max_clients:
                self._sweep(now)
            recent = self._recent[key] = _Recent()
        return recent.add(now, position, self.window) >= self.links

    def _sweep(self, now: float) -> None:
        stale = [
            k for k, v in self._recent.items() if not v.times or now - v.times[-1][0] > self.window
        ]
        for key in stale:
            del self._recent[key]
        if len(self._recent) >= self.max_clients:
            self._recent.clear()
