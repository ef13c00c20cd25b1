"""Member accounts: who is logging in (by licence number, or by an address only they use)."""

from __future__ import annotations

from engine.directory.models import Member
from engine.directory.passwords import verify_password


def find_account(identifier: str) -> Member | None:
    """The member named by a licence number, or by an address exactly one member uses.

    A family address shared by several members names nobody: the caller asks for the licence number.
    """
    identifier = identifier.strip()
    if "@" not in identifier:
        return Member.get_or_none(Member.licence_number == identifier.upper())
    users = list(Member.using_address(identifier).limit(2))
    return users[0] if len(users) == 1 else None


def authenticate(identifier: str, password: str) -> Member | None:
    member = find_account(identifier)
    if not verify_password(member.password_hash if member else None, password):
        return None
    return member
