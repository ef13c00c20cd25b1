"""Per-destination throttling: the group of a recipient's domain, and how many copies it may take now.

Rules (``ThrottleRule``) name groups of domains, by domain or by MX host. Every engine shares each
group's pace through one ``ThrottleState`` row: a generic cell rate algorithm spaces copies at the
per-minute rate (a burst of about a second's worth at most), hourly and daily counts are quotas. Copies
over the pace are put off to the time the group can take them (not an attempt), so a large list to
one provider spreads over time while the others' copies go at once. A ``421`` or a 4.7.x
"slow down" halves the group's rate; it recovers by a twentieth of the configured rate a minute
(additive increase, multiplicative decrease: AIMD).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.db import write_transaction
from engine.outbound import idn, outbox
from engine.outbound.models import ThrottleRule, ThrottleState

CREDIT = timedelta(seconds=1)  # unused slots kept for copies that come due late (and a burst after a pause)
CATCH_UP = timedelta(seconds=10)  # the same while copies put off wait: a slow claim loses no slot
RECOVERY_PER_MINUTE = 0.05  # of the configured rate, after a slow-down
SMALLEST_FACTOR = 1 / 16
COOLDOWN = timedelta(seconds=30)  # pipelined refusals come in bursts: one halving per 30 s at most
# Replies that ask us to slow down (RFC 5321 §3.8: 421 closes the session; RFC 3463 §3.8: X.7.x is
# policy); greylisting also uses 4.7.x but only wants a later retry, which the schedule gives.
SLOW_DOWN = (re.compile(r"^421"), re.compile(r"^4\d\d[ -]4\.7\.\d+(?!.*grey ?list)", re.IGNORECASE))


def is_slow_down(code: int, text: str) -> bool:
    reply = f"{code} {text}"
    return any(pattern.search(reply) for pattern in SLOW_DOWN)


@dataclass(frozen=True, slots=True)
class Group:
    """Where a copy goes, for throttling: ``key`` names its shared pace ("" when nothing is limited)."""

    key: str
    rule: str
    per_minute: int | None = None
    per_hour: int | None = None
    per_day: int | None = None
    connections: int | None = None
    per_connection: int | None = None

    def __hash__(self) -> int:  # the key names the group; hashing every field cost a µs a copy
        return hash(self.key)

    @property
    def paced(self) -> bool:
        return bool(self.per_minute or self.per_hour or self.per_day)

    @property
    def dedicated(self) -> bool:
        """Carried by sessions of its own (a connection limit or a per-session count)."""
        return bool(self.connections or self.per_connection)


UNLIMITED = Group("", "default")


def _domain_key(domain: str) -> str:
    """Lowercase, A-labels: plongée-13.fr and xn--plonge-13-f4a.fr are one domain (RFC 5891)."""
    domain = domain.lower().rstrip(".")
    try:
        return idn.ascii_domain(domain)
    except idn.InvalidDomain:  # its copies fail at the client (5.1.3): any rule will do
        return domain


class Rules:
    """The rules as plain values (loaded in the database thread, used on the loop)."""

    def __init__(self, rules: Iterable[ThrottleRule], mx_of: Callable[[str], str | None] = lambda domain: None):
        self.by_domain: dict[str, Group] = {}
        self.by_mx: list[tuple[str, Group]] = []
        self.default = UNLIMITED
        self.mx_of = mx_of
        for rule in rules:
            group = Group(rule.name, rule.name, rule.per_minute, rule.per_hour, rule.per_day, rule.connections,
                          rule.per_connection)
            if rule.name == "default":
                self.default = group if group.paced or group.dedicated else UNLIMITED
                continue
            self.by_domain.update((_domain_key(domain), group) for domain in rule.domain_list)
            self.by_mx += [(pattern, group) for pattern in rule.mx_list]
        self._cache: dict[str, Group] = {}

    def group(self, address: str) -> Group:
        domain = _domain_key(address.rpartition("@")[2])
        found = self._cache.get(domain)
        if found is None:
            found = self.by_domain.get(domain) or self._by_mx(domain) or self._default(domain)
            if len(self._cache) < 100_000:
                self._cache[domain] = found
        return found

    def _by_mx(self, domain: str) -> Group | None:
        host = self.mx_of(domain)
        if not host:
            return None
        host = host.lower().rstrip(".")
        for pattern, group in self.by_mx:
            if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
                return group
        return None

    def _default(self, domain: str) -> Group:
        base = self.default
        if not (base.paced or base.dedicated):
            return base
        # The default rule holds for each other domain on its own.
        return Group(f"default:{domain}", "default", base.per_minute, base.per_hour, base.per_day,
                     base.connections, base.per_connection)


def load_rules(mx_of: Callable[[str], str | None] = lambda domain: None) -> Rules:
    return Rules(list(ThrottleRule.select()), mx_of)


def _fresh(key: str, now: datetime) -> ThrottleState:
    return ThrottleState(key=key, tat=now - CREDIT, horizon=now, hour_start=now, day_start=now, factor_at=now)


def _recover(state: ThrottleState, now: datetime) -> None:
    if state.factor < 1.0:
        minutes = max(0.0, (now - state.factor_at).total_seconds() / 60)
        state.factor = min(1.0, state.factor + RECOVERY_PER_MINUTE * minutes)
        state.factor_at = now


def interval(group: Group, state: ThrottleState) -> timedelta:
    """Time between two copies of the group at its current rate (zero without a per-minute rate)."""
    if not group.per_minute:
        return timedelta(0)
    return timedelta(seconds=60 / (group.per_minute * state.factor))


def _quota(group: Group, state: ThrottleState, now: datetime) -> tuple[int, datetime]:
    """Copies the hourly and daily windows still allow, and when the tighter one reopens."""
    if now >= state.hour_start + timedelta(hours=1):
        state.hour_start, state.hour_count = now, 0
    if now >= state.day_start + timedelta(days=1):
        state.day_start, state.day_count = now, 0
    left, reopens = math.inf, now
    if group.per_hour is not None and group.per_hour - state.hour_count < left:
        left, reopens = group.per_hour - state.hour_count, state.hour_start + timedelta(hours=1)
    if group.per_day is not None and group.per_day - state.day_count <= left:
        left, reopens = group.per_day - state.day_count, state.day_start + timedelta(days=1)
    return int(max(0, min(left, 1 << 30))), reopens


def admit_one(state: ThrottleState, group: Group, wanted: int, now: datetime) -> tuple[int, list[datetime]]:
    """How many of ``wanted`` copies may go now, and when each of the others may (changes ``state``).

    ``state.tat`` is the slot of the group's next copy. Slots left unused while no copy was due are
    lost beyond a credit of about a second (at least two slots), which bounds the burst after a quiet
    spell; while copies put off wait their turn, slots are kept for ten seconds, so that copies
    claimed late (a busy machine, the poll) catch up: the rate held over a long send is the
    configured one."""
    _recover(state, now)
    step = interval(group, state)
    left, reopens = _quota(group, state, now)
    if step:
        # Copies already put off (a backlog) keep their slots through a late claim up to CATCH_UP.
        window = CATCH_UP if state.horizon > now else max(CREDIT, 2 * step)
        base = max(state.tat, now - window)
        on_time = 0 if base > now else int((now - base) / step) + 1
    else:
        base, on_time = now, wanted
    granted = max(0, min(wanted, left, on_time))
    state.tat = max(state.tat, base + step * granted)
    state.hour_count += granted
    state.day_count += granted
    rest = wanted - granted
    if not rest:
        return granted, []
    start = max(state.horizon, state.tat, now)
    if granted == left:  # a quota is spent: nothing before its window reopens
        start = max(start, reopens)
    state.horizon = start + step * rest
    return granted, [start + step * n for n in range(rest)]


def slow_one(state: ThrottleState, group: Group, leftover: int, now: datetime) -> list[datetime]:
    """A slow-down reply: halve the rate (once per ``COOLDOWN``); when the ``leftover`` copies may go."""
    _recover(state, now)
    if state.slowed_at is None or now - state.slowed_at >= COOLDOWN:
        state.factor = max(SMALLEST_FACTOR, state.factor / 2)
        state.factor_at = state.slowed_at = now
        state.slowdowns += 1
    step = interval(group, state)
    if not step:  # no rate to halve: the leftover copies are all put off a while, not spaced a minute apart
        pause = now + 2 * COOLDOWN
        state.horizon = max(state.horizon, pause)
        return [pause] * leftover
    state.tat = max(state.tat, now) + step
    start = max(state.horizon, state.tat)
    state.horizon = start + step * leftover
    return [start + step * n for n in range(leftover)]


def _locked_states(keys: list[str], now: datetime) -> dict[str, ThrottleState]:
    """The state rows of ``keys``, created when missing, locked for this transaction (PostgreSQL)."""
    rows = [{"key": key, "tat": now - CREDIT, "horizon": now, "hour_start": now, "day_start": now, "factor_at": now}
            for key in keys]
    ThrottleState.insert_many(rows).on_conflict_ignore().execute()
    query = ThrottleState.select().where(ThrottleState.key.in_(keys))
    if outbox.is_postgres():
        query = query.for_update()
    return {state.key: state for state in query}


def admit(demand: dict[str, tuple[Group, int]], now: datetime) -> dict[str, tuple[int, list[datetime]]]:
    """For each paced group, how many of its wanted copies may go now and when the others may
    (database thread; one transaction for the batch, so that engines share each pace exactly)."""
    if not demand:
        return {}
    answer: dict[str, tuple[int, list[datetime]]] = {}
    with write_transaction():
        states = _locked_states(sorted(demand), now)
        for key, (group, wanted) in demand.items():
            state = states.get(key) or _fresh(key, now)
            answer[key] = admit_one(state, group, wanted, now)
            state.save()
    return answer


def slow_down(key: str, group: Group, leftover: int, now: datetime) -> list[datetime]:
    """Record a slow-down reply for ``group``; the times its ``leftover`` copies may go (database thread)."""
    with write_transaction():
        state = _locked_states([key], now)[key]
        times = slow_one(state, group, leftover, now)
        state.save()
    return times


def states() -> dict[str, ThrottleState]:
    """Every group's shared pace (the admin page shows them)."""
    return {state.key: state for state in ThrottleState.select()}
