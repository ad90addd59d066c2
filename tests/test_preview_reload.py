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
        await asyncio.sleep(0)  # one turn of the loop: the waiter is now waiting
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
        # until the stream has sent a keep-alive (every 0.02 s), then the server shuts down
        for _ in range(500):
            if any(": keep-alive" in chunk for chunk in chunks):
                break
            await asyncio.sleep(0.01)
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


async def expect_more(changed: asyncio.Event) -> None:
    """Wait for the next batch of changes (a save can arrive in more than one)."""
    changed.clear()
    await asyncio.wait_for(changed.wait(), 3)


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
        # the watchers are up once a change in the watched folder is reported
        probe = issues / "images" / "probe.png"
        for attempt in range(100):
            probe.write_bytes(str(attempt).encode())
            try:
                await asyncio.wait_for(changed.wait(), 0.1)
                break
            except TimeoutError:
                continue
        seen.clear()

        async def expect(action: str) -> None:
            changed.clear()
            if action == "issue":
                (issues / "2026-01-01-a.md").write_text("x")
            elif action == "image":
                (issues / "images" / "a.png").write_bytes(b"png")
            elif action == "unrelated then issue":
                # the unrelated file first: were it reported, it would be by the time the
                # issue's change is (events come in order), so no waiting for absence
                unrelated.write_text("db")
                (issues / "2026-01-02-b.md").write_text("y")
            elif action == "config":
                # how editors save: a new file renamed over the old one
                tmp = tmp_path / ".newsletter.toml.swp~"
                tmp.write_text("a = 2\n")
                os.replace(tmp, config)
            await asyncio.wait_for(changed.wait(), 3)

        await expect("issue")
        await expect("image")
        await expect("unrelated then issue")
        while (issues / "2026-01-02-b.md").resolve() not in {p for b in seen for p in b}:
            await expect_more(changed)
        await expect("config")
        await expect("config")  # the watch survives the first rename
        stop.set()
        await asyncio.wait_for(task, 5)
        return seen

    seen = asyncio.run(scenario())
    flat = [p for batch in seen for p in batch]
    assert (issues / "2026-01-01-a.md").resolve() in flat
    assert (issues / "images" / "a.png").resolve() in flat
    assert (issues / "2026-01-02-b.md").resolve() in flat
    assert unrelated.resolve() not in flat
    assert sum(config.resolve() in batch for batch in seen) == 2
