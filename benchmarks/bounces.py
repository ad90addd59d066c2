"""Benchmark: parse a Maildir of 10,000 bounces from disk, reports/s, against the bare stdlib.

    /work/venv/bin/python benchmarks/bounces.py [--count 10000] [--runs 3]

Writes a Maildir of ``--count`` delivery reports made from the bounce, delay and success
samples of ``tests/data/inbound`` (every shape: Postfix, Sendmail, Exchange Online, Gmail,
Yahoo, Amazon SES, OpenSMTPD DSNs, and the non-standard Exim, qmail, old Postfix, legacy
Exchange, Yahoo and Gmail notices that go through flufl.bounce), each with its own delivery
token and Message-ID. Then, per run, reads every file and parses it: ``parse_report`` plus
verifying its tokens (what the intake does before it touches the database). References
measured in the same run over the same files: the bare stdlib ``email.message_from_bytes``,
and ``flufl.bounce.all_failures`` on that (addresses only, no status, no token). Runs are
interleaved and the median is printed; "cpu" is per CPU-second of this process, the fairer
figure on a shared machine. Last, the slowest hostile inputs of the property tests, each
timed against the stdlib parser on the same bytes.
"""

from __future__ import annotations

import argparse
import email
import json
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flufl.bounce import all_failures  # noqa: E402

from newsletter.inbound.reports import parse_report  # noqa: E402
from newsletter.inbound.verp import DeliveryRef, DeliveryTokens  # noqa: E402

CORPUS = ROOT / "tests" / "data" / "inbound"
CORPUS_KEY = b"millbrook-corpus-key-0123456789abcdef"
BENCH_KEY = b"benchmark-key-0123456789abcdefghijkl"


def shapes() -> list[tuple[str, bytes, list[str]]]:
    """(name, bytes, corpus tokens in it) of every delivery report sample with a real token."""
    expected = json.loads((CORPUS / "expected.json").read_text("utf-8"))
    corpus = DeliveryTokens([CORPUS_KEY])
    found = []
    for name, spec in sorted(expected.items()):
        if spec["kind"] not in ("bounce", "delay", "delivered") or not spec.get("deliveries"):
            continue
        tokens = [corpus.make(DeliveryRef(*row)) for row in spec["deliveries"]]
        found.append((name, (CORPUS / name).read_bytes(), tokens))
    return found


def write_maildir(root: Path, count: int, tokens: DeliveryTokens) -> list[str]:
    """A Maildir (``new/``) of ``count`` reports; returns the shape of each file."""
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rnd = random.Random(11)
    available = shapes()
    kinds = []
    for i in range(count):
        name, data, old_tokens = available[i % len(available)]
        fresh = tokens.make(DeliveryRef(100 + i % 50, 10_000 + i)).encode("ascii")
        for old in old_tokens:
            data = data.replace(old.encode("ascii"), fresh).replace(old.upper().encode(), fresh)
        data = data.replace(b"Message-I", b"X-Bench: %d\nMessage-I" % i, 1)
        # unique Maildir names, as a delivery agent writes them
        path = root / "new" / f"{1772794800 + i}.M{rnd.randrange(10**6)}P{i}.bench"
        path.write_bytes(data)
        kinds.append(name)
    return kinds


def timed(files: list[Path], work: Callable[[bytes], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for path in files:
        work(path.read_bytes())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return len(files) / wall, len(files) / cpu


def hostile() -> list[tuple[str, bytes]]:
    dsn = (CORPUS / "dsn-postfix-user-unknown.eml").read_bytes()
    tag = b"From: MAILER-DAEMON@example.org\n\nA message that you sent could not be delivered\n"
    return [
        ("512 KiB of one line after a flufl.bounce start tag", tag + b"a@" * 262_000),
        ("a DSN followed by 4 MiB of junk", dsn + b"x" * 4 * 1024 * 1024),
        (
            "200,000 empty parts",
            b'Content-Type: multipart/mixed; boundary="b"\n\n' + b"--b\n" * 200_000,
        ),
        (
            "5,000 nested multiparts",
            b'Content-Type: multipart/mixed; boundary="b0"\n\n'
            + b"".join(
                b'--b%d\nContent-Type: multipart/mixed; boundary="b%d"\n\n' % (i, i + 1)
                for i in range(5000)
            ),
        ),
        (
            "300,000 '<' in a multipart without boundary",
            b"Content-Type: multipart/mixed\n\n" + b"<" * 300_000,
        ),
        (
            "10,000 DSN recipient blocks",
            dsn.replace(
                b"Final-Recipient",
                b"Final-Recipient: rfc822; x@example.org\nAction: failed\n\n" * 10_000
                + b"Final-Recipient",
                1,
            ),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    tokens = DeliveryTokens([BENCH_KEY])
    with tempfile.TemporaryDirectory(prefix="bounces-bench-") as tmp:
        root = Path(tmp) / "Maildir"
        start = time.perf_counter()
        kinds = write_maildir(root, args.count, tokens)
        print(
            f"wrote {args.count} reports ({len(set(kinds))} shapes) in "
            f"{time.perf_counter() - start:.1f} s"
        )
        files = sorted((root / "new").iterdir())
        size = sum(p.stat().st_size for p in files)
        print(f"{size / len(files) / 1024:.1f} KiB per report on average")

        # correctness first: every report is a delivery report and names its row
        verdicts: Counter[str] = Counter()
        unmatched = 0
        for path in files:
            report = parse_report(path.read_bytes())
            verdicts[f"{report.kind.value}/{report.detector.value}"] += 1
            if not report.deliveries(tokens):
                unmatched += 1
        print("verdicts:", dict(sorted(verdicts.items())), "unmatched:", unmatched)

        def ours(data: bytes) -> object:
            return parse_report(data).deliveries(tokens)

        def stdlib(data: bytes) -> object:
            return email.message_from_bytes(data)

        def flufl(data: bytes) -> object:
            return all_failures(email.message_from_bytes(data))

        results: dict[str, list[tuple[float, float]]] = {
            "parse_report": [],
            "stdlib": [],
            "flufl": [],
        }
        for _ in range(args.runs):
            results["stdlib"].append(timed(files, stdlib))
            results["parse_report"].append(timed(files, ours))
            results["flufl"].append(timed(files, flufl))
        medians = {
            name: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
            for name, runs in results.items()
        }
        print(f"\n{'what':<58} {'reports/s':>10} {'per cpu-s':>10}")
        labels = {
            "stdlib": "reference: email.message_from_bytes",
            "flufl": "reference: flufl.bounce.all_failures(message_from_bytes)",
            "parse_report": "parse_report + token verification",
        }
        for name in ("stdlib", "flufl", "parse_report"):
            wall, cpu = medians[name]
            print(f"{labels[name]:<58} {wall:>10,.0f} {cpu:>10,.0f}")
        ratio = medians["parse_report"][0] / medians["stdlib"][0]
        print(
            f"\nratio parse_report / stdlib parse: {ratio:.2f}x "
            f"(per cpu-s {medians['parse_report'][1] / medians['stdlib'][1]:.2f}x)"
        )
        met = "met" if medians["parse_report"][0] >= 1000 else "NOT met"
        print(f"goal >= 1,000 reports/s end to end: {met}")

    print(f"\n{'hostile input':<50} {'bytes':>9} {'parse_report':>13} {'stdlib':>9}")
    for label, data in hostile():
        start = time.perf_counter()
        report = parse_report(data)
        ours_ms = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        try:
            email.message_from_bytes(data)
            ref = f"{(time.perf_counter() - start) * 1000:7.1f} ms"
        except RecursionError:
            ref = "raises"
        print(f"{label:<50} {len(data):>9,} {ours_ms:>10.1f} ms {ref:>9}  -> {report.kind.value}")


if __name__ == "__main__":
    main()
