"""Bounce scores: what one failure adds to an address's score, when the address is disabled, decay, clearing.

Mailman-style numbers (../shared/DELIVERABILITY.md §7.3): a hard bounce counts 1 and a soft one ½, at most
once a day per address (the heaviest of the day counts); a score with no failure for
``PALANQUEE_BOUNCE_STALE_AFTER`` starts again; a *hard* bounce that brings the score to the list's threshold
disables the address for every list (soft bounces alone never disable anyone: a full mailbox is the
member's passing trouble, not a dead address). An address disabled before and never cleared is disabled
again by its next hard bounce. Scores decay without a job: a stale score is read as zero (``current``)
and starts again at the next failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import peewee as pw

from engine import audit, clock
from engine.bounces.classify import Classification, Kind
from engine.bounces.models import Bounce
from engine.config import Settings
from engine.db import database

WEIGHTS = {Kind.HARD: 1.0, Kind.SOFT: 0.5}  # policy rejections, auto-replies and unknowns count nothing


@dataclass(frozen=True)
class Counted:
    weight: float  # what this failure added
    score: float  # the address's score after it
    disabled_now: bool  # this failure disabled the address


def weight_of(found: Classification) -> float:
    """A delay warning counts nothing: the message may still arrive."""
    return WEIGHTS.get(found.kind, 0.0) if found.final else 0.0


def _locked_row(key: str) -> Bounce:
    def read() -> Bounce | None:
        query = Bounce.select().where(Bounce.email_key == key)
        if isinstance(database.obj, pw.PostgresqlDatabase):
            query = query.for_update()  # another engine counting this address waits for our commit
        return query.first()  # type: ignore[no-any-return]

    row = read()
    if row is None:
        Bounce.insert(email_key=key).on_conflict_ignore().execute()
        row = read()
    assert row is not None
    return row


def is_disabled(row: Bounce, now: datetime) -> bool:
    return row.disabled_until is not None and row.disabled_until > now


def count(settings: Settings, key: str, found: Classification, threshold: float, now: datetime) -> Counted:
    """Count one failure of address ``key`` (call inside ``engine.db.write_transaction()``)."""
    row = _locked_row(key)
    weight = weight_of(found)
    if weight <= 0:
        return Counted(0.0, row.score, False)
    if row.last_bounce_at is None or now - row.last_bounce_at > settings.bounce_stale_after:
        row.score, row.counted_on, row.counted_weight = 0.0, None, 0.0
    day: date = clock.to_local(now, settings.timezone).date()
    if row.counted_on == day:
        added = max(0.0, weight - row.counted_weight)
        row.counted_weight = max(weight, row.counted_weight)
    else:
        added, row.counted_on, row.counted_weight = weight, day, weight
    row.score += added
    row.bounce_count += 1
    row.last_bounce_at = now
    row.last_kind, row.last_status, row.last_reply = found.kind, found.status[:16], found.diagnostic[:1000]
    disable = (found.kind == Kind.HARD and not is_disabled(row, now)
               and (row.score >= threshold or row.disabled_at is not None))
    if disable:
        row.disabled_at, row.disabled_until = now, now + settings.bounce_disabled_for
    row.save()
    if disable:
        audit.record("bounce.disabled", row, actor_label="system", address=key, score=row.score,
                     status=found.status, reply=found.diagnostic[:300])
    return Counted(added, row.score, disable)


def clear(key: str, *, how: str, now: datetime | None = None) -> bool:
    """The address works again (a probe came through, or a link mailed to it was confirmed): score and
    disabling forgotten. Returns whether there was anything to clear."""
    now = now or clock.now()
    done = (Bounce.update(score=0.0, counted_on=None, counted_weight=0.0, disabled_at=None, disabled_until=None,
                          probe_sent_at=None)
            .where((Bounce.email_key == key) & ((Bounce.score > 0) | Bounce.disabled_at.is_null(False)))
            .execute())
    if done:
        row = Bounce.get(Bounce.email_key == key)
        audit.record("bounce.cleared", row, actor_label="system", address=key, how=how)
    return bool(done)


def current(settings: Settings, row: Bounce, now: datetime | None = None) -> float:
    """The score as it stands: zero once stale (a disabled address keeps its score, for staff to read)."""
    now = now or clock.now()
    if is_disabled(row, now) or row.last_bounce_at is None:
        return float(row.score)
    return 0.0 if now - row.last_bounce_at > settings.bounce_stale_after else float(row.score)


def threshold_of(settings: Settings, list_threshold: float | None) -> float:
    return float(list_threshold) if list_threshold else float(settings.bounce_threshold)
