"""The inbound corpus: every sample in tests/data/inbound parses to its expected verdict.

``expected.json`` holds, per file, the verdict and everything the intake will act on: the
kind, hard or soft, the detector, each recipient, each token candidate and where it was found,
and the ledger rows the verified tokens name. A token is written ``"issue:subscriber"`` for
one signed with the corpus key, or literally for a foreign or forged one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from newsletter.inbound.model import Report
from newsletter.inbound.reports import parse_report
from newsletter.inbound.verp import DeliveryRef, DeliveryTokens
from newsletter.tokens import TokenPurpose, read_token

CORPUS = Path(__file__).parent / "data" / "inbound"
CORPUS_KEY = b"millbrook-corpus-key-0123456789abcdef"
TOKENS = DeliveryTokens([CORPUS_KEY])
EXPECTED: dict[str, dict[str, Any]] = json.loads((CORPUS / "expected.json").read_text("utf-8"))


def parse(name: str) -> Report:
    return parse_report(
        (CORPUS / name).read_bytes(), envelope_recipient=EXPECTED[name].get("envelope_recipient")
    )


def _token(spec: str) -> str:
    issue, sep, subscriber = spec.partition(":")
    return TOKENS.make(DeliveryRef(int(issue), int(subscriber))) if sep else spec


def _value(item: object) -> object:
    return getattr(item, "value", item)


def test_the_corpus_is_complete() -> None:
    files = {p.name for p in CORPUS.glob("*.eml")}
    assert files == set(EXPECTED)
    assert len(files) >= 40
    kinds = {e["kind"] for e in EXPECTED.values()}
    assert kinds == {
        "bounce",
        "delay",
        "delivered",
        "complaint",
        "feedback",
        "auto-reply",
        "unsubscribe",
        "unknown",
    }


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample(name: str) -> None:
    expected = EXPECTED[name]
    report = parse(name)
    assert report.kind.value == expected["kind"]
    assert _value(report.severity) == expected["severity"]
    assert report.detector.value == expected["detector"]
    assert report.deliveries(TOKENS) == tuple(
        DeliveryRef(*row) for row in expected.get("deliveries", [])
    )
    if "recipients" in expected:
        assert len(report.recipients) == len(expected["recipients"])
        for got, want in zip(report.recipients, expected["recipients"], strict=True):
            assert got.address == want["address"]
            assert got.original == want.get("original")
            assert _value(got.action) == want.get("action")
            assert got.status == want.get("status")
            assert _value(got.severity) == want.get("severity")
            for optional in ("diagnostic", "remote_mta"):
                if optional in want:
                    assert getattr(got, optional) == want[optional]
    if "tokens" in expected:
        assert [(c.token, c.source.value) for c in report.tokens] == [
            (_token(token), source) for token, source in expected["tokens"]
        ]
    for key in ("feedback_type", "auto_reply"):
        assert _value(getattr(report, key)) == expected.get(key)
    if "redacted" in expected:
        assert report.recipient_redacted is expected["redacted"]
    assert report.unsubscribe_token == expected.get("unsubscribe_token")
    if "reporter" in expected:
        assert report.reporter == expected["reporter"]
    if "message_id" in expected:
        assert report.original is not None
        assert report.original.message_id == expected["message_id"]
    if "list_id" in expected:
        assert report.original is not None
        assert report.original.list_id == expected["list_id"]
    if expected.get("problems"):
        assert report.problems
    # idempotency keys are there for every report
    assert len(report.digest) == 64
    # every sample is read step by step, none falls through to the parser's catch-all
    assert not any(p.startswith("unreadable") for p in report.problems), report.problems


def test_unsubscribe_tokens_in_the_corpus_are_real_tokens() -> None:
    for name, expected in EXPECTED.items():
        if expected["kind"] == "unsubscribe":
            token = parse(name).unsubscribe_token
            assert token is not None
            data = read_token(CORPUS_KEY, token, TokenPurpose.UNSUBSCRIBE)
            assert data.list_id in (1, 2)


def test_tokens_verify_under_a_rotated_key_list() -> None:
    rotated = DeliveryTokens([b"the-new-key-after-rotation-0123456", CORPUS_KEY])
    for name, expected in EXPECTED.items():
        rows = tuple(DeliveryRef(*row) for row in expected.get("deliveries", []))
        assert parse(name).deliveries(rotated) == rows, name


def test_auto_replies_and_unsubscribes_are_never_failures() -> None:
    for name, expected in EXPECTED.items():
        if expected["kind"] in ("auto-reply", "unsubscribe", "complaint", "feedback", "unknown"):
            report = parse(name)
            assert report.severity is None, name
            assert all(r.severity is None for r in report.recipients), name


def test_forged_reports_name_an_address_but_link_to_no_row_of_theirs() -> None:
    # a DSN naming a subscriber proves nothing: only a verified token links it to a delivery
    for name in ("forged-dsn-no-token.eml", "forged-dsn-other-key.eml"):
        report = parse(name)
        assert [r.address for r in report.recipients] == ["alice@example.net"]
        assert report.deliveries(TOKENS) == ()
    # a genuine token of the forger's own delivery names that row, not alice's
    report = parse("forged-dsn-other-row.eml")
    assert report.deliveries(TOKENS) == (DeliveryRef(9, 3001),)
    assert [r.address for r in report.recipients] == ["alice@example.net"]


def test_the_same_report_twice_has_the_same_keys() -> None:
    first, second = parse("dsn-postfix-user-unknown.eml"), parse("dsn-postfix-user-unknown.eml")
    assert first == second
    assert first.message_id == "<20260306110009.4R8kQm2vZ1z9sWl@mail.millbrook.example>"
