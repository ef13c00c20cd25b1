"""Results written as replies arrive, in small groups, so that a crash loses only what was on the wire.

One write at a time runs in the database thread; results that arrive meanwhile (and in a short
window after the first of them) make the next group. A copy whose reply came is thus recorded a few
milliseconds later, and a process killed at any moment re-sends at most the copies whose replies
were still unrecorded: about connections × pipelining depth, instead of a whole claimed batch. A
write that fails (the database is unreachable) is retried with backoff; nothing is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from engine import clock
from engine.config import Settings
from engine.outbound.models import DeliveryState
from engine.outbound.outbox import Claimed, Result, record, release_at

log = logging.getLogger("palanquee.delivery")
RunInDb = Callable[..., Awaitable[Any]]
Counted = Callable[[str, str], None]  # (destination group, outcome) of each result written


class Recorder:
    """Collects results of claimed copies and writes them through ``outbox.record`` as they come."""

    window = 0.003  # seconds to let a group gather after its first result
    longest_pause = 5.0  # between two tries of a failed write

    def __init__(self, settings: Settings, run_in_db: RunInDb, counted: Counted | None = None) -> None:
        self.settings, self.run_in_db, self.counted = settings, run_in_db, counted
        self.claims: dict[int, Claimed] = {}
        self.group_of: dict[int, str] = {}  # delivery id -> its throttle group (metrics)
        self.unwritten: set[int] = set()  # results and releases known here, not yet in the database
        self.received: dict[int, datetime] = {}  # message id -> reception (the retry lifetime counts from it)
        self.waiting: list[Result] = []
        self.releasing: list[tuple[int, datetime | None]] = []  # untried claims, due now (None) or later
        self.task: asyncio.Task[None] | None = None
        self.groups = 0  # writes done (for tests and logs)

    def expect(self, claimed: list[Claimed], busy: set[int] | frozenset[int] = frozenset()) -> list[Claimed]:
        """Await the results of ``claimed``; returns those to send. A copy claimed again while this process
        still has it (in ``busy``: in a batch being sent; or its result not yet written) because its lease
        ran out first (a slow batch, a busy database) is not sent twice: the new claim only extends the
        lease, and counts the attempt."""
        fresh = [item for item in claimed if item.id not in busy and item.id not in self.unwritten]
        self.claims.update((item.id, item) for item in claimed)
        if len(fresh) < len(claimed):
            log.warning("%s copies claimed again while still handled here (a lease shorter than a batch?); "
                        "not sent twice", len(claimed) - len(fresh))
        return fresh

    def forget(self, ids: set[int]) -> None:
        """Claims of a batch that ended without a result for them (an error): left to their lease."""
        for delivery_id in ids - self.unwritten:
            self.claims.pop(delivery_id, None)
            self.group_of.pop(delivery_id, None)

    def grouped(self, ids: list[int], group: str) -> None:
        """The throttle group the copies ``ids`` were sent under (their results are counted by group)."""
        self.group_of.update(dict.fromkeys(ids, group))

    def received_at(self, message_id: int, moment: datetime) -> None:
        self.received[message_id] = moment
        if len(self.received) > 1000:
            self.received.pop(next(iter(self.received)))

    def add(self, result: Result) -> None:
        self.waiting.append(result)
        self.unwritten.add(result.delivery_id)
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._write_all())

    def give_back(self, ids: list[int], due: list[datetime] | None = None) -> None:
        """Claims never tried: released (due at once or at ``due``, attempt not counted) with the next group."""
        if ids:
            times: list[datetime | None] = list(due) if due is not None else [None] * len(ids)
            self.releasing += zip(ids, times, strict=True)
            self.unwritten.update(ids)
            if self.task is None or self.task.done():
                self.task = asyncio.ensure_future(self._write_all())

    async def drain(self) -> None:
        """Wait until every result so far is written."""
        while self.task is not None and not self.task.done():
            await asyncio.shield(self.task)

    async def _write_all(self) -> None:
        pause = 0.05
        while self.waiting or self.releasing:
            await asyncio.sleep(self.window)
            group, self.waiting = self.waiting, []
            released, self.releasing = self.releasing, []
            try:
                written = await self._write(group, released)
            except Exception:
                self.waiting[:0], self.releasing[:0] = group, released
                log.warning("recording %s results failed; retrying in %.2f s", len(group) + len(released), pause,
                            exc_info=pause == 0.05)
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.longest_pause)
                continue
            pause = 0.05
            self.groups += 1
            self._written(written, group)
            for delivery_id in [*(result.delivery_id for result in group), *(pair[0] for pair in released)]:
                self.claims.pop(delivery_id, None)
                self.group_of.pop(delivery_id, None)
                self.unwritten.discard(delivery_id)

    def _written(self, written: list[tuple[int, str, str]], group: list[Result]) -> None:
        """Count each result by group and outcome; log each copy not sent, with its ids."""
        for delivery_id, state, reply in written:
            if self.counted is not None:
                self.counted(self.group_of.get(delivery_id, ""), state)
            if state != DeliveryState.SENT:
                claim = self.claims.get(delivery_id)
                log.info("delivery %s %s: %s", delivery_id, state, reply, extra={
                    "delivery_id": delivery_id, "message_id": claim.message_id if claim else None,
                    "outcome": state, "attempts": claim.attempts if claim else None, "reply": reply})

    async def _write(self, group: list[Result], released: list[tuple[int, datetime | None]]) -> list[tuple[int, str, str]]:
        settings = self.settings
        unknown = [result for result in group if result.delivery_id not in self.claims]
        if unknown:  # never wedge the recorder on one: a result of a copy whose claim is settled is dropped
            log.warning("results of deliveries %s arrived after their claims were settled; ignored",
                        [result.delivery_id for result in unknown])
            group = [result for result in group if result.delivery_id in self.claims]
        claims = {result.delivery_id: self.claims[result.delivery_id] for result in group}
        now = clock.now()
        received = {item.message_id: self.received.get(item.message_id, now) for item in claims.values()}
        due = [(delivery_id, moment or now) for delivery_id, moment in released]
        written: list[tuple[int, str, str]] = await self.run_in_db(
            _write, group, claims, due, first=settings.retry_first, longest=settings.retry_max,
            lifetime=settings.retry_lifetime, received=received, now=now, settings=settings)
        return written


def _write(results: list[Result], claims: dict[int, Claimed], released: list[tuple[int, datetime]],
           **options: Any) -> list[tuple[int, str, str]]:
    written = record(results, claims, **options)
    release_at(released)
    return written
