"""The delivery worker's side of throttling: rules (reloaded every half minute), a batch's admission,
slow-downs. The pace itself lives in the database (``throttle``), shared by every engine."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from engine import clock
from engine.config import Settings
from engine.outbound import mx, throttle
from engine.outbound.outbox import Claimed
from engine.outbound.throttle import Group, Rules

RunInDb = Callable[..., Awaitable[Any]]
RULES_TTL = 30.0  # seconds: an administrator's edit reaches every engine within this


class Pacer:
    def __init__(self, settings: Settings, run_in_db: RunInDb,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        """``monotonic`` (replaceable in tests) times the rules' reloading and the MX cache."""
        self.settings, self.run_in_db, self.monotonic = settings, run_in_db, monotonic
        self.mx = mx.MxCache(monotonic=monotonic) if settings.throttle_mx_lookup else None
        self._rules: Rules | None = None
        self._loaded = 0.0

    async def rules(self) -> Rules:
        """The rules, reloaded every ``RULES_TTL`` (and with them what MX lookups found meanwhile)."""
        if self._rules is None or self.monotonic() - self._loaded > RULES_TTL:
            mx_of = self.mx.host if self.mx is not None else (lambda domain: None)
            self._rules = await self.run_in_db(throttle.load_rules, mx_of)
            self._loaded = self.monotonic()
        return self._rules

    async def admit(self, items: list[Claimed]) -> tuple[dict[Group, list[Claimed]], list[tuple[int, datetime]]]:
        """The copies that may go now, by group; the others with the time each group can take them."""
        rules = await self.rules()
        groups: dict[Group, list[Claimed]] = {}
        for item in items:
            groups.setdefault(rules.group(item.address), []).append(item)
        demand = {group.key: (group, len(members)) for group, members in groups.items() if group.paced}
        if not demand:
            return groups, []
        grants = await self.run_in_db(throttle.admit, demand, clock.now())
        later: list[tuple[int, datetime]] = []
        for group, members in groups.items():
            if group.key in grants:
                granted, times = grants[group.key]
                later += zip((item.id for item in members[granted:]), times, strict=True)
                groups[group] = members[:granted]
        return {group: members for group, members in groups.items() if members}, later

    async def slowed(self, group: Group, leftover: int) -> list[datetime]:
        """A slow-down reply from ``group``: its rate halves; when its ``leftover`` copies may go."""
        if not group.key:  # an unlimited domain has no shared pace: try again in a minute
            moment = clock.now()
            return [moment + throttle.COOLDOWN * 2] * leftover
        return await self.run_in_db(throttle.slow_down, group.key, group, leftover, clock.now())  # type: ignore[no-any-return]
