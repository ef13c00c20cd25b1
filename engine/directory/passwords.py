"""Passwords: argon2 hashing (argon2-cffi), and the reset / first-activation links mailed to members.

A reset link is a signed token naming the member and their ``auth_version``; setting a password bumps
``auth_version``, which makes the link single-use and signs out every session. Tests use the cheapest
argon2 profile through ``configure``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from engine import audit, clock, notices, tokens
from engine.config import Settings
from engine.directory import throttle
from engine.directory.models import Member
from engine.directory.wording import duration_words

_hasher = PasswordHasher()

MIN_LENGTH = 10
MAX_LENGTH = 200
RESET_MAILS_PER_HOUR = throttle.RESET_MAIL.limit  # per member: a form cannot be used to flood someone's mailbox


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


# --- reset and activation links ---

class ResetLinkError(tokens.LinkError):
    """The link is invalid (``reason``: invalid, expired, used)."""


class WeakPassword(ValueError):
    """The new password is too short or too long."""


def make_reset_token(settings: Settings, member: Member) -> str:
    issued = int(clock.now().replace(tzinfo=UTC).timestamp())
    return tokens.dumps(settings, tokens.Purpose.PASSWORD_RESET, {"m": member.id, "v": member.auth_version,
                                                                   "t": issued})


def reset_url(settings: Settings, member: Member) -> str:
    return f"{settings.base_url}/mot-de-passe/{make_reset_token(settings, member)}"


def member_for_reset(settings: Settings, token: str) -> Member:
    """The member a reset link was made for; ``ResetLinkError`` when forged, expired or already used."""
    max_age = settings.password_reset_max_age
    payload = tokens.load_link(settings, tokens.Purpose.PASSWORD_RESET, token, max_age, ResetLinkError,
                               ints=("m", "v", "t"))
    # Expiry by the product's clock too (itsdangerous reads the system clock).
    if clock.now() - datetime.fromtimestamp(payload["t"], UTC).replace(tzinfo=None) > max_age:
        raise ResetLinkError("expired")
    member = Member.get_or_none(Member.id == payload["m"])
    if member is None:
        raise ResetLinkError("invalid")
    if member.auth_version != payload["v"]:
        raise ResetLinkError("used")
    return member


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH or len(password) > MAX_LENGTH:
        raise WeakPassword(f"between {MIN_LENGTH} and {MAX_LENGTH} characters")


def set_password_with_token(settings: Settings, token: str, password: str, ip: str | None = None) -> Member:
    """Set the password named by a reset link; the link dies and every session is signed out.

    Never rate-limited by the login limits: this is how the owner gets in while an attacker keeps the
    account's login ceiling full (the ceiling restarts from zero here).
    """
    from engine.directory.accounts import clear_account
    member = member_for_reset(settings, token)
    check_strength(password)
    activation = member.password_hash is None
    updated = (Member.update(password_hash=hash_password(password), auth_version=Member.auth_version + 1)
               .where((Member.id == member.id) & (Member.auth_version == member.auth_version)).execute())
    if not updated:  # the same link used twice at once: only one wins
        raise ResetLinkError("used")
    audit.record("account.activated" if activation else "password.reset", member, actor=member, ip=ip)
    clear_account(member)
    return Member.get_by_id(member.id)


def _members_named(identifier: str) -> list[Member]:
    identifier = identifier.strip()
    if "@" in identifier:
        return list(Member.using_address(identifier))
    found = Member.get_or_none(Member.licence_number == identifier.upper())
    return [found] if found is not None else []


def request_reset(settings: Settings, identifier: str, *, language: str | None = None,
                  ip: str | None = None) -> int:
    """Mail a reset (or first-activation) link to each member ``identifier`` names; returns how many.

    The caller shows the same answer whatever happens: this must not reveal who has an account.
    A shared family address gets one link per member using it (they share that mailbox anyway).
    """
    sent = 0
    if not throttle.attempt([(throttle.RESET_ADDRESS, throttle.RESET_ADDRESS.key(throttle.source(ip)))]).allowed:
        return 0
    for member in _members_named(identifier):
        if not member.email or not throttle.attempt([(throttle.RESET_MAIL, throttle.RESET_MAIL.key(member.id))]).allowed:
            continue
        template = "account_activation" if member.password_hash is None else "password_reset"
        words = member.language or language or settings.default_language
        notices.send_notice(settings, template, member.email, language=words, member=member,
                            link=reset_url(settings, member),
                            validity=duration_words(settings.password_reset_max_age, words))
        audit.record("password.reset_requested", member, actor_label="anonymous", ip=ip, template=template)
        sent += 1
    return sent

