"""A page of a list's recipients by address key, its statements compiled once per shape of the list.

Keyset paging (``page_of``): each branch of the list's query (a criterion, the static subscribers) gives its
next ``size + 1`` distinct address keys from the address-key index, then the page's rows are read by key range
and grouped as ``resolve()`` groups them; the hundredth page costs what the first does. Writing those
statements with peewee cost more than running them, so they are compiled once per shape (the list's criteria
as ``compiled`` defines it without the criteria's ids, the direction and the page size) with the bound keys,
"now" and the criteria's ids as slots.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import date
from typing import Any, cast

import peewee as pw

from engine import clock
from engine.bounces.models import Bounce
from engine.lists import compiled
from engine.lists.models import MailingList
from engine.lists.resolve import Recipient, _branches, _grouped, _today
from engine.prepared import Prepared, slot

KEPT = 256  # shapes kept (lists paged recently), least recently used dropped
Statements = tuple[list[Prepared[Any]], Prepared[Any]]
_kept: OrderedDict[compiled.Shape, Statements] = OrderedDict()


def _statements(ml: MailingList, day: date, loaded: compiled.Loaded, backwards: bool, size: int) -> Statements:
    """Per branch, its next ``size + 1`` distinct keys beyond ``bound``; and the rows between ``low`` and
    ``high`` of every branch (UNION ALL)."""
    now = slot("now", Bounce.disabled_until)
    idents = [slot(f"criterion{number}") for number in range(len(loaded[0]))]
    branches = _branches(ml, day, now=cast(Any, now), loaded=loaded, idents=idents)
    keys: list[Prepared[Any]] = []
    for branch, column in branches:
        beyond = column < slot("bound") if backwards else column > slot("bound")
        order = column.desc() if backwards else column.asc()
        query = cast(pw.ModelSelect, branch).where(beyond).select(column).distinct().order_by(order).limit(size + 1)
        keys.append(Prepared(_returning(query)))
    ranges = [branch.where((column >= slot("low")) & (column <= slot("high"))) for branch, column in branches]
    union = ranges[0]
    for branch in ranges[1:]:
        union = union + branch  # UNION ALL
    rows = union.order_by(pw.SQL("1"))
    return keys, Prepared(_returning(rows))


def _returning(query: Any) -> Callable[[], Any]:
    return lambda: query


def page_of(ml: MailingList, *, after: str | None = None, before: str | None = None, size: int = 100,
            day: date | None = None) -> tuple[list[Recipient], bool]:
    """The ``size`` recipients just after the address key ``after`` (or just before ``before``), and whether
    more follow in that direction. The criteria's ids are slots: a preview's criteria (written in a savepoint,
    new ids each time on PostgreSQL) find their statements kept when previewed again."""
    day = _today(day)
    loaded = compiled.load(ml)  # the list's criteria read once for both statements
    backwards = before is not None
    shape = (compiled._shape(ml, day, loaded, ids=False), backwards, size)
    found = _kept.get(shape)
    if found is None:
        found = _kept[shape] = _statements(ml, day, loaded, backwards, size)
        while len(_kept) > KEPT:
            _kept.popitem(last=False)
    else:
        _kept.move_to_end(shape)
    keys_of, rows_of = found
    now = clock.now()
    idents = {f"criterion{number}": criterion.id for number, criterion in enumerate(loaded[0])}
    bound = before if before is not None else (after or "")
    seen: set[str] = set()
    for statement in keys_of:
        seen.update(key for (key,) in statement.rows(bound=bound, now=now, **idents))
    keys = sorted(seen, reverse=backwards)[:size + 1]
    more, keys = len(keys) > size, sorted(keys[:size])
    if not keys:
        return [], False
    # the page's keys are contiguous in address order: a range, not a list of a hundred values
    rows = rows_of.rows(low=keys[0], high=keys[-1], now=now, **idents)
    return [r for batch in _grouped(iter([rows]), size, with_reasons=True) for r in batch], more
