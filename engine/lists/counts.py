"""How many addresses each list reaches, kept for the staff's lists page instead of resolved for every row.

Counting a list of 100,000 members reads 100,000 rows (about half a second); the lists page shows fifty lists.
So each list's count is stored with the moment it was taken (``list_count``), and taken again:

* at once, by the staff actions that change whom a list reaches (criteria, static subscribers): their request
  already does work of that size;
* by the engine's scheduled job, first for the lists marked changed since their count (an opt-out, a rejoin:
  ``mark_changed``), then for every count older than ``MAX_AGE``, because the directory changes lists without
  touching them (imports, address changes, new mandates, and time itself: mandates end, licences lapse);
* for free at every expansion, whose recipient count is the list's count at that moment.

The lists page reads every count of its page in one query, and counts inline only lists never counted yet,
within a small budget (new lists are counted when created).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import peewee as pw

from engine import clock
from engine.db import BaseModel
from engine.lists.listing import ListSummary
from engine.lists.models import MailingList
from engine.lists.resolve import count_recipients
from engine.prepared import Prepared, slot

MAX_AGE = timedelta(hours=1)  # the oldest a count gets before the engine takes it again
CLAIM = timedelta(minutes=10)  # an engine recounting a list holds it this long (several engines share the work)
PAGE_BUDGET = 0.1  # seconds of CPU a page may spend counting lists never counted


class ListCount(BaseModel):
    mailing_list = pw.ForeignKeyField(MailingList, primary_key=True, backref="count", on_delete="CASCADE")
    recipients = pw.IntegerField(null=True)  # None: never counted yet
    counted_at = pw.DateTimeField(null=True)  # when the counted state was read (the count's start)
    changed_at = pw.DateTimeField(null=True)  # the latest change that may have moved the count
    claimed_until = pw.DateTimeField(null=True)  # an engine is counting it

    if TYPE_CHECKING:  # the id peewee adds beside the foreign key
        mailing_list_id: pw.ForeignKeyField[int]


@dataclass(frozen=True)
class Count:
    recipients: int | None  # None: not counted yet
    counted_at: datetime | None
    stale: bool  # changed since, or older than MAX_AGE: a new count is on its way


def record(list_id: int, recipients: int, at: datetime) -> None:
    """Store a count read at ``at`` (unless a count read later was stored meanwhile)."""
    (ListCount.insert(mailing_list=list_id, recipients=recipients, counted_at=at)
     .on_conflict(conflict_target=[ListCount.mailing_list],
                  update={ListCount.recipients: recipients, ListCount.counted_at: at, ListCount.claimed_until: None},
                  where=ListCount.counted_at.is_null() | (ListCount.counted_at <= at))
     .execute())


def recount(ml: MailingList) -> int:
    """Count the list now and store it."""
    at = clock.now()
    recipients = count_recipients(ml)
    record(ml.id, recipients, at)
    return recipients


def mark_changed(list_id: int, at: datetime | None = None) -> None:
    """Something that may move the list's count happened (an opt-out, a rejoin): recount it soon."""
    at = at or clock.now()
    (ListCount.insert(mailing_list=list_id, changed_at=at)
     .on_conflict(conflict_target=[ListCount.mailing_list], update={ListCount.changed_at: at}).execute())


_STORED: dict[int, Prepared[tuple[int, int | None, Any, Any]]] = {}


def _stored(count: int) -> Prepared[tuple[int, int | None, Any, Any]]:
    """The stored counts of ``count`` lists (slots ``l0``…) as the driver's tuples (list, recipients, counted,
    changed): compiled once per number of lists on a page."""
    found = _STORED.get(count)
    if found is None:
        found = Prepared(lambda: ListCount.select(
            ListCount.mailing_list, ListCount.recipients, ListCount.counted_at, ListCount.changed_at)
            .where(ListCount.mailing_list.in_([slot(f"l{i}") for i in range(count)])).tuples())
        if count <= 100:
            _STORED[count] = found
    return found


def _is_stale(counted_at: datetime | None, changed_at: datetime | None, now: datetime) -> bool:
    if counted_at is None:
        return True
    return (changed_at is not None and changed_at > counted_at) or counted_at < now - MAX_AGE


def counts_of(lists: Sequence[MailingList | ListSummary], *, budget: float = PAGE_BUDGET) -> dict[int, Count]:
    """The stored count of each list (one query); lists never counted are counted here within ``budget``."""
    now = clock.now()
    # SQLite gives dates as text: converted as peewee converts them
    as_date = cast(Callable[[Any], datetime | None], ListCount.counted_at.python_value)
    stored = {list_id: (recipients, as_date(counted), as_date(changed)) for list_id, recipients, counted, changed
              in _stored(len(lists)).rows(**{f"l{i}": ml.id for i, ml in enumerate(lists)})} if lists else {}
    found: dict[int, Count] = {}
    started = time.process_time()
    for ml in lists:
        row = stored.get(ml.id)
        if row is not None and row[0] is not None:
            found[ml.id] = Count(row[0], row[1], _is_stale(row[1], row[2], now))
        elif time.process_time() - started < budget:
            found[ml.id] = Count(recount(ml if isinstance(ml, MailingList) else MailingList.get_by_id(ml.id)),
                                 now, False)
        else:
            found[ml.id] = Count(None, None, True)
    return found


def _due(now: datetime, limit: int) -> list[int]:
    """Live lists whose count is missing, changed since, or too old; never counted first, then oldest."""
    ListCount.insert_from(
        MailingList.select(MailingList.id).where(
            MailingList.deleted_at.is_null()
            & ~pw.fn.EXISTS(ListCount.select().where(ListCount.mailing_list == MailingList.id))),
        [ListCount.mailing_list]).on_conflict_ignore().execute()
    stale = (ListCount.counted_at.is_null() | (ListCount.changed_at > ListCount.counted_at)
             | (ListCount.counted_at < now - MAX_AGE))
    free = ListCount.claimed_until.is_null() | (ListCount.claimed_until < now)
    query = (ListCount.select(ListCount.mailing_list).join(MailingList)
             .where(stale & free & MailingList.deleted_at.is_null())
             .order_by(ListCount.counted_at.is_null(False), ListCount.counted_at).limit(limit))
    return [list_id for (list_id,) in query.tuples().iterator()]


def _claim(list_id: int, now: datetime) -> bool:
    free = ListCount.claimed_until.is_null() | (ListCount.claimed_until < now)
    return bool(ListCount.update(claimed_until=now + CLAIM)
                .where((ListCount.mailing_list == list_id) & free).execute())


def recount_due(budget: float = 1.0, now: datetime | None = None) -> int:
    """The engine's job: recount due lists for about ``budget`` seconds (at least one); returns how many."""
    now = now or clock.now()
    started, done = time.monotonic(), 0
    for list_id in _due(now, limit=50):
        if done and time.monotonic() - started >= budget:
            break
        if not _claim(list_id, now):
            continue  # another engine took it
        ml = MailingList.get_or_none(MailingList.id == list_id)
        if ml is not None:
            recount(ml)
            done += 1
    return done


MODELS = [ListCount]
