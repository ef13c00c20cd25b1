"""The durable outbox: claim due deliveries with a lease, record results, release claims, finish messages.

On PostgreSQL claims use ``FOR UPDATE SKIP LOCKED`` so several engine processes share the work
without waiting on each other; on SQLite a claim is one ``BEGIN IMMEDIATE`` transaction (SQLite
has one writer at a time anyway). A claim counts the attempt, so a copy sent by a worker that died
before recording still leaves its trace. Results are written with ``executemany``: a peewee call
per row costs about 7 times more (../shared/PERFORMANCE.md). ``record`` is the one place where a
delivery's result is written.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

import peewee as pw

from engine import clock
from engine.bounces.service import record_delivery_failures
from engine.config import Settings
from engine.db import database, sql_datetime, write_transaction
from engine.outbound.models import Delivery, DeliveryState
from engine.posting.models import Message, MessageState

# Open rows: not yet sent or failed. A claimed row keeps its state (see claim_due).
DUE_STATES = (DeliveryState.QUEUED, DeliveryState.DEFERRED)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    message_id: int
    address: str
    member_ids: str
    reason: str
    attempts: int  # counting this claim's attempt


@dataclass(frozen=True, slots=True)
class Result:
    delivery_id: int
    code: int  # SMTP reply code; 0 for a connection or internal error (temporary)
    reply: str
    local: bool = False  # the engine's own verdict (cannot render, relay cannot carry it), not a receiver's

    @property
    def outcome(self) -> str:
        if 200 <= self.code < 300:
            return DeliveryState.SENT
        if 500 <= self.code < 600:
            return DeliveryState.FAILED
        return DeliveryState.DEFERRED


def is_postgres() -> bool:
    return isinstance(database.obj, pw.PostgresqlDatabase)


def claim_due(worker: str, limit: int, lease: timedelta, now: datetime | None = None) -> list[Claimed]:
    """Take up to ``limit`` due deliveries for ``worker`` until ``now + lease``, in one statement.

    A claim moves ``next_attempt_at`` to the end of the lease and leaves ``state`` alone: the row
    is simply not due while it is held, and becomes due again by itself if its worker dies. That
    touches one index per claim instead of two (this table takes a write per copy, three times).
    The claim counts the attempt (``release`` gives it back for copies that were never tried).
    """
    now = now or clock.now()
    until = now + lease
    param = database.obj.param
    lock = " FOR UPDATE SKIP LOCKED" if is_postgres() else ""
    sql = (f"UPDATE delivery SET next_attempt_at = {param}, claimed_until = {param}, claimed_by = {param}, "
           f"updated_at = {param}, attempts = attempts + 1 "
           f"WHERE id IN (SELECT id FROM delivery WHERE state IN ({param}, {param}) AND next_attempt_at <= {param} "
           f"ORDER BY next_attempt_at, id LIMIT {param}{lock}) "
           "RETURNING id, message_id, address, member_ids, reason, attempts")
    params = (until, until, worker, now, *DUE_STATES, now, limit)
    with write_transaction():
        rows = database.obj.execute_sql(sql, params).fetchall()
    rows.sort()
    return [Claimed(*row) for row in rows]


def release(ids: list[int], due: datetime | None = None) -> int:
    """Give claims back untried: due again at ``due`` (now by default), their attempt not counted."""
    moment = due or clock.now()
    return release_at([(delivery_id, moment) for delivery_id in ids])


def release_at(pairs: list[tuple[int, datetime]]) -> int:
    """Give claims back untried, each due at its own time (throttling puts copies off this way)."""
    if not pairs:
        return 0
    param = database.obj.param
    sql = (f"UPDATE delivery SET next_attempt_at = {param}, attempts = attempts - 1, claimed_until = NULL, "
           f"claimed_by = NULL WHERE id = {param} AND claimed_by IS NOT NULL AND state IN ({param}, {param})")
    with database.atomic():
        database.obj.cursor().executemany(sql, [(sql_datetime(due), delivery_id, *DUE_STATES)
                                                for delivery_id, due in pairs])
    return len(pairs)


def backoff(attempts: int, first: timedelta, longest: timedelta) -> timedelta:
    """Wait before retry number ``attempts`` (1-based): first, then doubled, capped (RFC 5321 §4.5.4.1)."""
    wait = first
    for _ in range(attempts - 1):  # doubling stops at the cap: 2**attempts would overflow timedelta
        if wait >= longest:
            break
        wait *= 2
    return min(wait, longest)


RETRY_SPREAD = 0.25  # each wait is lengthened by up to a quarter, so that a list's retries do not come at once


def retry_after(attempts: int, first: timedelta, longest: timedelta, spread: float | None = None) -> timedelta:
    """The wait before the next try of a copy that failed temporarily ``attempts`` times: ``first``
    (greylisting lets a sender through after a few minutes), doubled each time up to ``longest``,
    lengthened by a random part of up to a quarter (``spread`` in [0, 1) replaces the draw)."""
    draw = random.random() if spread is None else spread
    return backoff(attempts, first, longest) * (1 + RETRY_SPREAD * draw)


def record(results: list[Result], claimed: dict[int, Claimed], *, first: timedelta, longest: timedelta,
           lifetime: timedelta, received: dict[int, datetime], now: datetime | None = None,
           settings: Settings | None = None) -> list[tuple[int, str, str]]:
    """Write each result: sent, failed (5xx, or expired), or deferred to its next attempt.

    The one place where a delivery's result is written (its attempt was counted by its claim). With
    ``settings``, failed copies count against their address as bounces do (``engine/bounces``).
    Returns what was written: (delivery id, state, reply) of each result."""
    now = now or clock.now()
    stamp = sql_datetime(now)
    rows = []
    tally: dict[int, list[int]] = {}  # message id → [sent, failed] in this batch
    for result in results:
        item = claimed[result.delivery_id]
        attempts = max(1, item.attempts)
        state, due = result.outcome, now
        reply = result.reply[:1000]
        if state == DeliveryState.DEFERRED:
            due = now + retry_after(attempts, first, longest)
            if due > received[item.message_id] + lifetime:
                state, reply = DeliveryState.FAILED, f"{reply} (gave up after {lifetime})"
        if state != DeliveryState.DEFERRED:
            tally.setdefault(item.message_id, [0, 0])[state == DeliveryState.FAILED] += 1
        rows.append((state, stamp if due == now else sql_datetime(due), reply, stamp, result.delivery_id))
    if not rows:
        return []
    param = database.obj.param
    sql = (f"UPDATE delivery SET state = {param}, next_attempt_at = {param}, "
           f"last_reply = {param}, updated_at = {param}, claimed_until = NULL, claimed_by = NULL "
           f"WHERE id = {param}")
    counters = (f"UPDATE message SET sent_count = sent_count + {param}, failed_count = failed_count + {param} "
                f"WHERE id = {param}")
    with database.atomic():
        cursor = database.obj.cursor()
        cursor.executemany(sql, rows)
        cursor.executemany(counters, [(sent, failed, message_id) for message_id, (sent, failed) in tally.items()])
    if settings is not None:
        record_delivery_failures(settings, [(row[4], row[2]) for row in rows if row[0] == DeliveryState.FAILED])
    return [(row[4], row[0], row[2]) for row in rows]


def finish_messages(now: datetime | None = None) -> int:
    """Mark ``sending`` posts with no open delivery left as ``done``, their sent and failed copies counted exactly
    once (the running counters of ``record`` could drift if a result were ever recorded twice); returns how many."""
    now = now or clock.now()
    open_rows = Delivery.select(Delivery.id).where(
        (Delivery.message == Message.id) & Delivery.state.in_(DUE_STATES))
    return int(Message.update(state=MessageState.DONE, finished_at=now, **exact_counters())
               .where((Message.state == MessageState.SENDING) & ~pw.fn.EXISTS(open_rows)).execute())


def exact_counters() -> dict[str, pw.SelectQuery]:
    """``Message.update`` arguments recounting a message's sent and failed copies from its delivery rows (for
    code that changes deliveries other than through ``record``: the running counters must stay true)."""
    return {"sent_count": _copies(DeliveryState.SENT), "failed_count": _copies(DeliveryState.FAILED)}


def _copies(state: str) -> pw.SelectQuery:
    return Delivery.select(pw.fn.COUNT(Delivery.id)).where((Delivery.message == Message.id) & (Delivery.state == state))


def next_due_at() -> datetime | None:
    """When the earliest open delivery falls due (the workers sleep until then)."""
    row: datetime | None = (Delivery.select(pw.fn.MIN(Delivery.next_attempt_at))
                            .where(Delivery.state.in_(DUE_STATES)).scalar())
    return row


def counts(message_id: int) -> dict[str, int]:
    """Deliveries of a message by state (every state present, zeros included)."""
    found = dict.fromkeys(DeliveryState.ALL, 0)
    query = (Delivery.select(Delivery.state, pw.fn.COUNT(Delivery.id))
             .where(Delivery.message == message_id).group_by(Delivery.state).tuples().iterator())
    for state, number in query:
        found[state] = number
    return found
