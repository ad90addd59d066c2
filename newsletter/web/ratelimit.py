"""In-memory sliding-window rate limits: the subscribe form, the dashboard's login.

Memory is bounded: keys whose window has passed are dropped as new ones arrive. One process
only; behind several workers each has its own counts, which still caps abuse per worker.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

Clock = Callable[[], float]


class RateLimiter:
    """Allow at most ``limit`` hits per ``window`` seconds for each key."""

    def __init__(
        self, limit: int, window: float, *, clock: Clock = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}

    def hit(self, key: str) -> bool:
        """Record a hit for ``key``; False when it is over the limit (the hit is not counted)."""
        now = self.clock()
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self.max_keys:
                self._prune(now)
            hits = self._hits[key] = deque()
        while hits and now - hits[0] >= self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        return True

    def allowed(self, key: str) -> bool:
        """True when one more hit for ``key`` would be within the limit (nothing recorded)."""
        hits = self._hits.get(key)
        if not hits:
            return True
        now = self.clock()
        return sum(1 for t in hits if now - t < self.window) < self.limit

    def _prune(self, now: float) -> None:
        for key in [k for k, v in self._hits.items() if not v or now - v[-1] >= self.window]:
            del self._hits[key]
        if len(self._hits) >= self.max_keys:
            # still full of live keys: forget the oldest half rather than grow without bound
            for key in sorted(self._hits, key=lambda k: self._hits[k][-1])[: self.max_keys // 2]:
                del self._hits[key]
