"""VERP delivery tokens: round trip, opacity, case folding, key rotation and forgery."""

from __future__ import annotations

import base64
import string
import struct

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter.errors import ConfigError
from newsletter.inbound.verp import (
    TOKEN_LENGTH,
    DeliveryRef,
    DeliveryTokens,
    is_token,
    token_in_address,
    verp_address,
)
from newsletter.tokens import TokenPurpose, make_token

KEY = b"current-key-0123456789abcdefghij"
OLD = b"previous-key-0123456789abcdefghi"
ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
ids = st.integers(min_value=0, max_value=2**32 - 1)


@pytest.fixture
def tokens() -> DeliveryTokens:
    return DeliveryTokens([KEY])


def test_round_trip_and_shape(tokens: DeliveryTokens) -> None:
    ref = DeliveryRef(issue_id=7, subscriber_id=1001)
    token = tokens.make(ref)
    assert len(token) == TOKEN_LENGTH
    assert set(token) <= set(ALPHABET)
    assert tokens.read(token) == ref
    # deterministic: every retry of a delivery uses the same envelope sender
    assert tokens.make(ref) == token


def test_envelope_sender_fits_a_local_part(tokens: DeliveryTokens) -> None:
    address = tokens.address(DeliveryRef(2**32 - 1, 2**32 - 1), "millbrook.example")
    local, _, domain = address.rpartition("@")
    assert local.startswith("bounces+")
    assert len(local.encode("ascii")) <= 64
    assert domain == "millbrook.example"
    assert token_in_address(address) == tokens.make(DeliveryRef(2**32 - 1, 2**32 - 1))


@pytest.mark.parametrize(
    "spelling", [str.upper, str.lower, lambda t: t[:16].upper() + t[16:], str.swapcase]
)
def test_case_folded_by_an_mta_still_verifies(tokens: DeliveryTokens, spelling: object) -> None:
    ref = DeliveryRef(3, 42)
    token = tokens.make(ref)
    assert callable(spelling)
    assert tokens.read(spelling(token)) == ref
    assert token_in_address(f"BOUNCES+{token.upper()}@MILLBROOK.EXAMPLE") == token


def test_no_row_id_readable(tokens: DeliveryTokens) -> None:
    # with the ids in clear, the high bytes of consecutive ids would be the same in every
    # token; sealed, every byte position takes many values
    raws = [base64.b32decode(tokens.make(DeliveryRef(7, n)).upper()) for n in range(1000, 1256)]
    for position in range(len(raws[0])):
        assert len({raw[position] for raw in raws}) > 100
    packed = [struct.pack(">I", 7), struct.pack(">I", 1000)]
    assert not any(p in raws[0] for p in packed)


def test_every_single_character_change_is_refused(tokens: DeliveryTokens) -> None:
    token = tokens.make(DeliveryRef(9, 3001))
    for index, char in enumerate(token):
        for replacement in ("a", "7", "q"):
            if replacement != char:
                forged = token[:index] + replacement + token[index + 1 :]
                assert tokens.read(forged) is None


@pytest.mark.parametrize(
    "junk",
    ["", " ", "a" * 31, "a" * 33, "a" * 32 + "=", "0" * 32, "1" * 32, "!" * 32, "é" * 32],
)
def test_junk_matches_nobody(tokens: DeliveryTokens, junk: str) -> None:
    assert tokens.read(junk) is None


def test_another_publications_key_matches_nobody(tokens: DeliveryTokens) -> None:
    other = DeliveryTokens([b"another-publication-key-0123456789"])
    assert tokens.read(other.make(DeliveryRef(7, 1001))) is None


def test_key_rotation_old_tokens_verify_new_ones_are_signed_with_the_current_key() -> None:
    before = DeliveryTokens([OLD])
    after = DeliveryTokens([KEY, OLD])
    ref = DeliveryRef(5, 77)
    old_token = before.make(ref)
    assert after.read(old_token) == ref
    assert after.make(ref) == DeliveryTokens([KEY]).make(ref) != old_token
    # once the old key is dropped, its tokens match nobody
    assert DeliveryTokens([KEY]).read(old_token) is None


def test_other_signed_tokens_do_not_pass() -> None:
    # an unsubscribe token signed with the same secret is of another shape and purpose
    unsubscribe = make_token(KEY, TokenPurpose.UNSUBSCRIBE, "00" * 16, 1, issued_at=0)
    assert DeliveryTokens([KEY]).read(unsubscribe) is None
    assert not is_token(unsubscribe)


@pytest.mark.parametrize("keys", [[], [b""], [b"short"], [KEY, b"0123456789abcde"]])
def test_missing_or_short_keys_are_refused(keys: list[bytes]) -> None:
    with pytest.raises(ConfigError, match="secret_key"):
        DeliveryTokens(keys)


@pytest.mark.parametrize("ref", [DeliveryRef(-1, 1), DeliveryRef(1, 2**32), DeliveryRef(2**40, 0)])
def test_ids_out_of_range_are_refused(tokens: DeliveryTokens, ref: DeliveryRef) -> None:
    with pytest.raises(ValueError, match="out of range"):
        tokens.make(ref)


@pytest.mark.parametrize(
    ("prefix", "domain"),
    [
        ("bounces\r\nBcc: x", "millbrook.example"),
        ("bounces", "millbrook.example\r\nBcc: victim@example.org"),
        ("bounces", "a@b.example"),
        ("bounces", "bad domain.example"),
        ("bounces", "millbrook..example"),
        ("bounces", ""),
        ("x" * 32, "millbrook.example"),
        ("", "millbrook.example"),
        ("bounces+x", "millbrook.example"),
    ],
)
def test_address_refuses_what_could_break_it(prefix: str, domain: str) -> None:
    with pytest.raises(ConfigError):
        verp_address("a" * 32, domain, prefix=prefix)


def test_longest_prefix_that_fits() -> None:
    address = verp_address("a" * 32, "millbrook.example", prefix="p" * 31)
    assert len(address.partition("@")[0]) == 64


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("<bounces+{t}@millbrook.example>", True),
        ("rfc822; bounces+{t}@millbrook.example", True),
        ("Bounces+{T}@Millbrook.Example", True),
        ("bounces-{t}@millbrook.example", False),
        ("bounces+{t}x@millbrook.example", False),
        ("{t}", False),
    ],
)
def test_token_in_address(tokens: DeliveryTokens, text: str, found: bool) -> None:
    token = tokens.make(DeliveryRef(1, 2))
    value = text.format(t=token, T=token.upper())
    assert token_in_address(value) == (token if found else None)


@hypothesis_settings(max_examples=200, deadline=None)
@given(issue=ids, subscriber=ids)
def test_round_trip_any_ids(issue: int, subscriber: int) -> None:
    tokens = DeliveryTokens([KEY, OLD])
    ref = DeliveryRef(issue, subscriber)
    assert tokens.read(tokens.make(ref)) == ref


@hypothesis_settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=string.ascii_letters + string.digits + "=+@ ", max_size=40))
def test_any_string_reads_as_nobody_or_a_row(text: str) -> None:
    # never raises; a random string of the right shape verifying would be a forgery (2^-88)
    assert DeliveryTokens([KEY]).read(text) is None
