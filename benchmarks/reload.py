"""Live-reload latency of ``newsletter preview``: from saving an issue file to the refreshed page.

Runs the real preview server on a loopback port and drives Debian's Chromium (Playwright). Each
run edits the issue's title, then reads from the browser when the new document started
(``performance.timeOrigin``) and when its ``load`` event ended, which includes both email
iframes; both are wall-clock times, compared with the time the file was written.

Reference, measured in the same run: a plain ``page.reload()`` of the same page (no file change,
render cached), and the render alone (check + render in process, no cache). Goal: the median
save-to-refreshed time under 500 ms.

    /work/venv/bin/python benchmarks/reload.py [--runs 20] [--issue NAME]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from playwright.sync_api import sync_playwright

from newsletter.config import load_settings
from newsletter.web.preview import PreviewState, create_preview_app

REPO = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
CONFIG = """
database_url = "sqlite:///newsletter.db"
smtp_url = "smtp://127.0.0.1:1"

[publication]
name = "The Benchmark Weekly"
sender = "The Benchmark Weekly <weekly@bench.example>"
postal_address = "1 Bench Street"
base_url = "https://news.bench.example"
editor_email = "editor@bench.example"
"""
LOAD_TIMES = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  return {origin: performance.timeOrigin, loadEnd: nav.loadEventEnd, title:
          document.getElementById("title").textContent};
}"""


def serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", ws="none", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{port}"


def ms(values: list[float]) -> str:
    median = statistics.median(values)
    return f"median {median:7.1f} ms   min {min(values):6.1f}   max {max(values):6.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--issue", default="2026-11-20-flood-barrier-vote")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "issues", root / "issues")
        shutil.copytree(REPO / "templates", root / "templates")
        (root / "newsletter.toml").write_text(CONFIG)
        env = {"NEWSLETTER_SECRET_KEY": "benchmark-secret-key-0123456789"}
        settings = load_settings(root / "newsletter.toml", environ=env)
        issue_path = root / "issues" / f"{args.issue}.md"
        original = issue_path.read_text(encoding="utf-8")
        title_line = next(line for line in original.splitlines() if line.startswith("title:"))

        # reference 1: the server's work per save alone (check + render, cache dropped)
        state = PreviewState(settings, None)
        state.preview(args.issue, issue_path)  # warm up templates and MJML
        render_times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            state.files_changed({issue_path})
            state.preview(args.issue, issue_path)
            render_times.append((time.perf_counter() - start) * 1000)

        app = create_preview_app(
            settings, reload_settings=lambda: load_settings(root / "newsletter.toml", environ=env)
        )
        server, thread, url = serve(app)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
                )
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                page.goto(f"{url}/issues/{args.issue}", wait_until="load")
                time.sleep(0.5)  # let the watcher settle

                # reference 2: a plain reload of the same page, nothing changed
                reload_times = []
                for _ in range(args.runs):
                    page.reload(wait_until="load")
                    timing = page.evaluate(LOAD_TIMES)
                    reload_times.append(timing["loadEnd"])

                save_to_nav, save_to_loaded = [], []
                for run in range(args.runs):
                    new_title = f"title: Benchmark run {run}"
                    page.wait_for_timeout(300)  # the SSE stream of the new page is open
                    saved_at = time.time() * 1000
                    issue_path.write_text(original.replace(title_line, new_title, 1))
                    page.wait_for_function(
                        "t => document.getElementById('title') && "
                        "document.getElementById('title').textContent === t",
                        arg=f"Benchmark run {run}",
                        timeout=10_000,
                    )
                    page.wait_for_load_state("load")
                    timing = page.evaluate(LOAD_TIMES)
                    save_to_nav.append(timing["origin"] - saved_at)
                    save_to_loaded.append(timing["origin"] + timing["loadEnd"] - saved_at)

                # the same for a template: the renderer is rebuilt, so this costs more
                template = root / "templates" / "email" / "issue.mjml.j2"
                template_source = template.read_text(encoding="utf-8")
                template_to_loaded = []
                for run in range(max(args.runs // 2, 1)):
                    page.evaluate("() => { window.__notReloaded = true; }")
                    page.wait_for_timeout(300)
                    saved_at = time.time() * 1000
                    template.write_text(template_source + f"{{# run {run} #}}\n")
                    page.wait_for_function(
                        "() => window.__notReloaded === undefined", timeout=10_000
                    )
                    page.wait_for_load_state("load")
                    timing = page.evaluate(LOAD_TIMES)
                    template_to_loaded.append(timing["origin"] + timing["loadEnd"] - saved_at)
                browser.close()
        finally:
            server.should_exit = True
            thread.join(10)

    print(f"live reload of {args.issue}, {args.runs} runs, Chromium headless, 1440x900")
    print(f"  save -> refreshed page loaded     {ms(save_to_loaded)}")
    print(f"    of which save -> navigation     {ms(save_to_nav)}")
    print(f"  template save -> refreshed page   {ms(template_to_loaded)}")
    print(f"  reference: plain page.reload()    {ms(reload_times)}")
    print(f"  reference: server check + render  {ms(render_times)}")
    ratio = statistics.median(save_to_loaded) / statistics.median(reload_times)
    print(f"  ratio save->refreshed / plain reload: {ratio:.2f}x   (goal: under 500 ms)")


if __name__ == "__main__":
    main()
