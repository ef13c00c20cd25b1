"""The criteria preview's figures: the exact reach and difference counted by the database, and an estimate.

Counting the ~100,000 distinct addresses of criteria being edited is work of the list's size whatever is done
(the database reads every matching row); what must not be done is reading those rows into Python. ``exact``
asks one statement for the count, the number of addresses that entered and left since the list's last
expanded message, and the first ten of each: the current keys and that message's keys are each made distinct
once (SQLite: into temporary tables keyed on them; PostgreSQL: materialised), then compared by anti-joins in
the database.

An exact answer is remembered (per process, a few minutes) for the criteria it was counted for, so that staff
going back to criteria seen before get the figure at once, marked as an estimate with its time; otherwise the
estimate of the list's saved criteria is its stored count (``counts``). Nothing else is guessed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from engine import clock
from engine.db import database
from engine.lists import counts
from engine.lists.models import MailingList
from engine.lists.resolve import _rows_query, _today

REMEMBERED = timedelta(minutes=10)  # how long an exact count serves as the estimate of the same criteria
KEPT = 512  # criteria sets remembered, least recently used dropped
SAMPLE = 10  # addresses shown of those that enter and of those that leave

_remembered: OrderedDict[Hashable, Figures] = OrderedDict()


@dataclass(frozen=True)
class Diff:
    since: datetime  # when the list's last expanded message arrived
    added: int
    removed: int
    added_sample: list[str] = field(default_factory=list)
    removed_sample: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Figures:
    count: int | None  # None: not known yet (the exact figure is on its way)
    diff: Diff | None  # None: no message expanded yet, or not known yet (``diff_known``)
    exact: bool  # counted now; otherwise an estimate read at ``counted_at``
    counted_at: datetime | None = None
    diff_known: bool = True


# The address of a delivery row folded as ``email_key`` folds it (strip, lower case). SQLite's lower() folds
# ASCII letters only: an address typed with non-ASCII capitals would be compared unfolded.
_KEY_OF_ADDRESS = {"sqlite": "lower(trim(address))", "postgresql": "lower(btrim(address))"}

# PostgreSQL hashes a NOT EXISTS (a NOT IN over more rows than work_mem holds is a scan per row).
_NOT_EXISTS = "NOT EXISTS (SELECT 1 FROM {b} WHERE {b}.k = {a}.k)"

_STATEMENT = """  -- PostgreSQL's
WITH now_(k) AS MATERIALIZED (SELECT DISTINCT email_key FROM ({rows}) AS rows_),
     before_(k) AS MATERIALIZED (SELECT DISTINCT {key} FROM delivery WHERE message_id = {param}),
     added_(k) AS (SELECT k FROM now_ WHERE {added}),
     removed_(k) AS (SELECT k FROM before_ WHERE {removed} AND before_.k <> '')
SELECT 0, COUNT(*), NULL FROM now_
UNION ALL SELECT 1, COUNT(*), NULL FROM added_
UNION ALL SELECT 2, COUNT(*), NULL FROM removed_
UNION ALL SELECT * FROM (SELECT 3, 0, k FROM added_ ORDER BY k LIMIT {sample}) AS a_
UNION ALL SELECT * FROM (SELECT 4, 0, k FROM removed_ ORDER BY k LIMIT {sample}) AS r_
"""


# SQLite: each side's keys made distinct once, by inserting them into a temporary table keyed on them (one
# B-tree each); the anti-joins then look keys up in the other side's key. Materialised CTEs cost two more
# B-trees of the same size (SQLite indexes a NOT IN subquery's rows anew): 45 % more CPU at 50,000.
_TABLES = ("CREATE TEMP TABLE IF NOT EXISTS reach_now (k TEXT PRIMARY KEY) WITHOUT ROWID",
           "CREATE TEMP TABLE IF NOT EXISTS reach_before (k TEXT PRIMARY KEY) WITHOUT ROWID")
_FILL_BEFORE = f"INSERT OR IGNORE INTO reach_before SELECT {_KEY_OF_ADDRESS['sqlite']} FROM delivery WHERE message_id = ?"
_ADDED = "FROM reach_now AS a WHERE NOT EXISTS (SELECT 1 FROM reach_before AS b WHERE b.k = a.k)"
_REMOVED = "FROM reach_before AS b WHERE b.k <> '' AND NOT EXISTS (SELECT 1 FROM reach_now AS a WHERE a.k = b.k)"
_FIGURES = f"""
SELECT 0, COUNT(*), NULL FROM reach_now
UNION ALL SELECT 1, COUNT(*), NULL {_ADDED}
UNION ALL SELECT 2, COUNT(*), NULL {_REMOVED}
UNION ALL SELECT * FROM (SELECT 3, 0, a.k {_ADDED} ORDER BY a.k LIMIT {SAMPLE}) AS a_
UNION ALL SELECT * FROM (SELECT 4, 0, b.k {_REMOVED} ORDER BY b.k LIMIT {SAMPLE}) AS r_
"""


def _keyed_tables(rows: str, params: list[Any], message_id: int) -> list[tuple[Any, ...]]:
    """``_STATEMENT``'s rows on SQLite, through two temporary tables of this connection, emptied again by
    rolling back the savepoint they were filled in."""
    db = database.obj
    with db.atomic() as savepoint:
        for create in _TABLES:
            db.execute_sql(create)
        db.execute_sql(f"INSERT OR IGNORE INTO reach_now SELECT email_key FROM ({rows}) AS rows_", params)
        db.execute_sql(_FILL_BEFORE, [message_id])
        found = list(db.execute_sql(_FIGURES).fetchall())
        savepoint.rollback()
    return found


def _dialect() -> str:
    return "postgresql" if "postgres" in type(database.obj).__name__.lower() else "sqlite"


def exact(ml: MailingList, day: date | None, last: tuple[int, datetime] | None) -> Figures:
    """The list's reach now (its criteria as they are in this transaction) and the difference from the
    message ``last`` (id, arrival), counted in the database by one statement."""
    at = clock.now()
    rows, params = _rows_query(ml, _today(day)).sql()
    if last is None:
        found = database.obj.execute_sql(f"SELECT COUNT(DISTINCT email_key) FROM ({rows}) AS rows_", params)
        return Figures(int(found.fetchone()[0]), None, True, at)
    if _dialect() == "sqlite":
        found = _keyed_tables(rows, list(params), last[0])
    else:
        sql = _STATEMENT.format(rows=rows, key=_KEY_OF_ADDRESS["postgresql"], param=database.obj.param,
                                sample=SAMPLE, added=_NOT_EXISTS.format(a="now_", b="before_"),
                                removed=_NOT_EXISTS.format(a="before_", b="now_"))
        found = database.obj.execute_sql(sql, [*params, last[0]]).fetchall()
    totals = {0: 0, 1: 0, 2: 0}
    samples: dict[int, list[str]] = {3: [], 4: []}
    for kind, number, key in found:
        if kind in totals:
            totals[kind] = int(number)
        else:
            samples[kind].append(key)
    diff = Diff(last[1], totals[1], totals[2], samples[3], samples[4])
    return Figures(totals[0], diff, True, at)


def remember(key: Hashable, figures: Figures) -> None:
    _remembered[key] = figures
    _remembered.move_to_end(key)
    while len(_remembered) > KEPT:
        _remembered.popitem(last=False)


def estimate(key: Hashable, ml: MailingList, saved: bool) -> Figures:
    """What is known at once of the reach of the criteria ``key`` names: an exact count of the same criteria
    taken in the last ``REMEMBERED``, else (for the list's saved criteria) its stored count, else nothing."""
    found = _remembered.get(key)
    if found is not None and found.counted_at is not None and found.counted_at > clock.now() - REMEMBERED:
        return Figures(found.count, found.diff, False, found.counted_at)
    if saved:
        stored = counts.counts_of([ml], budget=0.0)[ml.id]
        if stored.recipients is not None:
            return Figures(stored.recipients, None, False, stored.counted_at, diff_known=False)
    return Figures(None, None, False, None, diff_known=False)
