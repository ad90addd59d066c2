"""Delivery benchmark: message build time, end-to-end throughput, and memory at scale.

Needs Debian's postfix for ``/usr/sbin/smtp-sink`` and ``/usr/sbin/smtp-source``.

    python benchmarks/send.py                 # build + throughput (1, 8, 32 connections) + 100k
    python benchmarks/send.py --scale 1000000 # also a million recipients (about 15 minutes)
    python benchmarks/send.py --dkim-only     # DKIM: signed and unsigned sends, same run

The DKIM rows send the same issue unsigned and signed (``[dkim]`` with a fresh RSA-2048 key,
``--ed25519`` adds the second signature), alternating round by round so machine load hits both
alike, each next to ``smtp-source`` into the same sink; they print msg/s, the signed/unsigned
ratio (goal >= 0.8) and the ms per message the signer costs on one thread.

Figures are printed next to a reference measured in the same run: ``build_email_message`` for
the build, ``smtp-source`` into the same ``smtp-sink`` with the same message size for throughput.
"""

from __future__ import annotations

import argparse
import email.policy
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from newsletter.config import Settings, load_settings  # noqa: E402
from newsletter.message import MessageTemplate, Personalization, build_email_message  # noqa: E402

ISSUE = REPO / "issues" / "2026-11-20-flood-barrier-vote.md"
SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"
SECRET = "benchmark-secret-key-0123456789abcdef"


def settings_for(
    root: Path, database_url: str, smtp_url: str, connections: int, *, dkim: str = ""
) -> Settings:
    """Settings for a run under ``root``; ``dkim`` "rsa" or "rsa+ed25519" signs (keys made in
    ``root`` once)."""
    config = (REPO / "newsletter.toml").read_text(encoding="utf-8")
    config = config.replace(
        'database_url = "sqlite:///newsletter.db"', f'database_url = "{database_url}"'
    )
    config = config.replace('smtp_url = "smtp://127.0.0.1:8025"', f'smtp_url = "{smtp_url}"')
    config = config.replace('issues_dir = "issues"', f'issues_dir = "{REPO / "issues"}"')
    config = config.replace(
        'templates_dir = "templates"', f'templates_dir = "{REPO / "templates"}"'
    )
    config = config.replace("connections = 4", f"connections = {connections}")
    config = config.replace("recycle_after = 1000", "recycle_after = 100000")
    if dkim:
        config += dkim_table(root, ed25519="ed25519" in dkim)
    path = root / "newsletter.toml"
    path.write_text(config, encoding="utf-8")
    return load_settings(path, environ={"NEWSLETTER_SECRET_KEY": SECRET})


def dkim_table(root: Path, *, ed25519: bool) -> str:
    """A ``[dkim]`` table for the sample's sender domain, with keys written under ``root``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519 as ed
    from cryptography.hazmat.primitives.asymmetric import rsa

    def write(name: str, make) -> Path:  # type: ignore[no-untyped-def]
        path = root / name
        if not path.exists():
            path.write_bytes(
                make().private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        return path

    key = write("dkim-rsa.pem", lambda: rsa.generate_private_key(65537, 2048))
    table = f'\n[dkim]\nkey_path = "{key}"\nselector = "news"\ndomain = "millbrook.example"\n'
    if ed25519:
        ed_key = write("dkim-ed.pem", ed.Ed25519PrivateKey.generate)
        table += f'ed25519_key_path = "{ed_key}"\ned25519_selector = "ed"\n'
    return table


def rendered_issue(settings: Settings):  # type: ignore[no-untyped-def]
    from newsletter.issues import load_issue
    from newsletter.rendering import Renderer

    return Renderer(settings).render(load_issue(ISSUE, settings))


# --- 1. build -------------------------------------------------------------------------------


def bench_build(settings: Settings, n: int = 3000) -> dict[str, float]:
    from newsletter.tokens import TokenPurpose, make_token
    from newsletter.urls import unsubscribe_mailto, unsubscribe_url

    rendered = rendered_issue(settings)
    mailing_list = settings.mailing_list(None)
    people = []
    for i in range(n):
        token = make_token(settings.secret_key, TokenPurpose.UNSUBSCRIBE, secrets.token_hex(16), 1)
        people.append(
            Personalization(
                to=f"reader{i}@example.org",
                name=f"Reader Number {i}",
                unsubscribe_url=unsubscribe_url(settings.publication.base_url, token),
                unsubscribe_mailto=unsubscribe_mailto("millbrook.example", token),
                message_id=f"<1.{i}.abcdef@millbrook.example>",
            )
        )
    template = MessageTemplate(rendered, settings, mailing_list)
    start = time.perf_counter()
    for p in people:
        template.render(p)
    splice = (time.perf_counter() - start) / n
    ref_n = max(50, n // 20)
    start = time.perf_counter()
    for p in people[:ref_n]:
        build_email_message(
            rendered,
            settings,
            mailing_list,
            to=f"{p.name} <{p.to}>",
            unsubscribe_url=p.unsubscribe_url,
            unsubscribe_mailto=p.unsubscribe_mailto,
            message_id=p.message_id,
        ).as_bytes(policy=email.policy.SMTP)
    reference = (time.perf_counter() - start) / ref_n
    size = len(template.render(people[0]))
    return {"splice_us": splice * 1e6, "reference_us": reference * 1e6, "size": size}


# --- 2. throughput --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SmtpSink:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SmtpSink:
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.proc = subprocess.Popen(
            [SMTP_SINK, *user, f"127.0.0.1:{self.port}", "1000"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait()


def populate(database_url: str, settings: Settings, n: int) -> None:
    """``n`` confirmed subscribers of the default list, inserted in chunks (not timed)."""
    from sqlalchemy import insert

    from newsletter.store.database import make_engine, migrate
    from newsletter.store.schema import subscribers, subscriptions
    from newsletter.store.subscribers import ensure_lists

    engine = make_engine(database_url)
    migrate(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        list_id = ensure_lists(conn, settings)["weekly"]
    chunk = 20000
    for start in range(0, n, chunk):
        ids = range(start + 1, min(n, start + chunk) + 1)
        with engine.begin() as conn:
            conn.execute(
                insert(subscribers),
                [
                    {
                        "id": i,
                        "uid": secrets.token_hex(16),
                        "email": f"reader{i}@example.org",
                        "email_normalized": f"reader{i}@example.org",
                        "name": f"Reader {i}",
                        "attributes": {},
                        "created_at": now,
                        "confirmed_at": now,
                    }
                    for i in ids
                ],
            )
            conn.execute(
                insert(subscriptions),
                [
                    {
                        "subscriber_id": i,
                        "list_id": list_id,
                        "status": "confirmed",
                        "created_at": now,
                        "confirmed_at": now,
                    }
                    for i in ids
                ],
            )
    engine.dispose()


def send_child(
    root: Path, database_url: str, smtp_url: str, connections: int, *, dkim: str = ""
) -> dict[str, float]:
    """Run the real send in a fresh process; return its duration, rate and peak RSS."""
    code = f"""
import json, resource, sys, time
sys.path.insert(0, {str(REPO)!r})
from benchmarks.send import settings_for, ISSUE
from pathlib import Path
from newsletter.sending import run_send
from newsletter.store.database import make_engine
settings = settings_for(
    Path({str(root)!r}), {database_url!r}, {smtp_url!r}, {connections}, dkim={dkim!r}
)
engine = make_engine({database_url!r})
start = time.perf_counter()
report = run_send(settings, engine, ISSUE)
elapsed = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_SELF)
# the DKIM signer process, waited for when the send ends
children = resource.getrusage(resource.RUSAGE_CHILDREN)
rss = usage.ru_maxrss / 1024
print(json.dumps({{"sent": report.sent, "seconds": elapsed, "rss_mb": rss,
                   "cpu_s": usage.ru_utime + usage.ru_stime,
                   "signer_cpu_s": children.ru_utime + children.ru_stime,
                   "finished": report.finished}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    result["rate"] = result["sent"] / result["seconds"]
    return result


def bench_source(port: int, sessions: int, messages: int, size: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            SMTP_SOURCE,
            "-s",
            str(sessions),
            "-m",
            str(messages),
            "-l",
            str(size),
            "-f",
            "weekly@millbrook.example",
            "-t",
            "reader@example.org",
            f"127.0.0.1:{port}",
        ],
        check=True,
    )
    return messages / (time.perf_counter() - start)


def bench_throughput(work: Path, recipients: int, size: int) -> list[dict[str, float]]:
    rows = []
    for connections in (1, 8, 32):
        root = work / f"tp{connections}"
        root.mkdir()
        url = f"sqlite:///{root / 'newsletter.db'}"
        with SmtpSink() as sink:
            smtp_url = f"smtp://127.0.0.1:{sink.port}"
            settings = settings_for(root, url, smtp_url, connections)
            populate(url, settings, recipients)
            ours = send_child(root, url, smtp_url, connections)
            reference = bench_source(sink.port, connections, recipients, size)
        rows.append({"connections": connections, **ours, "source_rate": reference})
        print(
            f"  {connections:>2} connections: {ours['rate']:7.0f} msg/s "
            f"(smtp-source {reference:7.0f} msg/s, ratio {ours['rate'] / reference:.2f}), "
            f"{ours['sent']:.0f} sent in {ours['seconds']:.1f} s",
            flush=True,
        )
    return rows


# --- 3. DKIM: signed against unsigned ------------------------------------------------------


def readers(n: int) -> list[Personalization]:
    """``n`` recipients with tokens of the real lengths."""
    return [
        Personalization(
            to=f"reader{i}@example.org",
            name=f"Reader {i}",
            unsubscribe_url=f"https://millbrook.example/unsubscribe/{secrets.token_urlsafe(40)}",
            unsubscribe_mailto=f"mailto:unsubscribe@millbrook.example?subject={i}",
            message_id=f"<{i}.{secrets.token_hex(8)}@millbrook.example>",
        )
        for i in range(n)
    ]


def bench_signing(settings: Settings, kind: str, n: int = 400) -> tuple[float, float]:
    """Milliseconds per message, wall clock and CPU (the process's, all threads), to render a
    copy and have its signature made (``IssueSigner.sign`` and the future's result, one at a
    time). CPU time says what signing costs even on a machine busy with other work."""
    from newsletter.dkim_signers import IssueSigner

    rendered = rendered_issue(settings)
    template = MessageTemplate(rendered, settings, settings.mailing_list(None))
    signer = IssueSigner.from_config(settings.dkim)
    assert signer is not None, kind
    people = readers(n)
    try:
        signer.sign(template, people[0])[1].result()  # the per-issue template, not timed
        start, cpu = time.perf_counter(), time.process_time()
        for person in people:
            signer.sign(template, person)[1].result()
        wall_ms = (time.perf_counter() - start) / n * 1000
        return wall_ms, (time.process_time() - cpu) / n * 1000
    finally:
        signer.close()


def bench_signing_process(settings: Settings, kind: str, n: int = 2000) -> tuple[float, float]:
    """Milliseconds of CPU per message through the signer process, as a send signs: the
    sending process's (render, hand-off, answers) and the signer process's (read from
    ``/proc``, its start-up left out), copies asked for 32 per pass of the event loop."""
    import asyncio

    from newsletter.dkim_signers import IssueSigner

    rendered = rendered_issue(settings)
    template = MessageTemplate(rendered, settings, settings.mailing_list(None))
    signer = IssueSigner.from_config(settings.dkim)
    assert signer is not None, kind
    people = readers(n)

    def child_cpu(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def run() -> tuple[float, float]:
        await asyncio.wrap_future(signer.sign(template, people[0])[1])  # start-up, not timed
        process = signer.process
        assert process is not None, "no signer process (one core?)"
        cpu, theirs = time.process_time(), child_cpu(process.pid)
        futures = []
        for i, person in enumerate(people):
            futures.append(signer.sign(template, person)[1])
            if i % 32 == 31:
                await asyncio.sleep(0)
        for future in futures:
            await asyncio.wrap_future(future)
        ours_ms = (time.process_time() - cpu) / n * 1000
        return ours_ms, (child_cpu(process.pid) - theirs) / n * 1000

    try:
        return asyncio.run(run())
    finally:
        signer.close()


def bench_dkim(
    work: Path, recipients: int, size: int, connections: int, rounds: int, kind: str
) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {"unsigned": [], "signed": []}
    for round_ in range(rounds):
        order = ("unsigned", "signed") if round_ % 2 == 0 else ("signed", "unsigned")
        for mode in order:
            root = work / f"dkim-{mode}-{round_}"
            root.mkdir()
            url = f"sqlite:///{root / 'newsletter.db'}"
            dkim = kind if mode == "signed" else ""
            with SmtpSink() as sink:
                smtp_url = f"smtp://127.0.0.1:{sink.port}"
                settings = settings_for(root, url, smtp_url, connections, dkim=dkim)
                populate(url, settings, recipients)
                ours = send_child(root, url, smtp_url, connections, dkim=dkim)
                reference = bench_source(sink.port, connections, recipients, size)
            rates[mode].append(ours["rate"])
            # CPU of the whole sending process (loop and ledger threads, start-up), and of
            # the DKIM signer process beside it (its start-up included)
            cpu_ms = ours["cpu_s"] / ours["sent"] * 1000
            signer_ms = ours.get("signer_cpu_s", 0.0) / ours["sent"] * 1000
            print(
                f"  round {round_ + 1} {mode:>8} ({kind if dkim else 'no DKIM'}), "
                f"{connections} connections: {ours['rate']:6.0f} msg/s "
                f"(smtp-source {reference:6.0f} msg/s, ratio {ours['rate'] / reference:.2f}), "
                f"{ours['sent']:.0f} sent in {ours['seconds']:.1f} s, "
                f"CPU {cpu_ms:.2f} ms/message"
                + (f" + signer process {signer_ms:.2f}" if signer_ms else "")
                + f", load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    signed = statistics.median(rates["signed"])
    unsigned = statistics.median(rates["unsigned"])
    pairs = [s / u for s, u in zip(rates["signed"], rates["unsigned"], strict=True)]
    print(
        f"  median signed {signed:.0f} msg/s / unsigned {unsigned:.0f} msg/s = "
        f"{signed / unsigned:.2f}x (goal >= 0.8); per round "
        + ", ".join(f"{r:.2f}x" for r in pairs),
        flush=True,
    )
    return rates


def bench_scale(work: Path, n: int, connections: int) -> dict[str, float]:
    root = work / f"scale{n}"
    root.mkdir()
    url = f"sqlite:///{root / 'newsletter.db'}"
    with SmtpSink() as sink:
        smtp_url = f"smtp://127.0.0.1:{sink.port}"
        settings = settings_for(root, url, smtp_url, connections)
        t = time.perf_counter()
        populate(url, settings, n)
        print(f"  ({n} subscribers inserted in {time.perf_counter() - t:.0f} s, not timed)")
        result = send_child(root, url, smtp_url, connections)
    print(
        f"  {n:>9} recipients: {result['seconds']:7.1f} s, {result['rate']:6.0f} msg/s, "
        f"peak RSS {result['rss_mb']:.0f} MB, finished={bool(result['finished'])}",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--throughput-recipients", type=int, default=5000)
    parser.add_argument(
        "--scale",
        type=int,
        action="append",
        default=None,
        help="recipient counts for the time/RSS run (default: 100000)",
    )
    parser.add_argument("--scale-connections", type=int, default=8)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--dkim-only", action="store_true", help="only the build and the DKIM rows")
    parser.add_argument("--dkim-recipients", type=int, default=5000)
    parser.add_argument("--dkim-connections", type=int, default=8)
    parser.add_argument("--dkim-rounds", type=int, default=2)
    parser.add_argument(
        "--ed25519", action="store_true", help="sign with Ed25519 too, beside RSA-2048"
    )
    parser.add_argument("--skip-dkim", action="store_true")
    args = parser.parse_args()
    for tool in (SMTP_SINK, SMTP_SOURCE):
        if not Path(tool).exists():
            sys.exit(f"{tool} not found: apt-get install postfix")

    print(f"CPU cores: {os.cpu_count()}, Python {sys.version.split()[0]}")
    work = Path(tempfile.mkdtemp(prefix="newsletter-bench-"))
    try:
        settings = settings_for(work, f"sqlite:///{work / 'x.db'}", "smtp://127.0.0.1:1", 1)
        build = bench_build(settings)
        ratio = build["reference_us"] / build["splice_us"]
        print(
            f"build: splice {build['splice_us']:.1f} µs/message, build_email_message "
            f"{build['reference_us']:.0f} µs/message (ratio {ratio:.0f}x); "
            f"message {build['size'] / 1024:.0f} KiB"
        )
        if not args.skip_dkim:
            kind = "rsa+ed25519" if args.ed25519 else "rsa"
            keys = work / "keys"
            keys.mkdir()
            signing = settings_for(
                keys, f"sqlite:///{keys / 'x.db'}", "smtp://127.0.0.1:1", 1, dkim=kind
            )
            wall_ms, cpu_ms = bench_signing(signing, kind)
            print(
                f"DKIM ({kind}): render + sign in threads, one at a time: {wall_ms:.3f} "
                f"ms/message wall clock, {cpu_ms:.3f} ms CPU (goal <= 0.5 ms)"
            )
            ours_ms, theirs_ms = bench_signing_process(signing, kind)
            print(
                f"DKIM ({kind}): through the signer process: {theirs_ms:.3f} ms CPU/message "
                f"in the signer, {ours_ms:.3f} in the sending process (render, hand-off)"
            )
            print(
                f"DKIM: signed and unsigned sends into smtp-sink, {args.dkim_recipients} "
                f"messages, {args.dkim_rounds} rounds:"
            )
            bench_dkim(
                work,
                args.dkim_recipients,
                int(build["size"]),
                args.dkim_connections,
                args.dkim_rounds,
                kind,
            )
        if args.dkim_only:
            return
        if not args.skip_throughput:
            print(f"throughput into smtp-sink, {args.throughput_recipients} messages:")
            bench_throughput(work, args.throughput_recipients, int(build["size"]))
        print(f"scale ({args.scale_connections} connections, SQLite ledger):")
        for n in args.scale or [100000]:
            bench_scale(work, n, args.scale_connections)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
