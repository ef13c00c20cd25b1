"""A batch's copies by destination group, handed out to the transport's lanes as sessions.

A group whose rule limits connections or copies per connection is carried by sessions of its own:
at most ``connections`` at once (the rule's figure shared among this host's delivery processes),
each carrying at most ``per_connection`` copies before it is closed. All other copies share the
lanes' long-lived sessions. A group that answered "slow down" gets no more copies in this batch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.outbound.outbox import Claimed
from engine.outbound.smtp import Item
from engine.outbound.throttle import Group


@dataclass(eq=False)
class Session:
    """One connection's share of the batch: copies of one group (or of the shared pool)."""

    dispatch: Dispatch
    group: Group | None  # None: the shared pool, on a lane's long-lived connection
    sent: int = 0

    def take(self) -> Item | None:
        return self.dispatch.take(self)

    def put_back(self, items: list[Item]) -> None:
        """Copies whose content never left a dying connection: first in line for the next session."""
        groups = self.dispatch.group_of
        self.dispatch.ready[self.group].extendleft((groups[item[0]], item) for item in reversed(items))
        self.dispatch.changed.set()

    @property
    def dedicated(self) -> bool:
        return self.group is not None


Entry = tuple[Group, Claimed]


@dataclass(eq=False)
class Dispatch:
    build: Callable[[Claimed], Item | None]  # None when the copy could not be built (already answered)
    stopping: Callable[[], bool]
    processes: int = 1
    # copies built ``together`` at a time (their signatures back to back), waiting in ``ready`` for a session
    build_many: Callable[[list[Claimed]], list[Item | None]] | None = None
    together: int = 1
    queues: dict[Group | None, deque[Entry]] = field(default_factory=dict)  # by session kind
    ready: dict[Group | None, deque[tuple[Group, Item]]] = field(default_factory=dict)  # put back
    group_of: dict[Any, Group] = field(default_factory=dict)  # a built copy's group, by its key
    open_sessions: dict[Group, int] = field(default_factory=dict)
    slowed: set[Group] = field(default_factory=set)
    held: dict[Group, list[Entry]] = field(default_factory=dict)  # set aside: their group slowed down
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, group: Group, claimed: list[Claimed]) -> None:
        kind = group if group.dedicated else None
        self.queues.setdefault(kind, deque()).extend((group, item) for item in claimed)
        self.ready.setdefault(kind, deque())

    def _limit(self, group: Group) -> int:
        return max(1, group.connections // self.processes) if group.connections else 1 << 30

    def _pending(self, kind: Group | None) -> bool:
        return bool(self.queues.get(kind) or self.ready.get(kind)) and kind not in self.slowed

    def open(self, lane: int) -> Session | None:
        """A session for ``lane``: a dedicated group with a free slot first (in turn), else the shared pool."""
        if self.stopping():
            return None
        groups = [kind for kind in self.queues if kind is not None]
        for n in range(len(groups)):
            group = groups[(lane + n) % len(groups)]
            if self._pending(group) and self.open_sessions.get(group, 0) < self._limit(group):
                self.open_sessions[group] = self.open_sessions.get(group, 0) + 1
                return Session(self, group)
        return Session(self, None) if self._pending(None) else None

    def close(self, session: Session) -> None:
        if session.group is not None:
            self.open_sessions[session.group] -= 1
        self.changed.set()

    async def wait(self) -> bool:
        """Wait until a session may open; False when no copy is left for anyone."""
        while not self.stopping():
            if not any(self._pending(kind) for kind in self.queues):
                return False
            if any(self._pending(kind) and (kind is None or self.open_sessions.get(kind, 0) < self._limit(kind))
                   for kind in self.queues):
                return True
            self.changed.clear()
            await self.changed.wait()
        return False

    def take(self, session: Session) -> Item | None:
        group = session.group
        if self.stopping() or group in self.slowed:
            return None
        if group is not None and group.per_connection and session.sent >= group.per_connection:
            return None
        item = self._next(group)
        if item is not None:
            session.sent += 1
        return item

    def _next(self, kind: Group | None) -> Item | None:
        ready, queue = self.ready.get(kind), self.queues.get(kind)
        while True:
            while ready:
                group, item = ready.popleft()
                if group not in self.slowed:
                    return item
                self.held.setdefault(group, []).append((group, _claim_of(item)))
            if not queue:
                return None
            if self.build_many is not None and self.together > 1 and len(queue) > 1:
                self._build_together(queue, ready)
                continue
            group, claim = queue.popleft()
            if group in self.slowed:
                self.held.setdefault(group, []).append((group, claim))
                continue
            built = self.build(claim)
            if built is not None:
                self.group_of[built[0]] = group
                return built

    def _build_together(self, queue: deque[Entry], ready: deque[tuple[Group, Item]] | None) -> None:
        """The next ``together`` copies of ``queue`` built at once, put in ``ready`` (the session's kind)."""
        assert self.build_many is not None and ready is not None
        entries: list[Entry] = []
        while queue and len(entries) < self.together:
            group, claim = queue.popleft()
            if group in self.slowed:
                self.held.setdefault(group, []).append((group, claim))
            else:
                entries.append((group, claim))
        if entries:
            for (group, _), built in zip(entries, self.build_many([claim for _, claim in entries]), strict=True):
                if built is not None:
                    self.group_of[built[0]] = group
                    ready.append((group, built))

    def take_any(self) -> Item | None:
        """The next copy whatever its group (a transport without connections: the capture)."""
        for kind in list(self.queues):
            if not self.stopping() and (item := self._next(kind)) is not None:
                return item
        return None

    def slow(self, key: Any) -> None:
        """The copy ``key`` got a slow-down reply: its group gets no more copies in this batch."""
        group = self.group_of.get(key)
        if group is not None:
            self.slowed.add(group)
            self.changed.set()

    def left(self) -> dict[Group, list[int]]:
        """The delivery ids no session carried, by group (never built, put back, or set aside)."""
        found: dict[Group, list[int]] = {}
        for group, entries in self.held.items():
            found.setdefault(group, []).extend(claim.id for _, claim in entries)
        for kind in self.queues:
            for group, claim in self.queues[kind]:
                found.setdefault(group, []).append(claim.id)
            for group, item in self.ready[kind]:
                found.setdefault(group, []).append(item[0])
        return found


def _claim_of(item: Item) -> Claimed:
    """A placeholder claim for a built copy set aside (only its id is used)."""
    return Claimed(item[0], 0, item[2], "", "", 0)
