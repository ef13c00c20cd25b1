"""Engine heartbeats: each engine process (delivery helpers too) writes its row every few seconds, so
that the portal's ``/healthz`` and the metrics can tell that mail is being handled. One row per process,
named like its delivery claims (``host:pid``); a graceful stop removes it, a crash leaves it to age."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import peewee as pw

from engine import clock
from engine.db import BaseModel

log = logging.getLogger("palanquee.engine")
RunInDb = Callable[..., Awaitable[Any]]
INTERVAL = timedelta(seconds=10)  # between two beats of one process (at most a quarter of the max age)
FORGOTTEN_AFTER = timedelta(days=1)  # rows of processes that died without a word are pruned after this


class EngineHeartbeat(BaseModel):
    name = pw.CharField(max_length=100, unique=True)  # host:pid, as in delivery.claimed_by
    role = pw.CharField(max_length=16)  # "engine" (intake, expansion, jobs, delivery), "delivery" or "intake" (helpers)
    started_at = pw.DateTimeField()
    seen_at = pw.DateTimeField(index=True)


MODELS = [EngineHeartbeat]


def interval(max_age: timedelta) -> float:
    """Seconds between beats: every 10 s, or more often when the accepted age is short (tests)."""
    return max(0.05, min(INTERVAL, max_age / 4).total_seconds())


def beat(name: str, role: str, started_at: datetime, now: datetime | None = None) -> None:
    """Write this process's heartbeat (one upsert, its own transaction)."""
    now = now or clock.now()
    (EngineHeartbeat.insert(name=name[:100], role=role, started_at=started_at, seen_at=now)
     .on_conflict(conflict_target=[EngineHeartbeat.name],
                  update={EngineHeartbeat.seen_at: now, EngineHeartbeat.role: role})
     .execute())


def forget(name: str) -> None:
    """A graceful stop: this process no longer handles mail."""
    EngineHeartbeat.delete().where(EngineHeartbeat.name == name[:100]).execute()


def prune(now: datetime | None = None) -> int:
    """Remove the rows of processes silent for a day (scheduled job)."""
    cutoff = (now or clock.now()) - FORGOTTEN_AFTER
    return int(EngineHeartbeat.delete().where(EngineHeartbeat.seen_at < cutoff).execute())


@dataclass(frozen=True)
class Liveness:
    alive: int  # processes whose heartbeat is recent enough
    latest: datetime | None  # the most recent heartbeat of any process


def liveness(max_age: timedelta, now: datetime | None = None) -> Liveness:
    """How many engine processes wrote their heartbeat within ``max_age``, and the latest one: one
    query over a table of one row per process (what ``/healthz`` asks)."""
    cutoff = (now or clock.now()) - max_age
    fresh = pw.fn.SUM(pw.Case(None, [(EngineHeartbeat.seen_at >= cutoff, 1)], 0))
    row: tuple[Any, ...] = EngineHeartbeat.select(fresh, pw.fn.MAX(EngineHeartbeat.seen_at)).tuples().get()  # type: ignore[assignment]
    latest = row[1]
    if isinstance(latest, str):  # SQLite returns an aggregate's datetime as text
        latest = datetime.fromisoformat(latest)
    return Liveness(int(row[0] or 0), latest)



async def keep_beating(run_in_db: RunInDb, name: str, role: str, max_age: timedelta) -> None:
    """Write the heartbeat now and then every ``interval(max_age)`` seconds, through the engine's
    database thread (so a stuck thread shows as a silent engine); failures are logged once per outage.
    Runs until cancelled."""
    started, failures = clock.now(), 0
    while True:
        try:
            await run_in_db(beat, name, role, started)
            if failures:
                log.info("heartbeat written again after %s failure(s)", failures)
            failures = 0
        except Exception as exc:  # noqa: BLE001 - the database is away; the engine's other loops say more
            failures += 1
            if failures == 1:
                log.warning("cannot write the heartbeat: %s", " ".join(str(exc).split())[:200])
        await asyncio.sleep(interval(max_age))
