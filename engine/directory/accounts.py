"""Member accounts: who is logging in (by licence number, or by an address only they use), with rate limiting.

Failed logins are counted in the database (``RateEvent``) per account and per client address, so that every
portal process shares the counts; past a limit, the password is not even checked.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta

from engine import audit, clock
from engine.directory.models import Member, RateEvent
from engine.directory.passwords import hash_password, needs_rehash, verify_password

WINDOW = timedelta(minutes=15)
ACCOUNT_LIMIT = 5  # failed logins per account (or per unknown identifier) in WINDOW
ADDRESS_LIMIT = 20  # failed logins per client address in WINDOW
KEEP = timedelta(days=1)  # older events are deleted


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


def find_account(identifier: str) -> Member | None:
    """The member named by a licence number, or by an address exactly one member uses.

    A family address shared by several members names nobody: the caller asks for the licence number.
    """
    identifier = identifier.strip()
    if "@" not in identifier:
        return Member.get_or_none(Member.licence_number == identifier.upper())
    users = _users_of(identifier)
    return users[0] if len(users) == 1 else None


def is_shared_address(identifier: str) -> bool:
    return "@" in identifier and len(_users_of(identifier.strip())) > 1


def authenticate(identifier: str, password: str) -> Member | None:
    member = find_account(identifier)
    if not verify_password(member.password_hash if member else None, password):
        return None
    return member


# --- rate limiting ---

def count_events(key: str, window: timedelta = WINDOW) -> int:
    return int(RateEvent.select().where((RateEvent.key == key) & (RateEvent.at > clock.now() - window)).count())


def record_event(*keys: str) -> None:
    now = clock.now()
    RateEvent.insert_many([{"key": key, "at": now} for key in keys]).execute()
    RateEvent.delete().where(RateEvent.at < now - KEEP).execute()


def clear_events(key: str) -> None:
    RateEvent.delete().where(RateEvent.key == key).execute()


def _account_key(identifier: str, member: Member | None) -> str:
    # An unknown identifier is limited exactly like a real account, so the limit reveals nothing.
    return f"login-account:{member.id}" if member is not None else f"login-name:{identifier.strip().lower()[:250]}"


def is_throttled(account_key: str, ip: str | None) -> bool:
    if count_events(account_key) >= ACCOUNT_LIMIT:
        return True
    return bool(ip) and count_events(f"login-ip:{ip}") >= ADDRESS_LIMIT


def login(identifier: str, password: str, ip: str | None = None) -> LoginResult:
    """Check a login attempt; counts failures and refuses every attempt past the limits."""
    if is_shared_address(identifier):
        return LoginResult(LoginStatus.AMBIGUOUS)
    member = find_account(identifier)
    key = _account_key(identifier, member)
    if is_throttled(key, ip):
        audit.record("login.throttled", member, actor_label="anonymous", ip=ip)
        return LoginResult(LoginStatus.THROTTLED)
    if not verify_password(member.password_hash if member else None, password):
        record_event(key, *([f"login-ip:{ip}"] if ip else []))
        if member is not None:
            audit.record("login.failed", member, actor_label="anonymous", ip=ip)
        return LoginResult(LoginStatus.FAILED)
    assert member is not None and member.password_hash is not None  # verify_password refuses a missing hash
    clear_events(key)
    if needs_rehash(member.password_hash):
        member.password_hash = hash_password(password)
        member.save(only=[Member.password_hash])
    audit.record("login.succeeded", member, actor=member, ip=ip)
    return LoginResult(LoginStatus.OK, member)
