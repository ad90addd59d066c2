"""Crash benchmark: ``kill -9`` a real ``newsletter send`` again and again; count lost and repeats.

    python benchmarks/crash.py                       # 20,000 recipients, 10 kills, 4 connections
    python benchmarks/crash.py --recipients 5000 --kills 5

Each round starts ``newsletter send`` in a child process against a counting aiosmtpd sink and
kills it with SIGKILL at a random moment: once the sink has received a random number of
messages (the kill points spread over the whole send), plus up to 50 ms. Every other round
reruns while the killed sender is still a zombie (not reaped). A last run finishes. Printed: lost
(recipients who never got the issue or whose row is not ``sent``; must be 0), duplicates per
kill (the copies the next run repeated; bounded by the connections in DATA at the kill) and the
connections the sink saw.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import SMTP, Envelope, Session  # noqa: E402

from benchmarks.send import ISSUE, SECRET, free_port, populate, settings_for  # noqa: E402


class CountingHandler:
    """Counts each recipient's accepted copies; keeps no message bodies."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.copies: dict[str, int] = {}
        self.received = 0
        self.connections = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.copies[rcpt] = self.copies.get(rcpt, 0) + 1
            self.received += 1
        return "250 2.0.0 OK"

    def duplicates(self) -> int:
        with self.lock:
            return sum(n - 1 for n in self.copies.values())


class CountingSMTP(SMTP):
    async def _handle_client(self) -> None:
        handler = self.event_handler
        if isinstance(handler, CountingHandler):
            with handler.lock:
                handler.connections += 1
        await super()._handle_client()


class CountingController(Controller):
    def factory(self) -> SMTP:
        return CountingSMTP(self.handler, **self.SMTP_kwargs)


def start_send(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": SECRET}
    command = ["send", str(ISSUE), "--no-progress"]
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "newsletter", "--config", str(config), *command],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def ledger_states(database_url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from newsletter.store.database import make_engine
    from newsletter.store.schema import deliveries

    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(deliveries.c.status, func.count()).group_by(deliveries.c.status)
            )
            return {status: int(n) for status, n in rows}
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=20000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    handler = CountingHandler()
    controller = CountingController(
        handler, hostname="127.0.0.1", port=free_port(), decode_data=False, ready_timeout=10
    )
    controller.start()
    with handler.lock:
        handler.connections = 0  # the controller's own readiness check
    work = Path(tempfile.mkdtemp(prefix="newsletter-crash-"))
    zombies: list[subprocess.Popen[bytes]] = []
    try:
        url = f"sqlite:///{work / 'newsletter.db'}"
        smtp_url = f"smtp://127.0.0.1:{controller.port}"
        settings = settings_for(work, url, smtp_url, args.connections)
        config = work / "newsletter.toml"
        populate(url, settings, args.recipients)
        log = work / "send.log"
        print(
            f"{args.recipients} recipients, {args.connections} connections, {args.kills} kills "
            f"(load {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores)",
            flush=True,
        )
        started = time.perf_counter()
        per_kill: list[int] = []
        snapshot = 0
        kills = 0
        margin = max(1, args.recipients // 50)
        points = sorted(rng.sample(range(margin, args.recipients - margin), args.kills))
        for k, point in enumerate(points):
            proc = start_send(config, log)
            while handler.received < point and proc.poll() is None:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.05))
            if proc.poll() is not None:
                print(f"  round {k + 1}: the send finished before the kill", flush=True)
                break
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
            zombie = k % 2 == 1
            if zombie:
                zombies.append(proc)  # reaped at the end: a zombie while the next run starts
            else:
                proc.wait()
            dup = handler.duplicates()
            if k:
                per_kill.append(dup - snapshot)
            snapshot = dup
            print(
                f"  kill {k + 1}{' (left a zombie)' if zombie else ''}: "
                f"{handler.received} messages received so far",
                flush=True,
            )
        final = start_send(config, log)
        code = final.wait()
        if kills:
            per_kill.append(handler.duplicates() - snapshot)
        elapsed = time.perf_counter() - started
        states = ledger_states(url)
        with handler.lock:
            got = set(handler.copies)
        expected = {f"reader{i}@example.org" for i in range(1, args.recipients + 1)}
        lost = len(expected - got) + (args.recipients - states.get("sent", 0))
        print(f"final run exit {code}; ledger {states}; {elapsed:.0f} s in all")
        print(f"lost: {lost}")
        print(
            f"duplicates per kill: {per_kill} (max {max(per_kill, default=0)}, "
            f"total {sum(per_kill)}; bound {args.connections} = connections)"
        )
        print(f"connections opened: {handler.connections}")
        if lost:
            sys.exit(1)
    finally:
        for proc in zombies:
            proc.wait()
        controller.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
