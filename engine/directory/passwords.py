"""Password hashing with argon2 (argon2-cffi). Tests use the cheapest profile through ``configure``."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def configure(hasher: PasswordHasher) -> None:
    """Replace the hasher (tests pass ``PasswordHasher.from_parameters(profiles.CHEAPEST)``)."""
    global _hasher
    _hasher = hasher


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; False for a wrong password or no password set."""
    if not password_hash:
        # Spend the same time as a real check so that timing does not reveal unknown accounts.
        _hasher.hash(password)
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
