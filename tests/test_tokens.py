"""Tokens are opaque, signed, and refuse every kind of tampering."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.errors import TokenError
from newsletter.tokens import TokenPurpose, make_token, new_subscriber_uid, read_token
from newsletter.urls import unsubscribe_mailto, unsubscribe_url

KEY = b"k" * 32


def test_round_trip_carries_uid_and_list() -> None:
    uid = new_subscriber_uid()
    token = make_token(KEY, TokenPurpose.UNSUBSCRIBE, uid, 7, issued_at=1_700_000_000)
    data = read_token(KEY, token, TokenPurpose.UNSUBSCRIBE)
    assert (data.subscriber_uid, data.list_id, data.issued_at) == (uid, 7, 1_700_000_000)


def test_token_is_url_safe_and_carries_no_readable_data() -> None:
    uid = new_subscriber_uid()
    token = make_token(KEY, TokenPurpose.UNSUBSCRIBE, uid, 7)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert uid not in token
    assert "@" not in token


def test_wrong_key_purpose_or_truncation_is_refused() -> None:
    token = make_token(KEY, TokenPurpose.UNSUBSCRIBE, new_subscriber_uid(), 1)
    with pytest.raises(TokenError):
        read_token(b"other" * 8, token, TokenPurpose.UNSUBSCRIBE)
    with pytest.raises(TokenError):
        read_token(KEY, token, TokenPurpose.CONFIRM)
    with pytest.raises(TokenError):
        read_token(KEY, token[:-1], TokenPurpose.UNSUBSCRIBE)
    with pytest.raises(TokenError):
        read_token(KEY, token + "A", TokenPurpose.UNSUBSCRIBE)
    with pytest.raises(TokenError):
        read_token(KEY, "", TokenPurpose.UNSUBSCRIBE)


def test_every_flipped_byte_is_refused() -> None:
    token = make_token(KEY, TokenPurpose.UNSUBSCRIBE, new_subscriber_uid(), 3)
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    for i in range(len(raw)):
        forged = bytearray(raw)
        forged[i] ^= 0x01
        text = base64.urlsafe_b64encode(bytes(forged)).rstrip(b"=").decode()
        with pytest.raises(TokenError):
            read_token(KEY, text, TokenPurpose.UNSUBSCRIBE)


def test_expiry() -> None:
    token = make_token(KEY, TokenPurpose.CONFIRM, new_subscriber_uid(), 1, issued_at=1000)
    assert read_token(KEY, token, TokenPurpose.CONFIRM, max_age_seconds=60, now=1059)
    with pytest.raises(TokenError, match="expired"):
        read_token(KEY, token, TokenPurpose.CONFIRM, max_age_seconds=60, now=1061)


@given(st.text(max_size=200))
def test_arbitrary_input_never_crashes(text: str) -> None:
    with pytest.raises(TokenError):
        read_token(KEY, text, TokenPurpose.UNSUBSCRIBE)


def test_urls() -> None:
    assert unsubscribe_url("https://x.org/", "abc") == "https://x.org/unsubscribe/abc"
    mailto = unsubscribe_mailto("x.org", "abc")
    assert mailto == "mailto:unsubscribe@x.org?subject=unsubscribe%20abc"


OLD = b"o" * 32
OLDER = b"p" * 32


def test_a_token_signed_with_an_earlier_key_still_verifies() -> None:
    uid = new_subscriber_uid()
    token = make_token(OLD, TokenPurpose.UNSUBSCRIBE, uid, 3)
    for ring in ([KEY, OLD], [KEY, OLDER, OLD], (KEY, OLD)):
        assert read_token(ring, token, TokenPurpose.UNSUBSCRIBE).subscriber_uid == uid
    # a key that is not in the ring never verifies
    with pytest.raises(TokenError):
        read_token([KEY, OLDER], token, TokenPurpose.UNSUBSCRIBE)
    with pytest.raises(TokenError):
        read_token(KEY, token, TokenPurpose.UNSUBSCRIBE)
    with pytest.raises(TokenError):
        read_token([], token, TokenPurpose.UNSUBSCRIBE)


def test_purposes_stay_apart_under_earlier_keys() -> None:
    token = make_token(OLD, TokenPurpose.CONFIRM, new_subscriber_uid(), 3)
    assert read_token([KEY, OLD], token, TokenPurpose.CONFIRM).list_id == 3
    with pytest.raises(TokenError):
        read_token([KEY, OLD], token, TokenPurpose.UNSUBSCRIBE)


def test_tampering_is_refused_under_every_key() -> None:
    token = make_token(OLD, TokenPurpose.UNSUBSCRIBE, new_subscriber_uid(), 3)
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[5] ^= 1
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(TokenError):
        read_token([KEY, OLD, OLDER], forged, TokenPurpose.UNSUBSCRIBE)
