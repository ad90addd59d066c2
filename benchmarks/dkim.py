"""DKIM benchmark: microseconds per signed message, newsletter.dkim against dkimpy in the same run.

    python benchmarks/dkim.py [--messages 200] [--rounds 15]

Message: the flood-barrier-vote sample (59 KiB per recipient) from ``MessageTemplate``, split into
the pieces ``Signer.template`` takes (the To, Date, Message-ID and List-Unsubscribe lines and
the unsubscribe URL in both bodies per recipient). Rows: the per-template fast path with RSA-2048
and with RSA-2048 + Ed25519, the plain ``Signer.sign`` of a whole message, the bare RSA-2048
private-key operation (the floor), and dkimpy's ``dkim.sign`` on the same message with the same
headers and canonicalisation (the reference). Variants run round-robin, so load on a shared
machine hits them alike; the figure is the median over rounds. Last, the fast path in a thread
pool of two against one thread: cryptography and hashlib release the GIL, so signing can run
beside the event loop.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# this file is named dkim.py too: its folder must not shadow dkimpy's module
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "benchmarks"]
sys.path.insert(0, str(REPO))

import dkim  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils  # noqa: E402
from cryptography.hazmat.primitives.hashes import SHA256  # noqa: E402

from newsletter.config import Settings, load_settings  # noqa: E402
from newsletter.dkim import (  # noqa: E402
    OVERSIGNED,
    SIGNED_IF_PRESENT,
    BodyPiece,
    HeaderPiece,
    Signer,
    SigningKey,
    SigningTemplate,
    Slot,
    split_message,
)
from newsletter.message import MessageTemplate, Personalization  # noqa: E402

ISSUE = REPO / "issues" / "2026-11-20-flood-barrier-vote.md"
SECRET = "benchmark-secret-key-0123456789abcdef"
WHEN = datetime(2026, 11, 20, 11, 0, tzinfo=UTC)
HEADER_SLOTS = {"to": "to", "date": "date", "message-id": "message_id", "list-unsubscribe": "lu"}


def load(root: Path) -> Settings:
    config = (REPO / "newsletter.toml").read_text(encoding="utf-8")
    config = config.replace('issues_dir = "issues"', f'issues_dir = "{REPO / "issues"}"')
    config = config.replace(
        'templates_dir = "templates"', f'templates_dir = "{REPO / "templates"}"'
    )
    path = root / "newsletter.toml"
    path.write_text(config, encoding="utf-8")
    return load_settings(path, environ={"NEWSLETTER_SECRET_KEY": SECRET})


def people(settings: Settings, n: int) -> list[Personalization]:
    from newsletter.tokens import TokenPurpose, make_token
    from newsletter.urls import unsubscribe_mailto, unsubscribe_url

    out = []
    for i in range(n):
        uid = hashlib.sha256(str(i).encode()).hexdigest()[:32]
        token = make_token(settings.secret_key, TokenPurpose.UNSUBSCRIBE, uid, 1)
        out.append(
            Personalization(
                to=f"reader{i}@example.org",
                name=f"Reader Number {i}",
                unsubscribe_url=unsubscribe_url(settings.publication.base_url, token),
                unsubscribe_mailto=unsubscribe_mailto("millbrook.example", token),
                message_id=f"<1.{i}.abcdef@millbrook.example>",
            )
        )
    return out


def url_qp(url: str) -> bytes:
    return b"=\r\n".join(url[i : i + 75].encode("ascii") for i in range(0, len(url), 75))


def signing_template(signer: Signer, message: bytes, url: str) -> SigningTemplate:
    """``message`` as signer pieces: the per-recipient header lines and URLs become slots."""
    headers, body = split_message(message)
    header_pieces: list[HeaderPiece] = [
        (name, Slot(HEADER_SLOTS[name.lower()]) if name.lower() in HEADER_SLOTS else line)
        for name, line in headers
    ]
    segments = body.split(url_qp(url))
    body_pieces: list[BodyPiece] = [segments[0]]
    for segment in segments[1:]:
        body_pieces += [Slot("url"), segment]
    return signer.template(header_pieces, body_pieces)


def values_of(message: bytes, url: str) -> dict[str, bytes]:
    headers, _ = split_message(message)
    values = {HEADER_SLOTS[n.lower()]: line for n, line in headers if n.lower() in HEADER_SLOTS}
    values["url"] = url_qp(url)
    return values


def median_us(
    funcs: dict[str, Callable[[int], None]], per_round: int, rounds: int
) -> dict[str, float]:
    for func in funcs.values():
        func(0)
    samples: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(rounds):
        for name, func in funcs.items():
            start = time.perf_counter()
            for i in range(per_round):
                func(i)
            samples[name].append((time.perf_counter() - start) / per_round * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200, help="recipients per round")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    from newsletter.issues import load_issue
    from newsletter.rendering import Renderer

    with tempfile.TemporaryDirectory() as work:
        settings = load(Path(work))
    rendered = Renderer(settings).render(load_issue(ISSUE, settings))
    template = MessageTemplate(rendered, settings, settings.mailing_list(None))
    recipients = people(settings, args.messages)
    messages = [template.render(p, date=WHEN) for p in recipients]
    values = [values_of(m, p.unsubscribe_url) for m, p in zip(messages, recipients, strict=True)]
    domain = settings.publication.sender.rpartition("@")[2].rstrip(">")

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    rsa_only = Signer(domain, [SigningKey("news", rsa_key)])
    both = Signer(domain, [SigningKey("news", rsa_key), SigningKey("ed", ed_key)])
    fast_rsa = signing_template(rsa_only, messages[0], recipients[0].unsubscribe_url)
    fast_both = signing_template(both, messages[0], recipients[0].unsubscribe_url)
    for fast in (fast_rsa, fast_both):
        assert all(fast.message(v) == m for v, m in zip(values, messages, strict=True))

    # the same h= as ours, so dkimpy hashes and signs the same headers
    header = fast_rsa.signature(values[0])
    h_tag = header.split(b"h=", 1)[1].split(b";", 1)[0]
    include = [name.strip() for name in h_tag.replace(b"\r\n\t", b"").split(b":")]
    assert {n.decode() for n in include} <= set(OVERSIGNED) | set(SIGNED_IF_PRESENT)
    records = {f"{r.name}.".encode(): r.value.encode() for r in both.dns_records()}
    for signed in (
        fast_both.signature(values[1]) + messages[1],
        dkim.sign(
            messages[1],
            b"news",
            domain.encode(),
            pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=include,
        )
        + messages[1],
    ):
        assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: records.get(name))

    digest = hashlib.sha256(b"x").digest()
    pkcs1, prehashed = padding.PKCS1v15(), utils.Prehashed(SHA256())
    n = len(messages)
    results = median_us(
        {
            "fast path, RSA-2048": lambda i: fast_rsa.signature(values[i % n]) and None,
            "fast path, RSA-2048 + Ed25519": lambda i: fast_both.signature(values[i % n]) and None,
            "Signer.sign (whole message), RSA-2048": lambda i: (
                rsa_only.sign(messages[i % n]) and None
            ),
            "RSA-2048 private-key operation alone": lambda i: (
                rsa_key.sign(digest, pkcs1, prehashed) and None
            ),
            "dkimpy dkim.sign, RSA-2048 (reference)": lambda i: (
                dkim.sign(
                    messages[i % n],
                    b"news",
                    domain.encode(),
                    pem,
                    canonicalize=(b"relaxed", b"relaxed"),
                    include_headers=include,
                )
                and None
            ),
        },
        per_round=max(10, args.messages // 4),
        rounds=args.rounds,
    )

    def batch_rate(workers: int) -> float:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            fast_rsa.signatures(values[:20], executor=pool)
            rates = []
            for _ in range(3):
                start = time.perf_counter()
                fast_rsa.signatures(values, executor=pool)
                rates.append(len(values) / (time.perf_counter() - start))
        return statistics.median(rates)

    one, two = batch_rate(1), batch_rate(2)

    reference = results["dkimpy dkim.sign, RSA-2048 (reference)"]
    print(
        f"message: {ISSUE.name}, {len(messages[0]):,} bytes; {os.cpu_count()} CPUs; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'what':48} {'µs/message':>11} {'vs dkimpy':>10}")
    for name, us in results.items():
        print(f"{name:48} {us:11.1f} {reference / us:9.1f}x")
    print(
        f"fast path RSA-2048 in threads: 1 thread {one:,.0f} msg/s, 2 threads {two:,.0f} msg/s "
        f"({two / one:.2f}x)"
    )


if __name__ == "__main__":
    main()
