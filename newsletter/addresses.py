"""Email addresses and header values: normalising, hashing, IDNA, display and header safety.

Pure: values in, values out. The store keys people on :func:`normalize_email` and the
suppression list on :func:`email_hash`; messages take :func:`ascii_address` and
:func:`address`; anything bound for a header passes :func:`check_header_value` first.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from email.headerregistry import Address
from email.utils import parseaddr

import idna
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from newsletter.errors import InvalidAddressError

MAX_NAME_LENGTH = 200

# A conservative shape of the everyday ASCII address. Anything it accepts, email-validator
# accepts with the same result (a property test holds it to that); everything else takes the
# slow, complete path. It exists because validate_email costs ~30 µs and the importer's budget
# for a whole row is 40 µs.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_FAST_ADDRESS = re.compile(
    rf"({_ATEXT}+(?:\.{_ATEXT}+)*)@((?:{_LABEL}\.)+[A-Za-z]{{2,63}})", re.ASCII
)
_SPECIAL_USE = re.compile(
    r"(?:^|\.)(?:" + "|".join(map(re.escape, SPECIAL_USE_DOMAIN_NAMES)) + r")\Z"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SPACES = re.compile(r"\s+")


def normalize_email(address: str) -> str:
    """The unique key for ``address``: validated (no DNS), IDN domain in Unicode, lowercased.

    Surrounding spaces are forgiven; CR, LF and NUL anywhere are refused because the address
    ends up in a header. Raises :class:`InvalidAddressError` with a reason a person can act on.
    """
    if not isinstance(address, str):
        raise InvalidAddressError(repr(address), "not text")
    # the fast shape admits no whitespace or control characters, so it needs no checks first
    fast = _fast_normalize(address)
    if fast is not None:
        return fast
    if "\r" in address or "\n" in address or "\0" in address:
        raise InvalidAddressError(address, "contains a line break or NUL")
    candidate = address.strip(" \t")
    if not candidate:
        raise InvalidAddressError(address, "empty address")
    fast = _fast_normalize(candidate)
    if fast is not None:
        return fast
    try:
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddressError(candidate, str(exc)) from None
    return str(result.normalized).lower()


def _fast_normalize(candidate: str) -> str | None:
    if len(candidate) > 254:
        return None
    match = _FAST_ADDRESS.fullmatch(candidate)
    if match is None:
        return None
    local, domain = match.group(1), match.group(2).lower()
    if len(local) > 64 or len(domain) > 253:
        return None
    # IDNA rules forbid "--" in positions 3-4 unless it is an xn-- label: leave those to idna
    if "--" in domain or _SPECIAL_USE.search(domain):
        return None
    return f"{local}@{domain}".lower()


def email_hash(normalized: str) -> str:
    """SHA-256 hex of a normalised address: what the suppression list keys on."""
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def suppression_key(email: str) -> tuple[str, str]:
    """(normalised address, hash); an address that no longer validates is still suppressible."""
    try:
        normalized = normalize_email(email)
    except InvalidAddressError:
        normalized = email.strip().lower()
    return normalized, email_hash(normalized)


# Providers whose mailboxes ignore some characters of the local part, and the domains that
# reach one and the same mailbox. Gmail drops dots (googlemail.com is the same account); Proton
# drops dots, hyphens and underscores across its domains. Elsewhere (Outlook, Yahoo, iCloud
# and most others) a dot is part of the name: ``a.b@`` and ``ab@`` are two people.
_FOLDED_CHARACTERS: dict[str, tuple[str, str]] = {
    "gmail.com": ("gmail.com", "."),
    "googlemail.com": ("gmail.com", "."),
    "proton.me": ("proton.me", ".-_"),
    "protonmail.com": ("proton.me", ".-_"),
    "protonmail.ch": ("proton.me", ".-_"),
    "pm.me": ("proton.me", ".-_"),
}


def mailbox_key(normalized: str) -> str:
    """The mailbox an address delivers to, for the limits on confirmation emails.

    ``name+anything@domain`` reaches ``name@domain`` at most providers, so the tags must not
    buy a flooder a fresh allowance of confirmation emails to one person's inbox; at Gmail
    ``v.i.c.t.i.m@`` is ``victim@`` too (:data:`_FOLDED_CHARACTERS`). Only for counting: the
    address is stored and mailed as typed. Folding more than a provider does only makes two
    people share one allowance, so the tag is dropped everywhere.
    """
    local, _, domain = normalized.lower().rpartition("@")
    local = local.split("+", 1)[0] or local
    folded = _FOLDED_CHARACTERS.get(domain)
    if folded is not None:
        domain, ignored = folded
        local = local.translate(str.maketrans("", "", ignored)) or local
    return f"{local}@{domain}"


def mailbox_hash(normalized: str) -> str:
    """SHA-256 hex of :func:`mailbox_key`: what the store counts confirmation emails by."""
    return email_hash(mailbox_key(normalized))


def check_sendable(email: str) -> str:
    """``email`` as the relay is given it (:func:`ascii_address`), or InvalidAddressError.

    This sender does not use SMTPUTF8, so a non-ASCII local part (``jürgen@``) cannot be
    delivered: better said at once than discovered when the message is refused.
    """
    ascii_form = ascii_address(email)
    if not ascii_form.isascii():
        raise InvalidAddressError(
            email, "letters outside ASCII before the @ cannot be delivered by this newsletter"
        )
    return ascii_form


def storable(text: str) -> bool:
    """False when ``text`` holds a lone surrogate (from a JSON ``\\ud800`` escape).

    No database or message can encode one: it has to be refused where it comes in.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_name(name: str | None) -> str | None:
    """A display name safe anywhere: no control characters or line breaks, spaces collapsed."""
    if name is None:
        return None
    if name.isprintable() and "  " not in name and name == name.strip():
        # the common case: nothing to clean (isprintable is False for every control
        # character, line or paragraph separator and odd space)
        if not unicodedata.is_normalized("NFC", name):
            name = unicodedata.normalize("NFC", name)
        return name[:MAX_NAME_LENGTH] or None
    cleaned = _SPACES.sub(" ", _CONTROL.sub(" ", unicodedata.normalize("NFC", name))).strip()
    return cleaned[:MAX_NAME_LENGTH] or None


def check_header_value(value: str, what: str) -> str:
    """Refuse CR, LF and NUL in anything bound for a header (header injection)."""
    if any(ch in value for ch in "\r\n\x00"):
        raise InvalidAddressError(value, f"{what} contains a line break or NUL")
    return value


def ascii_address(email: str) -> str:
    """``email`` with its domain in IDNA (``xn--``) form, as SMTP and headers need it."""
    local, _, domain = email.rpartition("@")
    if domain.isascii():
        # what IDNA would make of it, without its cost per message
        return f"{local}@{domain.lower()}"
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise InvalidAddressError(email, f"domain cannot be encoded: {exc}") from None
    return f"{local}@{ascii_domain}"


def address(display_name: str, addr: str) -> str:
    """A safely quoted ``Name <addr>``; CR/LF in either part is refused."""
    check_header_value(display_name, "display name")
    check_header_value(addr, "address")
    local, _, domain = addr.rpartition("@")
    return str(Address(display_name=display_name, username=local, domain=domain))


def sender_domain(sender: str) -> str:
    """The domain of a ``From`` value such as ``Weekly <weekly@example.org>`` (else localhost)."""
    return parseaddr(sender)[1].rpartition("@")[2] or "localhost"
