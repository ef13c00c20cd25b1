"""The statements of the staff's list pages compiled once per shape (``engine/prepared.py``), not per request.

Peewee spends more time writing the lists page's SQL than the database spends running it. Its shape is the
staff member's scopes (their structures' path bounds), the sort and its direction: the compiled statements
(a page of lists, their number) are kept per shape; a search (rare) is built as before. A list's own pages
look the list up (with its domain and structure) by one statement compiled once.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

import peewee as pw

from engine.directory import staff
from engine.directory.models import Member, Structure
from engine.lists.models import Domain, MailingList
from engine.prepared import Prepared, slot

KEPT = 256  # shapes kept (staff members' scopes × sorts), least recently used dropped
Shape = tuple[Any, ...]

_LIST: Prepared[MailingList] = Prepared(lambda: (
    MailingList.select(MailingList, Domain, Structure).join(Domain).switch(MailingList).join(Structure)
    .where((MailingList.id == slot("id")) & MailingList.deleted_at.is_null())))
_pages: OrderedDict[Shape, tuple[Prepared[tuple[Any, ...]], Prepared[tuple[int]]]] = OrderedDict()


def live_list(list_id: int) -> MailingList | None:
    """The live list ``list_id`` with its domain and structure (one compiled statement), or None."""
    return _LIST.first(id=list_id)


def _scope_bounds(member: Member | None) -> tuple[tuple[str, str], ...] | None:
    return None if member is None else tuple(scope.subtree_bounds() for scope in staff.scopes(member))


def _visible(member: Member | None, query: pw.ModelSelect[Any]) -> pw.ModelSelect[Any]:
    query = query.where(MailingList.deleted_at.is_null())
    return query if member is None else query.where(staff.within_scopes(member, Structure.path))


def _compiled(member: Member | None, order: tuple[Any, ...],
              descending: bool) -> tuple[Prepared[tuple[Any, ...]], Prepared[tuple[int]]]:
    shape = (_scope_bounds(member), tuple(str(f) for f in order), descending)
    found = _pages.get(shape)
    if found is not None:
        _pages.move_to_end(shape)
        return found
    ordering = [f.desc() if descending else f.asc() for f in order]
    shown = (MailingList.id, MailingList.local_part, MailingList.name, MailingList.kind, Domain.name,
             Domain.lists_enabled)  # ListSummary's columns
    rows: Prepared[tuple[Any, ...]] = Prepared(lambda: _visible(member, MailingList.select(
        *shown).join(Domain).switch(MailingList).join(Structure))
        .order_by(*ordering).limit(slot("limit")).offset(slot("offset")).tuples())
    total: Prepared[tuple[int]] = Prepared(lambda: _visible(member, MailingList.select(
        pw.fn.COUNT(MailingList.id)).join(Domain).switch(MailingList).join(Structure)).tuples())
    found = _pages[shape] = (rows, total)
    while len(_pages) > KEPT:
        _pages.popitem(last=False)
    return found


class ListSummary(NamedTuple):
    """What the lists page shows of a list, as the driver's tuple: peewee's models of 50 lists and their
    domains (two objects and a dozen columns a row) cost more than the page's statements."""

    id: int
    local_part: str
    name: str
    kind: str
    domain_name: str
    lists_enabled: bool

    @property
    def address(self) -> str:
        return f"{self.local_part}@{self.domain_name}"

    @classmethod
    def of(cls, ml: MailingList) -> ListSummary:
        return cls(ml.id, ml.local_part, ml.name, ml.kind, ml.domain.name, bool(ml.domain.lists_enabled))


def page_of_lists(member: Member | None, order: tuple[Any, ...], descending: bool, page: int,
                  per_page: int) -> tuple[list[ListSummary], int]:
    """One page of the live lists ``member`` manages, in ``order``, and how many there are in all: what the
    lists page shows of each (address, name, kind, its domain's state), not its settings."""
    rows, total = _compiled(member, order, descending)
    lists = [ListSummary(list_id, local_part, name, kind, domain_name, bool(enabled)) for
             list_id, local_part, name, kind, domain_name, enabled in
             rows.rows(limit=per_page, offset=(max(page, 1) - 1) * per_page)]
    return lists, int(total.rows()[0][0])
