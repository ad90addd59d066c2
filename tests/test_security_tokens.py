"""A token is accepted in exactly one spelling: the one that was signed and sent."""

from __future__ import annotations

import pytest

from newsletter.errors import TokenError
from newsletter.tokens import TokenPurpose, make_token, new_subscriber_uid, read_token

SECRET = b"s" * 32


def _variants(token: str) -> list[str]:
    last = token[-1]
    # the final character carries spare bits: its neighbours in the alphabet decode the same
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    same_bits = alphabet[alphabet.index(last) ^ 1]
    return [
        token[:10] + "." + token[10:],
        token[:10] + "!" + token[10:],
        " " + token,
        token + "=",
        token + "==",
        token[:-1] + same_bits,
        token.replace("-", "+").replace("_", "/"),
    ]


@pytest.mark.parametrize("index", range(7))
def test_other_spellings_of_a_valid_token_are_refused(index: int) -> None:
    # fixed inputs: a token whose spelling has both "-" and "_", so every variant differs
    token = make_token(SECRET, TokenPurpose.UNSUBSCRIBE, "29" * 16, 3, issued_at=1_700_000_000)
    assert read_token(SECRET, token, TokenPurpose.UNSUBSCRIBE).list_id == 3
    variant = _variants(token)[index]
    assert variant != token
    with pytest.raises(TokenError):
        read_token(SECRET, variant, TokenPurpose.UNSUBSCRIBE)


def test_purposes_are_separate() -> None:
    uid = new_subscriber_uid()
    for made, other in (
        (TokenPurpose.CONFIRM, TokenPurpose.UNSUBSCRIBE),
        (TokenPurpose.UNSUBSCRIBE, TokenPurpose.CONFIRM),
    ):
        with pytest.raises(TokenError):
            read_token(SECRET, make_token(SECRET, made, uid, 1), other)
