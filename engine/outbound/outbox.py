"""The durable outbox: claim due deliveries with a lease, record results in batches, finish messages.

On PostgreSQL claims use ``FOR UPDATE SKIP LOCKED`` so several engine processes share the work
without waiting on each other; on SQLite a claim is one ``BEGIN IMMEDIATE`` transaction (SQLite
has one writer at a time anyway). Results are written with ``executemany`` in one transaction
per batch: a peewee call per row costs about 7 times more (../shared/PERFORMANCE.md).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

import peewee as pw

from engine import clock
from engine.db import database, sql_datetime
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
    attempts: int


@dataclass(frozen=True, slots=True)
class Result:
    delivery_id: int
    code: int  # SMTP reply code; 0 for a connection error (temporary)
    reply: str

    @property
    def outcome(self) -> str:
        if 200 <= self.code < 300:
            return DeliveryState.SENT
        if 500 <= self.code < 600:
            return DeliveryState.FAILED
        return DeliveryState.DEFERRED


def _is_postgres() -> bool:
    return isinstance(database.obj, pw.PostgresqlDatabase)


def _transaction() -> AbstractContextManager[object]:
    if isinstance(database.obj, pw.SqliteDatabase):
        return database.obj.atomic("IMMEDIATE")
    return database.atomic()


def claim_due(worker: str, limit: int, lease: timedelta, now: datetime | None = None) -> list[Claimed]:
    """Take up to ``limit`` due deliveries for ``worker`` until ``now + lease``, in one statement.

    A claim moves ``next_attempt_at`` to the end of the lease and leaves ``state`` alone: the row
    is simply not due while it is held, and becomes due again by itself if its worker dies. That
    touches one index per claim instead of two (this table takes a write per copy, three times).
    """
    now = now or clock.now()
    until = now + lease
    param = database.obj.param
    lock = " FOR UPDATE SKIP LOCKED" if _is_postgres() else ""
    sql = (f"UPDATE delivery SET next_attempt_at = {param}, claimed_until = {param}, claimed_by = {param}, "
           f"updated_at = {param} "
           f"WHERE id IN (SELECT id FROM delivery WHERE state IN ({param}, {param}) AND next_attempt_at <= {param} "
           f"ORDER BY next_attempt_at, id LIMIT {param}{lock}) "
           "RETURNING id, message_id, address, member_ids, reason, attempts")
    params = (until, until, worker, now, *DUE_STATES, now, limit)
    with _transaction():
        rows = database.obj.execute_sql(sql, params).fetchall()
    rows.sort()
    return [Claimed(*row) for row in rows]


def backoff(attempts: int, first: timedelta, longest: timedelta) -> timedelta:
    """Wait before retry number ``attempts`` (1-based): first, then doubled, capped (RFC 5321 §4.5.4.1)."""
    wait = first
    for _ in range(attempts - 1):  # doubling stops at the cap: 2**attempts would overflow timedelta
        if wait >= longest:
            break
        wait *= 2
    return min(wait, longest)


def record(results: list[Result], claimed: dict[int, Claimed], *, first: timedelta, longest: timedelta,
           lifetime: timedelta, received: dict[int, datetime], now: datetime | None = None) -> None:
    """Write each result: sent, failed (5xx, or expired), or deferred to its next attempt."""
    now = now or clock.now()
    stamp = sql_datetime(now)
    rows = []
    for result in results:
        item = claimed[result.delivery_id]
        attempts = item.attempts + 1
        state, due = result.outcome, now
        reply = result.reply[:1000]
        if state == DeliveryState.DEFERRED:
            due = now + backoff(attempts, first, longest)
            if due > received[item.message_id] + lifetime:
                state, reply = DeliveryState.FAILED, f"{reply} (gave up after {lifetime})"
        rows.append((state, attempts, stamp if due == now else sql_datetime(due), reply, stamp, result.delivery_id))
    if not rows:
        return
    param = database.obj.param
    sql = (f"UPDATE delivery SET state = {param}, attempts = {param}, next_attempt_at = {param}, "
           f"last_reply = {param}, updated_at = {param}, claimed_until = NULL, claimed_by = NULL "
           f"WHERE id = {param}")
    with database.atomic():
        cursor = database.obj.cursor()
        cursor.executemany(sql, rows)


def finish_messages(now: datetime | None = None) -> int:
    """Mark ``sending`` posts with no open delivery left as ``done``; returns how many."""
    now = now or clock.now()
    open_rows = Delivery.select(Delivery.id).where(
        (Delivery.message == Message.id) & Delivery.state.in_(DUE_STATES))
    return int(Message.update(state=MessageState.DONE, finished_at=now)
               .where((Message.state == MessageState.SENDING) & ~pw.fn.EXISTS(open_rows)).execute())


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
