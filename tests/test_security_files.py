"""``/images`` in the public app and the preview serves files under issues/images, nothing else.

Requests go straight through ASGI with the paths a hostile client can send (a test client
would normalise ``..`` away before the app ever saw it).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import unquote

import pytest

from newsletter.config import Settings
from newsletter.web.app import create_app
from newsletter.web.preview import create_preview_app

RAW_PATHS = [
    "/images/../../newsletter.toml",
    "/images/%2e%2e/%2e%2e/newsletter.toml",
    "/images/..%2f..%2fnewsletter.toml",
    "/images/%2E%2E%2F%2E%2E%2Fnewsletter.toml",
    "/images/..%5c..%5cnewsletter.toml",
    "/images//etc/passwd",
    "/images/%2fetc%2fpasswd",
    "/images/leak.png",  # a symlink to ../../newsletter.toml
    "/images/leakdir/newsletter.toml",  # a symlinked directory
]


def _get(app: Any, raw_path: str, host: bytes) -> tuple[int, bytes]:
    status = 0
    body = b""
    requested = False
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()  # a file response listens for the client going away meanwhile
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, body
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")
            if not message.get("more_body"):
                done.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(raw_path),  # what uvicorn hands the app
        "raw_path": raw_path.encode("ascii"),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", host)],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }

    async def run() -> None:
        await app(scope, receive, send)
        done.set()

    asyncio.run(run())
    return status, body


@pytest.fixture
def planted(settings: Settings) -> Settings:
    images = settings.issues_dir / "images"
    config = settings.root / "newsletter.toml"
    assert config.is_file()
    (images / "leak.png").symlink_to(config)
    (images / "leakdir").symlink_to(settings.root, target_is_directory=True)
    return settings


@pytest.mark.parametrize("raw_path", RAW_PATHS)
def test_public_app_serves_nothing_outside_images(planted: Settings, raw_path: str) -> None:
    status, body = _get(create_app(planted), raw_path, b"news.test.example")
    assert status == 404, (raw_path, body[:200])
    assert b"database_url" not in body
    assert b"root:" not in body


@pytest.mark.parametrize("raw_path", RAW_PATHS)
def test_preview_serves_nothing_outside_images(planted: Settings, raw_path: str) -> None:
    app = create_preview_app(planted, watch_files=False)
    status, body = _get(app, raw_path, b"127.0.0.1:8001")
    assert status == 404, (raw_path, body[:200])
    assert b"database_url" not in body


def test_a_real_image_is_served_by_both(planted: Settings) -> None:
    name = next(p.name for p in (planted.issues_dir / "images").glob("*.png") if not p.is_symlink())
    assert _get(create_app(planted), f"/images/{name}", b"news.test.example")[0] == 200
    preview = create_preview_app(planted, watch_files=False)
    assert _get(preview, f"/images/{name}", b"127.0.0.1:8001")[0] == 200
