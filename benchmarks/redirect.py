"""Redirect benchmark: ``/r/<token>`` under 200 concurrent clients, against a bare Starlette one.

Each round serves an app with uvicorn in a subprocess (one worker, 127.0.0.1) and loads it
with Debian's ``wrk`` (``apt-get install wrk``): 200 connections, one thread, the tokens of
the issue's links taken in turn. The reference is a bare Starlette app whose endpoint answers
the same 302 with a fixed Location, served and loaded the same way in the same run. Both apps
are wrapped in the same timing middleware, which gives the server time (the handler and
Starlette's routing, not the socket) as p50 and p99.

    python benchmarks/redirect.py                      # SQLite
    python benchmarks/redirect.py --postgres postgresql://postgres@127.0.0.1:5432/test
    python benchmarks/redirect.py --seconds 20 --rounds 3

The real app records every click (the buffer is flushed by its background task); the hits
written are counted at the end and must equal the requests wrk made.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SECRET = "benchmark-secret-key-0123456789abcdef"
CONFIG = """
database_url = "{database_url}"
issues_dir = "issues"
templates_dir = "{templates}"

[publication]
name = "Bench Weekly"
sender = "Bench <bench@bench.example>"
postal_address = "1 Bench Street"
base_url = "http://127.0.0.1:{port}"

[lists.weekly]
name = "Bench Weekly"

[analytics]
clicks = true
"""
LINKS = 20
LUA = """
local tokens = {{{tokens}}}
local i = 0
request = function()
  i = i + 1
  local agent = {{["User-Agent"] = "Mozilla/5.0 (X11; Linux) Firefox/128.0"}}
  return wrk.format("GET", "/r/" .. tokens[(i % #tokens) + 1], agent)
end
"""


# --- the two servers (run in a subprocess) ------------------------------------------------------


class Timing:
    """ASGI middleware: how long each request spends in the app, kept for ``/__timings``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.times: list[float] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/__timings":
            body = json.dumps(self.times).encode()
            self.times = []
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.times.append(time.perf_counter() - start)
            await send(message)

        await self.app(scope, receive, timed)


def bare_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def redirect(request: Any) -> Response:
        return Response(
            status_code=302,
            headers={"location": "https://millbrook.example/explainers/barriers"},
        )

    return Starlette(routes=[Route("/r/{token}", redirect, methods=["GET", "HEAD"])])


def real_app(config: Path) -> Any:
    from newsletter.config import load_settings
    from newsletter.store.database import make_engine
    from newsletter.web.app import create_app

    settings = load_settings(config, environ={"NEWSLETTER_SECRET_KEY": SECRET})
    return create_app(settings, engine=make_engine(settings.database_url, pool_size=10))


def serve(kind: str, config: Path, port: int) -> None:
    import uvicorn

    app = Timing(bare_app() if kind == "bare" else real_app(config))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- the driver -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(root: Path, database_url: str, port: int) -> tuple[Path, list[str]]:
    """A project whose store holds one tracked send with ``LINKS`` links; their tokens."""
    from newsletter.config import load_settings
    from newsletter.links import HTML, Link
    from newsletter.store.analytics import Tracking, record_tracking
    from newsletter.store.database import initialise, make_engine
    from newsletter.store.issues import start_issue
    from newsletter.tokens import LinkKind, make_link_token

    (root / "issues").mkdir(parents=True, exist_ok=True)
    config = root / "newsletter.toml"
    config.write_text(
        CONFIG.format(database_url=database_url, templates=REPO / "templates", port=port),
        encoding="utf-8",
    )
    settings = load_settings(config, environ={"NEWSLETTER_SECRET_KEY": SECRET})
    engine = make_engine(settings.database_url)
    ids = initialise(engine, settings)
    links = [
        Link(i, HTML, f"https://millbrook.example/story/{i}?utm=x&y={i}", f"Story {i}")
        for i in range(1, LINKS + 1)
    ]
    now = datetime.now(UTC)
    ref, _ = start_issue(
        engine,
        slug="bench-" + secrets.token_hex(4),
        list_id=ids["weekly"],
        list_slug="weekly",
        title="Bench",
        subject="Bench",
        issue_date=now.date(),
        html="<p>bench</p>",
        text="bench",
        now=now,
        on_create=lambda conn, iid: record_tracking(
            conn, iid, Tracking(clicks=True), links, now=now
        ),
    )
    engine.dispose()
    key = SECRET.encode()
    return config, [make_link_token(key, LinkKind.CLICK, ref.id, link.position) for link in links]


def count_hits(database_url: str) -> int:
    from sqlalchemy import func, select

    from newsletter.store.database import make_engine
    from newsletter.store.schema import hits

    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(hits)).scalar_one())
    finally:
        engine.dispose()


def wait_for(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the server did not start")


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(port: int, script: Path, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.MULTILINE))
    if set(latency) != {"50", "99"}:
        raise RuntimeError(f"wrk gave no latency distribution:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "p50_ms": _ms(latency["50"]),
        "p99_ms": _ms(latency["99"]),
        "rps": rps,
        "requests": requests,
        "bad": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",  # type: ignore[dict-item]
    }


def one_round(
    kind: str, config: Path, tokens: list[str], seconds: int, connections: int, tmp: Path
) -> dict[str, Any]:
    port = free_port()
    # the app's base URL names its own port only for links it builds; the redirect ignores it
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--config", str(config), "--port", str(port)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        wait_for(port, proc)
        script = tmp / "tokens.lua"
        script.write_text(LUA.format(tokens=", ".join(f'"{t}"' for t in tokens)), encoding="utf-8")
        # a short warm-up: connections, the link table's cache, the database pool
        run_wrk(port, script, 2, connections)
        urllib.request.urlopen(f"http://127.0.0.1:{port}/__timings").read()
        result: dict[str, Any] = run_wrk(port, script, seconds, connections)
        times = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/__timings").read())
        times.sort()
        result["server_p50_ms"] = statistics.median(times) * 1000
        result["server_p99_ms"] = times[int(len(times) * 0.99)] * 1000
        return result
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def bench(database_url: str, label: str, args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="nl-redirect-"))
    try:
        config, tokens = prepare(tmp, database_url.format(tmp=tmp), free_port())
        url = database_url.format(tmp=tmp)
        before = count_hits(url)
        rounds: dict[str, list[dict[str, Any]]] = {"bare": [], "app": []}
        for _ in range(args.rounds):
            # alternate, so a change in the machine's load falls on both alike
            for kind in ("bare", "app"):
                rounds[kind].append(
                    one_round(kind, config, tokens, args.seconds, args.connections, tmp)
                )
        made = sum(r["requests"] for r in rounds["app"])
        warmups = count_hits(url) - before - made
        print(f"\n{label}: {args.connections} connections, {args.seconds} s x {args.rounds} rounds")
        print(
            f"  {'':<22}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>10}{'server p50':>12}{'server p99':>12}"
        )
        best: dict[str, dict[str, Any]] = {}
        for kind, name in (("bare", "bare Starlette 302"), ("app", "newsletter /r/<token>")):
            r = max(rounds[kind], key=lambda x: x["rps"])
            best[kind] = r
            print(
                f"  {name:<22}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['rps']:>10.0f}"
                f"{r['server_p50_ms']:>11.3f}{r['server_p99_ms']:>11.3f}"
            )
            bad = sum(x["bad"] for x in rounds[kind])
            if bad or any(x["socket_errors"] for x in rounds[kind]):
                errors = [x["socket_errors"] for x in rounds[kind]]
                print(f"    (non-3xx: {bad}; socket errors: {errors})")
        a, b = best["app"], best["bare"]
        rps, p50, p99 = a["rps"] / b["rps"], a["p50_ms"] / b["p50_ms"], a["p99_ms"] / b["p99_ms"]
        print(f"  ratio app/bare: req/s {rps:.2f}, p50 {p50:.2f}, p99 {p99:.2f}")
        for kind in ("bare", "app"):
            each = ", ".join(f"{x['rps']:.0f}" for x in rounds[kind])
            print(f"  every round, req/s, {kind}: {each}")
        print(f"  clicks written to the store: {made} measured + {warmups} warm-up (every request)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--serve", choices=["bare", "app"])
    parser.add_argument("--config", type=Path)
    parser.add_argument("--port", type=int)
    parser.add_argument("--postgres", help="also run on this PostgreSQL URL (a scratch schema)")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=200)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.config, args.port)
        return
    if not shutil.which("wrk"):
        sys.exit("needs wrk (apt-get install wrk)")
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    bench("sqlite:///{tmp}/bench.db", "SQLite", args)
    if args.postgres:
        schema = "bench_" + secrets.token_hex(4)
        from sqlalchemy import create_engine, text

        admin = create_engine(args.postgres.replace("postgresql://", "postgresql+psycopg://", 1))
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        try:
            sep = "&" if "?" in args.postgres else "?"
            bench(f"{args.postgres}{sep}options=-csearch_path%3D{schema}", "PostgreSQL", args)
        finally:
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()


if __name__ == "__main__":
    main()
