"""Address normalisation, hashing and header safety (``newsletter.addresses``, pure)."""

from __future__ import annotations

import hashlib

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from newsletter.addresses import (
    _fast_normalize,
    address,
    ascii_address,
    check_header_value,
    clean_name,
    email_hash,
    mailbox_key,
    normalize_email,
    sender_domain,
    suppression_key,
)
from newsletter.errors import InvalidAddressError


@pytest.mark.parametrize(
    ("address", "normalized"),
    [
        ("Alice@Example.COM", "alice@example.com"),
        ("  bob@example.org\t", "bob@example.org"),
        ("user@bücher.de", "user@bücher.de"),
        ("user@xn--bcher-kva.de", "user@bücher.de"),
        ("USER@BÜCHER.DE", "user@bücher.de"),
        ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
    ],
)
def test_normalize_email(address: str, normalized: str) -> None:
    assert normalize_email(address) == normalized


@pytest.mark.parametrize(
    "address",
    [
        "",
        "   ",
        "no-at-sign",
        "a@b",
        "a@localhost",
        "two@@example.org",
        "x@example.org\r\nBcc: victim@example.org",
        "x@example.org\n",
        "x\x00@example.org",
        "Name <x@example.org>",
        "a..b@example.org",
        "x@exa mple.org",
        "x@example.test",
    ],
)
def test_normalize_email_refuses(address: str) -> None:
    with pytest.raises(InvalidAddressError):
        normalize_email(address)


def test_email_hash_is_sha256_of_normalized() -> None:
    assert email_hash("a@example.org") == hashlib.sha256(b"a@example.org").hexdigest()


ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-."


LDH = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"


@hyp_settings(max_examples=400, deadline=None)
@given(
    local=st.text(alphabet=ATEXT, min_size=1, max_size=70),
    labels=st.lists(
        st.text(
            alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-",
            min_size=1,
            max_size=12,
        ),
        min_size=1,
        max_size=4,
    ),
    tld=st.sampled_from(["org", "COM", "de", "test", "local", "x", "museum", "1a", "onion"]),
)
def test_property_fast_path_agrees_with_email_validator(
    local: str, labels: list[str], tld: str
) -> None:
    """The fast path may decline anything, but what it accepts email-validator accepts too."""
    address = f"{local}@{'.'.join([*labels, tld])}"
    fast = _fast_normalize(address)
    if fast is None:
        return
    try:
        slow = validate_email(address, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        pytest.fail(f"fast path accepted {address!r}, email-validator says {exc}")
    assert fast == slow


@given(st.text(max_size=60))
def test_property_normalize_email_never_lets_line_breaks_through(text: str) -> None:
    try:
        result = normalize_email(text)
    except InvalidAddressError:
        return
    assert "\r" not in result
    assert "\n" not in result
    assert result == result.lower()
    assert normalize_email(result) == result  # idempotent


@given(st.text(max_size=80))
def test_property_clean_name_is_header_safe(text: str) -> None:
    cleaned = clean_name(text)
    if cleaned is not None:
        assert cleaned == cleaned.strip()
        assert not any(ch in cleaned for ch in "\r\n\x00\u2028\u2029")
        assert len(cleaned) <= 200


def test_suppression_key_keeps_an_address_that_no_longer_validates() -> None:
    assert suppression_key("Ann@Example.org") == ("ann@example.org", email_hash("ann@example.org"))
    legacy = "  Old..Style@Example.org "
    assert suppression_key(legacy) == (
        "old..style@example.org",
        email_hash("old..style@example.org"),
    )


def test_mailbox_key_drops_plus_tags() -> None:
    assert mailbox_key("ann+news@example.org") == "ann@example.org"
    assert mailbox_key("+only@example.org") == "+only@example.org"


def test_ascii_address_and_display_form() -> None:
    assert ascii_address("user@Bücher.de") == "user@xn--bcher-kva.de"
    assert ascii_address("Ann@Example.ORG") == "Ann@example.org"
    assert (
        address('Ann "A" O\\Neil', "ann@example.org") == '"Ann \\"A\\" O\\\\Neil" <ann@example.org>'
    )
    with pytest.raises(InvalidAddressError):
        address("Ann\r\nBcc: x@evil.example", "ann@example.org")


def test_header_values_refuse_line_breaks_and_nul() -> None:
    assert check_header_value("fine", "subject") == "fine"
    for bad in ("a\rb", "a\nb", "a\x00b"):
        with pytest.raises(InvalidAddressError, match="subject contains a line break"):
            check_header_value(bad, "subject")


def test_sender_domain() -> None:
    assert sender_domain("The Weekly <weekly@news.example>") == "news.example"
    assert sender_domain("") == "localhost"
