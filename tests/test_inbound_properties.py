"""Property tests: no bytes, no mutation of a real report and no MIME shape crash the parser.

Work is bounded by construction, and these tests hold the bounds (bytes read, parts walked,
text and line length handed to flufl.bounce), not the time taken: speed lives in
``benchmarks/bounces.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter.inbound import mime, nonstandard
from newsletter.inbound.model import Report, ReportKind, Severity
from newsletter.inbound.reports import parse_report
from newsletter.inbound.verp import is_token

CORPUS = sorted((Path(__file__).parent / "data" / "inbound").glob("*.eml"))
SAMPLES = [p.read_bytes() for p in CORPUS]
SETTINGS = hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
# each example parses half a megabyte twice, or draws a whole MIME tree: fewer of them
FEW = hypothesis_settings(SETTINGS, max_examples=15)
SOME = hypothesis_settings(SETTINGS, max_examples=60)

_FORBIDDEN = {chr(c) for c in range(0x20) if c != 0x09} | {"\x7f", "\u2028", "\u2029"}


def _strings(report: Report) -> list[str]:
    values: list[str] = []

    def collect(item: object) -> None:
        if isinstance(item, str):
            values.append(item)
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            for f in dataclasses.fields(item):
                collect(getattr(item, f.name))
        elif isinstance(item, tuple):
            for element in item:
                collect(element)

    collect(report)
    return values


def assert_sane(report: Report, data: bytes) -> None:
    """What the intake may rely on, whatever the input was."""
    assert isinstance(report.kind, ReportKind)
    # the catch-all is for what nobody foresaw; every input seen here is read step by step
    assert not any(p.startswith("unreadable") for p in report.problems), report.problems
    assert report.digest == hashlib.sha256(data).hexdigest()
    if report.kind not in (ReportKind.BOUNCE, ReportKind.DELAY):
        assert report.severity is None
    if report.kind is ReportKind.BOUNCE:
        assert report.severity in (Severity.HARD, Severity.SOFT)
        assert any(r.severity is not None for r in report.recipients)
    for candidate in report.tokens:
        assert is_token(candidate.token)
    for recipient in report.recipients:
        assert recipient.address
        assert " " not in recipient.address
    # nothing from the input can start a new line where the intake shows or stores it
    for value in _strings(report):
        assert not _FORBIDDEN & set(value), repr(value)


@SETTINGS
@given(data=st.binary(max_size=4096))
def test_arbitrary_bytes(data: bytes) -> None:
    assert_sane(parse_report(data, envelope_recipient="bounces+x@millbrook.example"), data)


@SETTINGS
@given(
    text=st.text(
        alphabet=st.sampled_from("abc:;<>@+=-\r\n\t ./5\x00\u2028é") | st.characters(),
        max_size=2000,
    )
)
def test_arbitrary_text_that_looks_like_headers(text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    assert_sane(parse_report(data), data)


_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 400)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=60)),
    st.tuples(st.just("repeat"), st.integers(0, 10**6), st.integers(1, 300)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(
        st.just("insert"),
        st.integers(0, 10**6),
        st.sampled_from(
            [b"\n\n", b"\r\n", b"--", b"\nContent-Type: message/delivery-status\n\n", b"=?", b":"]
        ),
    ),
)


def _mutate(data: bytes, mutations: list[tuple[str, int, object]]) -> bytes:
    buffer = bytearray(data)
    for kind, where, arg in mutations:
        at = where % (len(buffer) + 1)
        if kind == "flip" and buffer and isinstance(arg, int):
            buffer[at % len(buffer)] ^= arg
        elif kind == "delete" and isinstance(arg, int):
            del buffer[at : at + arg]
        elif kind == "insert" and isinstance(arg, bytes):
            buffer[at:at] = arg
        elif kind == "repeat" and isinstance(arg, int):
            buffer[at:at] = buffer[at : at + arg] * 3
        elif kind == "truncate":
            del buffer[at:]
    return bytes(buffer)


@SETTINGS
@given(
    sample=st.sampled_from(SAMPLES),
    mutations=st.lists(_mutation, min_size=1, max_size=8),
)
def test_mutated_corpus_samples(sample: bytes, mutations: list[tuple[str, int, object]]) -> None:
    data = _mutate(sample, mutations)
    assert_sane(parse_report(data), data)


# --- random MIME structures -----------------------------------------------------------------

LEAF_TYPES = [
    "text/plain",
    "text/html",
    "text/rfc822-headers",
    "message/delivery-status",
    "message/global-delivery-status",
    "message/feedback-report",
    "message/disposition-notification",
    "message/rfc822",
    "message/global-headers",
    "application/octet-stream",
]
MULTIPART_TYPES = [
    "multipart/report; report-type=delivery-status",
    "multipart/report; report-type=feedback-report",
    "multipart/report; report-type=disposition-notification",
    "multipart/mixed",
    "multipart/alternative",
]
FIELD_NAMES = [
    "Final-Recipient",
    "Original-Recipient",
    "Action",
    "Status",
    "Diagnostic-Code",
    "Remote-MTA",
    "Reporting-MTA",
    "Original-Envelope-Id",
    "X-Postfix-Sender",
    "Feedback-Type",
    "Original-Mail-From",
    "Original-Rcpt-To",
    "User-Agent",
    "From",
    "To",
    "Subject",
    "Message-ID",
    "List-Id",
    "Return-Path",
    "X-Newsletter-Delivery",
    "Auto-Submitted",
    "X-Autoreply",
    "Precedence",
    "X-Failed-Recipients",
    "Content-Transfer-Encoding",
    "Delivered-To",
    "Content-Description",
]
FIELD_VALUES = st.one_of(
    st.sampled_from(
        [
            "rfc822; alice@example.net",
            "utf-8; josé@example.net",
            "failed",
            "delayed",
            "delivered",
            "error",
            "5.1.1",
            "4.4.7",
            "9.9.9",
            "smtp; 550 5.1.1 no",
            "abuse",
            "not-spam",
            "auto-replied",
            "base64",
            "quoted-printable",
            "bounces+owsu26iems4mlilvkpzheapmdka2ilmi@millbrook.example",
            "owsu26iems4mlilvkpzheapmdka2ilmi",
            "MAILER-DAEMON@example.org",
            "=?utf-8?b?!!!?=",
            "=?x-unknown?q?=FF?=",
            "Notification",
            "unsubscribe AV8eLTxLWml4h5altMPS4fAAAAABAGlVuQDX0j4XGxSgBgJONmjJrI47",
            "",
        ]
    ),
    st.text(max_size=60),
)
BODY_LINES = st.one_of(
    st.sampled_from(
        [
            "Delivery to the following recipient failed permanently:",
            "     heidi@example.com",
            "<sam@example.org>:",
            "Hi. This is the qmail-send program at example.org.",
            "This is the Postfix program at host example.com.",
            "did not reach the following recipient(s):",
            "uma@example.net on 3/6/2026",
            "MSEXCH:IMS",
            "--- Below this line is a copy of the message.",
            "A message that you sent could not be delivered",
            "",
        ]
    ),
    st.text(max_size=120),
)


def _fields(draw: st.DrawFn) -> list[str]:
    pairs = draw(st.lists(st.tuples(st.sampled_from(FIELD_NAMES), FIELD_VALUES), max_size=6))
    return [f"{name}: {value}" for name, value in pairs]


@st.composite
def mime_tree(draw: st.DrawFn, depth: int = 0) -> str:
    headers = _fields(draw)
    if depth < 3 and draw(st.booleans()):
        kind = draw(st.sampled_from(MULTIPART_TYPES))
        boundary = draw(st.sampled_from(["b", "=_x", "b0", ""])) + str(depth)
        children = draw(st.lists(mime_tree(depth + 1), max_size=3))
        declared = draw(st.sampled_from([boundary, boundary, "other"]))
        head = "\n".join([*headers, f'Content-Type: {kind}; boundary="{declared}"'])
        body = "".join(f"--{boundary}\n{child}\n" for child in children)
        if draw(st.booleans()):
            body += f"--{boundary}--\n"
        return f"{head}\n\n{body}"
    kind = draw(st.sampled_from(LEAF_TYPES))
    blocks = draw(st.lists(st.lists(BODY_LINES, max_size=5), max_size=3))
    inner = "\n\n".join("\n".join(_fields(draw) + block) for block in blocks)
    return "\n".join([*headers, f"Content-Type: {kind}"]) + "\n\n" + inner + "\n"


@SOME
@given(tree=mime_tree(), envelope=st.one_of(st.none(), FIELD_VALUES))
def test_random_mime_structures(tree: str, envelope: str | None) -> None:
    data = tree.encode("utf-8", "surrogatepass")
    assert_sane(parse_report(data, envelope_recipient=envelope), data)


@SOME
@given(tree=mime_tree())
def test_flufl_bounce_sees_a_bounded_view(tree: str) -> None:
    message, _ = mime.parse_message(tree.encode("utf-8", "surrogatepass"))
    view = nonstandard.detector_view(message)
    parts = list(view.walk())
    assert len(parts) <= mime.MAX_PARTS
    text = [p.get_payload() for p in parts if not p.is_multipart()]
    assert sum(len(t) for t in text if isinstance(t, str)) <= nonstandard.MAX_CHARS
    for payload in text:
        if isinstance(payload, str):
            assert all(len(line) <= nonstandard.MAX_LINE for line in payload.split("\n"))


# --- bounded work, structurally ---------------------------------------------------------------


@FEW
@given(sample=st.sampled_from(SAMPLES), tail=st.binary(min_size=1, max_size=64))
def test_nothing_past_the_cap_is_read(sample: bytes, tail: bytes) -> None:
    padding = b"\n" + b"x" * mime.MAX_MESSAGE_BYTES
    first = parse_report(sample + padding)
    second = parse_report(sample + padding + tail)
    assert dataclasses.replace(first, digest="") == dataclasses.replace(second, digest="")
    assert any("only the first" in p for p in first.problems)


def test_huge_and_deep_inputs_are_read_within_the_caps() -> None:
    deep = b'Content-Type: multipart/mixed; boundary="b"\n\n' + b"--b\n" * 200_000
    nested = b'Content-Type: multipart/mixed; boundary="b0"\n\n' + b"".join(
        b'--b%d\nContent-Type: multipart/mixed; boundary="b%d"\n\n' % (i, i + 1)
        for i in range(5000)
    )
    long_line = (
        b"From: MAILER-DAEMON@example.org\n\nA message that you sent could not be delivered\n"
        + b"a" * 400_000
    )
    angle = b"From: x@example.org\nContent-Type: multipart/mixed\n\n" + b"<" * 300_000
    for data in (deep, nested, long_line, angle):
        report = parse_report(data)
        assert_sane(report, data)
        message, _ = mime.parse_message(data)
        assert sum(1 for _ in mime.walk(message)) <= mime.MAX_PARTS
    assert "only the top-level headers were read" in " ".join(parse_report(nested).problems)
