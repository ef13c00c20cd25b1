"""A list's resolution query compiled to SQL once per shape, not once per post.

Building the UNION ALL of ``resolve`` through peewee costs more than running it on a small list (about a
third of a post's expansion, measured by ``bench.intake``). Its SQL text and parameters depend only on
what ``Shape`` holds (the list, the day, each criterion with its structure's path and its roles) and on
"now" (addresses disabled by bounces until later): the compiled statement is kept per shape, and only
the "now" parameters are filled in again at each use. A criterion, role or structure that changes makes
another shape, so a cached statement is never a stale one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from engine import clock
from engine.bounces.models import Bounce
from engine.db import database
from engine.directory.models import Structure
from engine.lists.models import CriterionRole, ListCriterion, MailingList
from engine.prepared import Prepared, slot

Shape = tuple[Any, ...]
Loaded = tuple[list[ListCriterion], dict[int, list[int]]]
Build = Callable[[datetime, Loaded], tuple[str, list[Any]]]

SIZE = 256  # shapes kept (lists posted to recently), least recently used dropped
_PROBE = datetime(1970, 1, 1, 0, 0, 0, 7)  # a "now" no run uses: finds where "now" sits in the parameters
_cache: OrderedDict[Shape, tuple[str, tuple[Any, ...], tuple[int, ...]]] = OrderedDict()


_CRITERIA: Prepared[ListCriterion] = Prepared(lambda: (
    ListCriterion.select(ListCriterion, Structure).join(Structure)
    .where(ListCriterion.mailing_list == slot("list")).order_by(ListCriterion.id)))
_ROLES: Prepared[tuple[int, int]] = Prepared(lambda: (
    CriterionRole.select(CriterionRole.criterion, CriterionRole.role).join(ListCriterion)
    .where(ListCriterion.mailing_list == slot("list")).order_by(CriterionRole.criterion, CriterionRole.role)
    .tuples()))


def load(mailing_list: MailingList) -> Loaded:
    """The list's criteria (each with its structure) and their role ids (ascending): two compiled statements."""
    criteria = _CRITERIA.all(list=mailing_list.id)
    roles: dict[int, list[int]] = {}
    for criterion_id, role_id in _ROLES.rows(list=mailing_list.id):
        roles.setdefault(criterion_id, []).append(role_id)
    return criteria, roles


def _shape(mailing_list: MailingList, day: date, loaded: Loaded, ids: bool = True) -> Shape:
    """What the list's statements depend on. ``ids`` false: not the criteria's ids, which a statement then
    takes as slots (a preview's criteria get new ids at each savepoint on PostgreSQL: a sequence is not
    rolled back), so that criteria previewed again find their statements compiled."""
    criteria, roles = loaded
    return (type(database.obj).__name__, mailing_list.id, day, tuple(
        (c.id if ids else None, c.structure.id, c.structure.path, c.include_subtree, c.structure_kind,
         c.require_valid_licence, tuple(roles.get(c.id, []))) for c in criteria))


def rows_sql(mailing_list: MailingList, day: date, build: Build) -> tuple[str, list[Any]]:
    """The SQL and parameters of the list's resolution on ``day`` now; ``build(now, loaded)`` compiles it."""
    loaded = load(mailing_list)
    shape = _shape(mailing_list, day, loaded)
    now = clock.now()
    found = _cache.get(shape)
    if found is not None:
        _cache.move_to_end(shape)
        sql, template, slots = found
        params = list(template)
        value = Bounce.disabled_until.db_value(now)
        for slot in slots:
            params[slot] = value
        return sql, params
    sql, params = build(now, loaded)
    probe_sql, probe = build(_PROBE, loaded)
    slots = tuple(i for i, (a, b) in enumerate(zip(params, probe, strict=False)) if a != b)
    value = Bounce.disabled_until.db_value(now)
    if probe_sql == sql and len(probe) == len(params) and slots and all(params[i] == value for i in slots):
        _cache[shape] = (sql, tuple(params), slots)
        while len(_cache) > SIZE:
            _cache.popitem(last=False)
    return sql, params
