"""``/r/<token>`` and ``/o/<token>``: a tracked link's redirect and the open pixel.

The answer never waits for the database: the token is checked in memory (an HMAC), the
issue's link table is cached after its first use, and the hit goes into a :class:`HitBuffer`
that a background task writes in batches. What a crash can lose is what the buffer held:
at most ``settle + flush_every`` seconds of hits (about two), never a redirect. The target
comes from the issue's stored link table, never from the request, so nothing here can send
a reader anywhere the issue did not link to.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from newsletter import urls
from newsletter.config import Settings
from newsletter.errors import NewsletterError, TokenError
from newsletter.scanners import BURST, BurstDetector, automated
from newsletter.states import HitKind
from newsletter.store.analytics import Hit, link_targets, prune_hits, record_hits
from newsletter.tokens import LinkKind, read_link_token, read_reader_token

log = logging.getLogger(__name__)

# the smallest transparent GIF (43 bytes)
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
# neither the redirect nor the pixel may be cached (each is a count) or leak its token onwards
_NO_STORE = {"cache-control": "no-store, private", "referrer-policy": "no-referrer"}
# what a Location header may carry as it is; anything else (an IRI's letters) is %-encoded
_LOCATION_SAFE = "!#$%&'()*+,/:;=?@[]~"
PRUNE_EVERY = 3600.0


def location(url: str) -> str:
    """``url`` as a Location header value: ASCII, no whitespace or control characters."""
    return quote(url, safe=_LOCATION_SAFE)


@dataclass
class _Pending:
    hit: Hit
    client: str
    at: float


class HitBuffer:
    """Hits in memory until a background task writes them (:meth:`run`, or :meth:`flush`).

    :meth:`add` is what the request does: an append under a lock no writer holds for long.
    A hit is written once it has ``settle`` seconds behind it, so a burst found later still
    marks the clicks before it. When the database is away the buffer keeps at most
    ``max_pending`` hits and drops the oldest beyond that (and logs how many).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        scanner_window: timedelta,
        retention_days: int,
        settle: float = 1.0,
        flush_every: float = 1.0,
        max_batch: int = 250,
        max_pending: int = 200_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.scanner_window = scanner_window
        self.retention_days = retention_days
        self.settle = settle
        self.flush_every = flush_every
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.clock = clock
        self.bursts = BurstDetector()
        # each client's recent clicks on an issue not yet marked automated, so a burst found
        # now marks them too without walking the whole buffer
        self._unmarked: dict[tuple[str, int], deque[_Pending]] = {}
        self.dropped = 0
        self.written = 0
        self._pending: deque[_Pending] = deque()
        self._lock = threading.Lock()
        # writes one at a time: the flusher and a shutdown drain never interleave batches
        self._writing = threading.Lock()

    def add(self, hit: Hit, client: str) -> None:
        now = self.clock()
        entry = _Pending(hit, client, now)
        with self._lock:
            if hit.kind is HitKind.CLICK and hit.position is not None:
                if self.bursts.hit(client, hit.issue_id, hit.position, now):
                    self._mark_burst(entry)
                elif hit.automated is None:
                    self._remember(entry)
            self._pending.append(entry)
            while len(self._pending) > self.max_pending:
                self._pending.popleft()
                self.dropped += 1

    def _mark_burst(self, entry: _Pending) -> None:
        # this click and the ones before it from that client, still in memory, are a scanner's
        entry.hit = _as_automated(entry.hit, BURST)
        earlier = self._unmarked.pop((entry.client, entry.hit.issue_id), None)
        for other in earlier or ():
            other.hit = _as_automated(other.hit, BURST)

    def _remember(self, entry: _Pending) -> None:
        key = (entry.client, entry.hit.issue_id)
        recent = self._unmarked.get(key)
        if recent is None:
            if len(self._unmarked) >= self.bursts.max_clients:
                cutoff = entry.at - self.bursts.window
                for k in [k for k, v in self._unmarked.items() if not v or v[-1].at < cutoff]:
                    del self._unmarked[k]
            recent = self._unmarked[key] = deque()
        while recent and entry.at - recent[0].at > self.bursts.window:
            recent.popleft()
        recent.append(entry)

    def __len__(self) -> int:
        return len(self._pending)

    def _take(self, everything: bool) -> list[_Pending]:
        cutoff = self.clock() - self.settle
        batch: list[_Pending] = []
        with self._lock:
            while self._pending and len(batch) < self.max_batch:
                if not everything and self._pending[0].at > cutoff:
                    break
                batch.append(self._pending.popleft())
        return batch

    def flush(self, *, everything: bool = False) -> int:
        """Write what has settled (everything, at shutdown); blocking. Hits written."""
        total = 0
        with self._writing:
            while True:
                batch = self._take(everything)
                if not batch:
                    return total
                try:
                    record_hits(
                        self.engine, [p.hit for p in batch], scanner_window=self.scanner_window
                    )
                except NewsletterError as exc:
                    # back in front, as they were: the next flush tries them first
                    with self._lock:
                        self._pending.extendleft(reversed(batch))
                    log.warning("analytics: hits not written yet (%d waiting): %s", len(self), exc)
                    return total
                total += len(batch)
                self.written += len(batch)
                # let the event loop have the interpreter between batches: one long write would
                # hold it for tens of milliseconds and stall every redirect meanwhile
                time.sleep(0)

    def prune(self) -> int:
        return prune_hits(self.engine, now=datetime.now(UTC), retention_days=self.retention_days)

    async def run(self) -> None:
        """Write settled hits every ``flush_every`` seconds, and prune old ones hourly."""
        pruned_at = 0.0
        while True:
            await asyncio.sleep(self.flush_every)
            try:
                await asyncio.to_thread(self.flush)
                if self.clock() - pruned_at >= PRUNE_EVERY:
                    pruned_at = self.clock()
                    await asyncio.to_thread(self.prune)
            except Exception:  # the flusher must outlive any one failure
                log.exception("analytics: flushing hits failed")


def _as_automated(hit: Hit, reason: str) -> Hit:
    if hit.automated is not None:
        return hit
    return Hit(hit.issue_id, hit.kind, hit.position, hit.at, hit.subscriber_uid, reason)


class LinkCache:
    """Issue id -> (counted per subscriber?, position -> Location); links never change."""

    def __init__(self, engine: Engine, size: int = 1000) -> None:
        self.engine = engine
        self.size = size
        self._issues: OrderedDict[int, tuple[bool, dict[int, str]] | None] = OrderedDict()

    async def get(self, issue_id: int) -> tuple[bool, dict[int, str]] | None:
        if issue_id in self._issues:
            self._issues.move_to_end(issue_id)
            return self._issues[issue_id]
        found = await asyncio.to_thread(link_targets, self.engine, issue_id)
        value = None
        if found is not None:
            per_subscriber, targets = found
            value = (per_subscriber, {pos: location(url) for pos, url in targets.items()})
        self._issues[issue_id] = value
        while len(self._issues) > self.size:
            self._issues.popitem(last=False)
        return value


def routes(
    settings: Settings,
    engine: Engine,
    buffer: HitBuffer,
    *,
    not_found: Callable[[], Response],
) -> list[BaseRoute]:
    keys = settings.token_keys
    analytics = settings.analytics
    cache = LinkCache(engine)

    def reader(part: str, issue_id: int, per_subscriber: bool) -> str | None:
        # counted per person only when the send was and the setting still says so
        if not (part and per_subscriber and analytics.per_subscriber):
            return None
        try:
            return read_reader_token(keys, part, issue_id)
        except TokenError:
            return None

    async def click(request: Request) -> Response:
        link, _, part = request.path_params["token"].partition(".")
        try:
            data = read_link_token(keys, link)
        except TokenError:
            return not_found()
        if data.kind is not LinkKind.CLICK:
            return not_found()
        found = await cache.get(data.issue_id)
        target = found[1].get(data.position) if found is not None else None
        if found is None or target is None:
            return not_found()
        if analytics.clicks:
            buffer.add(
                Hit(
                    data.issue_id,
                    HitKind.CLICK,
                    data.position,
                    datetime.now(UTC),
                    reader(part, data.issue_id, found[0]),
                    automated(request.method, request.headers.get("user-agent")),
                ),
                request.client.host if request.client else "",
            )
        return Response(status_code=302, headers={"location": target, **_NO_STORE})

    async def pixel(request: Request) -> Response:
        link, _, part = request.path_params["token"].partition(".")
        response = Response(PIXEL, media_type="image/gif", headers=_NO_STORE)
        try:
            data = read_link_token(keys, link)
        except TokenError:
            return response
        if data.kind is not LinkKind.OPEN or not analytics.opens:
            return response
        found = await cache.get(data.issue_id)
        if found is None:
            return response
        buffer.add(
            Hit(
                data.issue_id,
                HitKind.OPEN,
                None,
                datetime.now(UTC),
                reader(part, data.issue_id, found[0]),
                automated(request.method, request.headers.get("user-agent")),
            ),
            request.client.host if request.client else "",
        )
        return response

    return [
        Route(urls.CLICK, click, methods=["GET", "HEAD"], name="click"),
        Route(urls.OPEN, pixel, methods=["GET", "HEAD"], name="open"),
    ]
