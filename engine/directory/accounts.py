"""Member accounts: who is logging in (by licence number, or by an address only they use), with rate limiting.

Every attempt is counted before the password is checked (``engine.directory.throttle``): per client address,
per account and client address, and under a high ceiling per account. The limits slow the attacker's source;
they never lock the owner out (issue 11, findings 6, 7 and 9), and the reset link is never limited by them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from engine import audit
from engine.directory import throttle
from engine.directory.models import Member
from engine.directory.passwords import hash_password, needs_rehash, verify_password

WINDOW = throttle.LOGIN_PAIR.window
PAIR_LIMIT = throttle.LOGIN_PAIR.limit  # attempts on one account from one client address in WINDOW
ADDRESS_LIMIT = throttle.LOGIN_ADDRESS.limit  # attempts from one client address in WINDOW
ACCOUNT_LIMIT = throttle.LOGIN_ACCOUNT.limit  # attempts on one account from anywhere in WINDOW


class LoginStatus(enum.Enum):
    OK = "ok"
    FAILED = "failed"  # wrong password, unknown account, no password yet: the same answer
    AMBIGUOUS = "ambiguous"  # an address several members share: ask for the licence number
    THROTTLED = "throttled"


@dataclass(frozen=True)
class LoginResult:
    status: LoginStatus
    member: Member | None = None


def _users_of(address: str) -> list[Member]:
    return list(Member.using_address(address).limit(2))


def _named(identifier: str) -> list[Member]:
    """The members an identifier names: one by licence number, or up to two by address (two: shared)."""
    identifier = identifier.strip()
    if "@" not in identifier:
        found = Member.get_or_none(Member.licence_number == identifier.upper())
        return [found] if found is not None else []
    return _users_of(identifier)


def find_account(identifier: str) -> Member | None:
    """The member named by a licence number, or by an address exactly one member uses.

    A family address shared by several members names nobody: the caller asks for the licence number.
    """
    users = _named(identifier)
    return users[0] if len(users) == 1 else None


def is_shared_address(identifier: str) -> bool:
    return "@" in identifier and len(_users_of(identifier.strip())) > 1


def authenticate(identifier: str, password: str) -> Member | None:
    member = find_account(identifier)
    if not verify_password(member.password_hash if member else None, password):
        return None
    return member


# --- rate limiting ---

def account_key(identifier: str, member: Member | None) -> str:
    """The account an attempt is counted against; an unknown identifier is counted exactly like an account,
    so that the limits reveal nothing about which exist."""
    return f"member-{member.id}" if member is not None else f"name-{identifier.strip().lower()[:250]}"


def login_checks(account: str, ip: str | None) -> list[throttle.Check]:
    source = throttle.source(ip)
    return [(throttle.LOGIN_ADDRESS, throttle.LOGIN_ADDRESS.key(source)),
            (throttle.LOGIN_PAIR, throttle.LOGIN_PAIR.key(account, source)),
            (throttle.LOGIN_ACCOUNT, throttle.LOGIN_ACCOUNT.key(account))]


def clear_account(member: Member) -> None:
    """The owner proved who they are (a reset link): the account's ceiling starts again from zero."""
    throttle.clear(throttle.LOGIN_ACCOUNT.key(account_key("", member)))


def login(identifier: str, password: str, ip: str | None = None) -> LoginResult:
    """Check a login attempt, counted before anything else (a shared address too); refused past a limit."""
    users = _named(identifier)
    member = users[0] if len(users) == 1 else None
    account = account_key(identifier, member)
    tried = throttle.attempt(login_checks(account, ip))
    if not tried.allowed:
        audit.record("login.throttled", member, actor_label="anonymous", ip=ip)
        return LoginResult(LoginStatus.THROTTLED)
    if len(users) > 1:
        return LoginResult(LoginStatus.AMBIGUOUS)
    if not verify_password(member.password_hash if member else None, password):
        if member is not None:
            audit.record("login.failed", member, actor_label="anonymous", ip=ip)
        return LoginResult(LoginStatus.FAILED)
    assert member is not None and member.password_hash is not None  # verify_password refuses a missing hash
    throttle.forget(tried)
    throttle.clear(throttle.LOGIN_PAIR.key(account, throttle.source(ip)))
    if needs_rehash(member.password_hash):
        member.password_hash = hash_password(password)
        member.save(only=[Member.password_hash])
    audit.record("login.succeeded", member, actor=member, ip=ip)
    return LoginResult(LoginStatus.OK, member)
