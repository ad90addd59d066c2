"""Live reload for the preview: file changes (watchfiles) become server-sent events.

A :class:`ReloadHub` holds a version tag that changes whenever a watched file does. Every page
the preview serves embeds the tag it was rendered at and listens on :func:`events_endpoint`
with ``?since=<tag>``; the stream answers with a ``reload`` event as soon as the tag differs,
so a change that lands between rendering the page and opening the stream is not missed, and a
restarted server (new boot id) reloads open pages too.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import StreamingResponse
from watchfiles import Change, DefaultFilter, awatch

from newsletter import urls

log = logging.getLogger(__name__)

# A keep-alive comment this often stops proxies and the browser from timing out an idle stream.
KEEPALIVE_SECONDS = 15.0
# watchfiles yields once no further change arrived for this long; an editor's atomic save
# (write temp file, rename) is a burst of events a few milliseconds apart.
STEP_MS = 15
# ...and never waits longer than this to yield a burst that keeps going.
DEBOUNCE_MS = 200

# The inline script every preview page carries. It stores the scroll position per page in
# sessionStorage before reloading and restores it once the page (iframes included) has loaded.
RELOAD_SCRIPT = """
(function () {
  var key = "newsletter-preview-scroll:" + location.pathname + location.search;
  var saved = sessionStorage.getItem(key);
  function restore() {
    if (saved === null) { return; }
    var target = parseInt(saved, 10) || 0;
    window.scrollTo(0, target);
    // a page that is shorter for now (the issue is broken halfway through a save) keeps
    // the position for the next reload instead of forgetting it
    if (Math.abs(window.scrollY - target) <= 1) {
      sessionStorage.removeItem(key);
      saved = null;
    }
  }
  // the page restores the position itself, once its iframes have their final height
  if ("scrollRestoration" in history) { history.scrollRestoration = "manual"; }
  function later() { setTimeout(restore, 0); }  // after every other load handler
  if (document.readyState === "complete") { later(); }
  else { window.addEventListener("load", later); }
  var source = new EventSource("%(endpoint)s?since=" + encodeURIComponent("%(tag)s"));
  source.addEventListener("reload", function () {
    source.close();
    // a second save while this page is still loading must not lose the first position
    sessionStorage.setItem(key, saved !== null ? saved : String(window.scrollY));
    location.reload();
  });
})();
"""


class ReloadHub:
    """The current version tag and a way to wait for the next one."""

    def __init__(self) -> None:
        # a new boot id per process: pages rendered by an earlier server reload when it restarts
        self.boot = secrets.token_hex(4)
        self.version = 0
        self.closed = False
        self._changed: asyncio.Event | None = None

    @property
    def tag(self) -> str:
        return f"{self.boot}-{self.version}"

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def bump(self) -> str:
        """Record a change and wake every waiting stream; returns the new tag."""
        self.version += 1
        event, self._changed = self._changed, None
        if event is not None:
            event.set()
        return self.tag

    def close(self) -> None:
        """End every open stream (server shutdown) so the server need not wait for them."""
        self.closed = True
        self.bump()

    async def wait(self, since: str, timeout: float) -> bool:
        """Wait until the tag differs from ``since``; False when ``timeout`` passed first."""
        if self.tag != since or self.closed:
            return True
        try:
            await asyncio.wait_for(self._event().wait(), timeout)
        except TimeoutError:
            return False
        return True


def events_endpoint(
    hub: ReloadHub, *, keepalive: float = KEEPALIVE_SECONDS
) -> Callable[[Request], Awaitable[StreamingResponse]]:
    """An endpoint streaming one ``reload`` event when the hub's tag moves past ``?since=``."""

    async def endpoint(request: Request) -> StreamingResponse:
        since = request.query_params.get("since") or request.headers.get("last-event-id") or ""

        async def stream() -> AsyncIterator[str]:
            # reconnect quickly if the stream drops (server restart): the new boot id reloads
            yield "retry: 300\n\n"
            while not hub.closed:
                if await hub.wait(since, keepalive):
                    if hub.closed:
                        return
                    yield f"event: reload\nid: {hub.tag}\ndata: {hub.tag}\n\n"
                    return
                yield ": keep-alive\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return endpoint


def reload_script(hub: ReloadHub, endpoint: str = urls.PREVIEW_RELOAD) -> str:
    """The inline script for a page rendered now (it carries the hub's current tag)."""
    return RELOAD_SCRIPT % {"endpoint": endpoint, "tag": hub.tag}


async def watch(
    directories: Iterable[Path],
    files: Iterable[Path],
    on_change: Callable[[set[Path]], Awaitable[None]],
    *,
    stop_event: asyncio.Event,
) -> None:
    """Call ``on_change`` with the changed paths until ``stop_event`` is set.

    ``directories`` are watched recursively. Single ``files`` are watched through their parent
    directory (not recursively), because editors save by writing a new file and renaming it
    over the old one, which a watch on the old file's inode would never see.
    """
    dirs = [d.resolve() for d in directories if d.is_dir()]
    wanted = {f.resolve() for f in files}
    parents = {f.parent for f in wanted if f.parent.is_dir()}
    default_filter = DefaultFilter()

    def in_dirs(change: Change, path: str) -> bool:
        return default_filter(change, path) or Path(path) in wanted

    def is_wanted_file(change: Change, path: str) -> bool:
        return Path(path) in wanted

    async def run(paths: list[Path], keep: Callable[[Change, str], bool], recursive: bool) -> None:
        if not paths:
            return
        async for changes in awatch(
            *paths,
            watch_filter=keep,
            debounce=DEBOUNCE_MS,
            step=STEP_MS,
            stop_event=stop_event,
            recursive=recursive,
        ):
            changed = {Path(p) for _, p in changes}
            log.debug("changed: %s", ", ".join(sorted(map(str, changed))))
            try:
                await on_change(changed)
            except Exception:
                # a failing callback must not end live reload for the rest of the session
                log.exception("live reload callback failed")

    # files already inside a watched directory need no watch of their own
    extra = sorted(p for p in parents if not any(p.is_relative_to(d) for d in dirs))
    await asyncio.gather(run(dirs, in_dirs, True), run(extra, is_wanted_file, False))
