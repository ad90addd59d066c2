"""Live reload machinery: the hub's version tags, the event stream, and real file watching."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.testclient import TestClient

from newsletter.web.reload import ReloadHub, events_endpoint, reload_script, watch


def test_tags_change_on_every_bump_and_differ_between_processes() -> None:
    hub = ReloadHub()
    first = hub.tag
    assert hub.bump() != first
    assert hub.tag != first
    assert ReloadHub().tag != ReloadHub().tag  # a restarted server reloads open pages


def test_wait_returns_at_once_for_an_old_tag_and_wakes_on_bump() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        hub = ReloadHub()
        stale = hub.tag
        hub.bump()
        at_once = await hub.wait(stale, timeout=0.01)
        timed_out = await hub.wait(hub.tag, timeout=0.01)
        waiter = asyncio.create_task(hub.wait(hub.tag, timeout=5))
        await asyncio.sleep(0.01)
        hub.bump()
        woken = await asyncio.wait_for(waiter, 1)
        return at_once, timed_out, woken

    assert asyncio.run(scenario()) == (True, False, True)


def test_stream_sends_reload_for_a_page_rendered_before_a_change() -> None:
    hub = ReloadHub()
    app = Starlette(routes=[Route("/__reload", events_endpoint(hub))])
    rendered_at = hub.tag
    hub.bump()  # a save between rendering the page and opening the stream
    with TestClient(app) as client:
        response = client.get("/__reload", params={"since": rendered_at})
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "event: reload\n" in response.text
    assert f"data: {hub.tag}\n" in response.text


def test_stream_keeps_alive_and_ends_when_the_server_closes() -> None:
    async def scenario() -> str:
        hub = ReloadHub()
        endpoint = events_endpoint(hub, keepalive=0.02)
        chunks: list[str] = []

        async def receive() -> dict[str, object]:
            await asyncio.sleep(10)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, object]) -> None:
            body = message.get("body", b"")
            if message["type"] == "http.response.body" and isinstance(body, bytes):
                chunks.append(body.decode())

        scope = {
            "type": "http",
            "method": "GET",
            "path": "/__reload",
            "query_string": f"since={hub.tag}".encode(),
            "headers": [],
        }
        response = await endpoint(Request(scope, receive))
        task = asyncio.create_task(response(scope, receive, send))
        await asyncio.sleep(0.1)
        hub.close()
        await asyncio.wait_for(task, 1)
        return "".join(chunks)

    text = asyncio.run(scenario())
    assert ": keep-alive" in text
    assert "event: reload" not in text  # closing is not a change to reload for


def test_reload_script_carries_the_tag() -> None:
    hub = ReloadHub()
    script = reload_script(hub)
    assert f'encodeURIComponent("{hub.tag}")' in script
    assert "sessionStorage" in script


def test_watch_reports_edits_new_files_and_a_config_replaced_by_rename(tmp_path: Path) -> None:
    issues = tmp_path / "issues"
    (issues / "images").mkdir(parents=True)
    config = tmp_path / "newsletter.toml"
    config.write_text("a = 1\n")
    unrelated = tmp_path / "newsletter.db"

    async def scenario() -> list[set[Path]]:
        seen: list[set[Path]] = []
        changed = asyncio.Event()

        async def on_change(paths: set[Path]) -> None:
            seen.append(paths)
            changed.set()

        stop = asyncio.Event()
        task = asyncio.create_task(watch([issues], [config], on_change, stop_event=stop))
        await asyncio.sleep(0.3)  # let the watchers start

        async def expect(action: str, timeout: float = 3) -> None:
            changed.clear()
            if action == "issue":
                (issues / "2026-01-01-a.md").write_text("x")
            elif action == "image":
                (issues / "images" / "a.png").write_bytes(b"png")
            elif action == "unrelated":
                unrelated.write_text("db")
            elif action == "config":
                # how editors save: a new file renamed over the old one
                tmp = tmp_path / ".newsletter.toml.swp~"
                tmp.write_text("a = 2\n")
                os.replace(tmp, config)
            await asyncio.wait_for(changed.wait(), timeout)

        await expect("issue")
        await expect("image")
        try:
            await expect("unrelated", timeout=0.5)
        except TimeoutError:
            seen.append({Path("no event for the unrelated file")})
        await expect("config")
        await expect("config")  # the watch survives the first rename
        stop.set()
        await asyncio.wait_for(task, 5)
        return seen

    seen = asyncio.run(scenario())
    flat = [p for batch in seen for p in batch]
    assert (issues / "2026-01-01-a.md").resolve() in flat
    assert (issues / "images" / "a.png").resolve() in flat
    assert unrelated.resolve() not in flat
    assert Path("no event for the unrelated file") in flat
    assert sum(config.resolve() in batch for batch in seen) == 2
