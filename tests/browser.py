"""Headless Chromium (Debian's, driven by Playwright) and real servers on loopback for it.

Import the fixtures into a test module with ``from tests.browser import browser, page``.
A machine without ``/usr/bin/chromium`` skips browser tests with the reason, unless
``NEWSLETTER_REQUIRE_BROWSER=1`` (set by ``.ci/run``) makes that a failure.

Chromium never reaches the network: its resolver knows no host but the loopback address, and
every request a page makes is recorded so a test can assert that none left the machine.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FunctionType, TracebackType
from typing import Any
from urllib.parse import urlsplit

import pytest
import uvicorn

CHROMIUM = Path(os.environ.get("NEWSLETTER_CHROMIUM", "/usr/bin/chromium"))
REQUIRE_BROWSER = os.environ.get("NEWSLETTER_REQUIRE_BROWSER") == "1"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # the one host Chromium can resolve is the loopback interface the servers listen on
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


def require_browser() -> None:
    if CHROMIUM.exists():
        return
    if REQUIRE_BROWSER:
        pytest.fail(f"NEWSLETTER_REQUIRE_BROWSER=1 but {CHROMIUM} does not exist")
    pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)")


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "about", "blob"):
        return True
    return parts.hostname in LOCAL_HOSTS


class LiveServer:
    """An ASGI app served by uvicorn in a thread on a free loopback port.

    ``app`` may also be a function of the server's URL, for apps that must know their own
    address (a public base URL that the browser can actually load images from).
    """

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        if isinstance(app, FunctionType):
            app = app(self.url)
        config = uvicorn.Config(
            app,
            log_level="warning",
            ws="none",
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per test module (launching takes about half a second)."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class RecordingPage:
    """A page plus every request it made that was not to the loopback interface."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.offsite: list[str] = []
        page.on("request", self._record)

    def _record(self, request: Any) -> None:
        if not is_local(request.url):
            self.offsite.append(request.url)


@pytest.fixture
def page(browser: Any) -> Iterator[RecordingPage]:
    """A fresh desktop-sized page; ``page.offsite`` lists requests that tried to leave."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        yield RecordingPage(context.new_page())
    finally:
        context.close()


def open_page(browser: Any, *, width: int, height: int = 800) -> RecordingPage:
    """Another page at a given viewport, for the caller to close (``.page.context.close()``)."""
    context = browser.new_context(viewport={"width": width, "height": height})
    return RecordingPage(context.new_page())
