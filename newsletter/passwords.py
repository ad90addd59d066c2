"""Editors' passwords: argon2id through argon2-cffi, and the rule for what is long enough."""

from __future__ import annotations

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from newsletter.errors import ConfigError

MIN_PASSWORD_LENGTH = 12
# argon2-cffi's defaults (RFC 9106's second recommendation: 64 MiB, 3 passes, 4 lanes)
_HASHER = argon2.PasswordHasher()
# checked when the account does not exist, so "no such editor" takes as long as "wrong password"
_DUMMY = _HASHER.hash("not the password of anyone at all")


def check_password(password: str) -> None:
    """Refuse a password too short to stand up to guessing (a ConfigError naming the rule)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(
            "password", f"too short: use at least {MIN_PASSWORD_LENGTH} characters (a passphrase)"
        )
    if password.strip() != password or not password.isprintable():
        raise ConfigError("password", "no leading or trailing spaces or control characters")


def hash_password(password: str) -> str:
    check_password(password)
    return str(_HASHER.hash(password))


def verify_password(stored: str | None, password: str) -> bool:
    """True when ``password`` matches ``stored`` (None: no such account, still takes the time)."""
    try:
        return bool(_HASHER.verify(stored or _DUMMY, password)) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """True when ``stored`` was made with weaker parameters than today's."""
    try:
        return bool(_HASHER.check_needs_rehash(stored))
    except InvalidHashError:
        return True
