"""Rate limits of the portal's public forms, shared by every portal process through the database (``RateEvent``).

Every limit is a row of ``LIMITS`` (policy as data; docs/security.md lists them). An attempt is counted
*before* the work it limits (a password check, a mail): its events are inserted and committed, and only then
counted. The k-th attempt to commit sees at least k events, so however many arrive at once, no more than the
limit get through (issue 11, finding 6). A key already at its limit is refused without writing anything, so a
flood does not grow the table.
"""

from __future__ import annotations

import functools
import ipaddress
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import peewee as pw

from engine import clock
from engine.db import database
from engine.directory.models import RateEvent


@dataclass(frozen=True)
class Limit:
    """At most ``limit`` events under one key in any ``window``."""

    name: str  # prefix of the keys: "login-ip:203.0.113.9"
    limit: int
    window: timedelta
    meaning: str

    def key(self, *parts: object) -> str:
        return f"{self.name}:{'|'.join(str(p) for p in parts)}"[:300]


MINUTES_15, HOUR, DAY = timedelta(minutes=15), timedelta(hours=1), timedelta(days=1)

# Logging in: the source is slowed, not the account (findings 6, 7, 9). The account's own ceiling is high: an
# attacker spread over many addresses reaches it, and the owner still gets in through the reset link.
LOGIN_ADDRESS = Limit("login-ip", 20, MINUTES_15, "login attempts from one client address")
LOGIN_PAIR = Limit("login-pair", 5, MINUTES_15, "login attempts on one account from one client address")
LOGIN_ACCOUNT = Limit("login-account", 100, MINUTES_15, "login attempts on one account, from anywhere")
# Links mailed by the public forms.
RESET_MAIL = Limit("reset-mail", 3, HOUR, "reset or activation mails to one member")
RESET_ADDRESS = Limit("reset-ip", 20, HOUR, "reset or activation requests from one client address")
# Mon espace's pencil mails a confirmation to an address the member types (finding 11, DELIVERABILITY.md §9.4).
ADDRESS_CHANGE_MEMBER = Limit("email-change-member", 5, DAY, "address change requests by one member")
ADDRESS_CHANGE_TARGET = Limit("email-change-target", 3, DAY, "confirmation mails to one address")
ADDRESS_CHANGE_ADDRESS = Limit("email-change-ip", 20, DAY, "address change requests from one client address")

# The public unsubscribe link (DELIVERABILITY.md §9.5): only *failures* count (a forged or damaged token, a POST
# without the one-click body or the button's form token). Providers POST one-click for many members from few
# servers: a limit on every attempt would refuse the legitimate unsubscribes they check we honour.
UNSUBSCRIBE_FAILURES = Limit("unsubscribe-fail-ip", 30, timedelta(minutes=10),
                             "failed unsubscribe attempts (bad link, wrong one-click body) from one client address")

LIMITS = (LOGIN_ADDRESS, LOGIN_PAIR, LOGIN_ACCOUNT, RESET_MAIL, RESET_ADDRESS, ADDRESS_CHANGE_MEMBER,
          ADDRESS_CHANGE_TARGET, ADDRESS_CHANGE_ADDRESS, UNSUBSCRIBE_FAILURES)
KEEP = max(limit.window for limit in LIMITS)  # older events are deleted as new ones are written

Check = tuple[Limit, str]  # a limit and the key it is counted under


def source(ip: str | None) -> str:
    """The client a limit counts: an IPv4 address, or the /64 network of an IPv6 one (one subscriber line
    holds a whole /64: counting single addresses would give an attacker 2^64 fresh starts)."""
    if not ip:
        return "unknown"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass(frozen=True)
class Attempt:
    allowed: bool
    event_ids: tuple[int, ...] = ()


def attempt(checks: Sequence[Check]) -> Attempt:
    """Count one attempt under every key of ``checks``; ``allowed`` is False when any key is over its limit.

    Must run outside a transaction: the count is only atomic when each insert is committed before the count.
    """
    if database.in_transaction():
        raise RuntimeError("throttle.attempt() must not run inside a transaction")
    now = clock.now()
    if _over(checks, now, allowance=0):
        return Attempt(False)
    ids = tuple(int(RateEvent.insert(key=key, at=now).execute()) for _limit, key in checks)
    RateEvent.delete().where(RateEvent.at < now - KEEP).execute()
    return Attempt(not _over(checks, now, allowance=1), ids)


def _over(checks: Sequence[Check], now: datetime, allowance: int) -> bool:
    """Whether a key holds more than ``limit - 1 + allowance`` events in its window."""
    if not checks:
        return False
    recent = functools.reduce(operator.or_, [(RateEvent.key == key) & (RateEvent.at > now - limit.window)
                                             for limit, key in checks])
    counts: dict[str, int] = dict(RateEvent.select(RateEvent.key, pw.fn.COUNT(RateEvent.id)).where(recent)
                                  .group_by(RateEvent.key).tuples().iterator())
    return any(counts.get(key, 0) > limit.limit - 1 + allowance for limit, key in checks)


def forget(result: Attempt) -> None:
    """Uncount an attempt that turned out legitimate (a successful login)."""
    if result.event_ids:
        RateEvent.delete().where(RateEvent.id.in_(result.event_ids)).execute()


def clear(key: str) -> None:
    """Forget every event of ``key`` (the owner proved who they are)."""
    RateEvent.delete().where(RateEvent.key == key).execute()


def refused(limit: Limit, ip: str | None) -> bool:
    """Whether the client ``ip`` has used up ``limit`` (read only: nothing is counted)."""
    return _over([(limit, limit.key(source(ip)))], clock.now(), allowance=0)


def failed(limit: Limit, ip: str | None) -> None:
    """Count one failure of the client ``ip`` under ``limit`` (nothing is written once it is used up)."""
    attempt([(limit, limit.key(source(ip)))])


def count(key: str, limit: Limit) -> int:
    return int(RateEvent.select().where((RateEvent.key == key) & (RateEvent.at > clock.now() - limit.window))
               .count())
