"""Who a list reaches right now: criteria ∪ static subscribers − opt-outs − addresses disabled by bounces.

One SQL statement (a UNION ALL of one branch per criterion plus the static subscribers) ordered by
address key, read through a streaming cursor and grouped in Python: one ``Recipient`` per distinct
address (case-insensitive), yielded in batches, so that 100,000 recipients never sit in memory.
A criterion with roles selects the holders of a current mandate; one without roles selects the
licensees of the clubs in its scope.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import peewee as pw

from engine import clock
from engine.bounces.models import Bounce
from engine.db import database
from engine.directory import labels
from engine.directory.models import Mandate, Member, Structure
from engine.lists import compiled
from engine.lists.models import ListCriterion, MailingList, OptOut, Subscription


@dataclass(frozen=True, slots=True)
class Reason:
    """Why an address is on a list: a criterion (role × structure, or licensee of a club) or static."""

    kind: str  # "criterion" or "static"
    criterion_id: int | None
    role_id: int | None
    structure_id: int | None
    label_fr: str
    label_en: str

    def label(self, language: str) -> str:
        return self.label_en if language == "en" else self.label_fr


class Recipient(NamedTuple):
    """One distinct address of a list (a named tuple: cheap to build 100,000 times)."""

    address: str  # as typed (the first spelling met)
    email_key: str
    member_ids: tuple[int, ...]  # the list's members using this address; () for a bare address
    reasons: tuple[Reason, ...]


STATIC_FR = "abonné(e) par l’administrateur"
STATIC_EN = "subscribed by the administrator"


LOCAL_TIME = ZoneInfo("Europe/Paris")  # licence and mandate dates are French calendar dates


def _today(day: date | None) -> date:
    return day if day is not None else clock.today(LOCAL_TIME)


def _in_scope(criterion: ListCriterion) -> pw.Expression:
    """The structures a criterion covers: its structure or its subtree, of one kind if it says so.

    SQLite: the kind is tested as ``COALESCE(kind, '')`` so that it is not used through the kind's index ("every
    club" is most structures, and that plan, each club's members then sorted, costs a page of recipients what
    the whole list costs). PostgreSQL: the opposite is needed. It has statistics, but none for that expression
    (it guessed 8 clubs of 1,538) nor for parameters in a generic plan (the path range's bounds): with either it
    chose "each club's members, then sorted", 215–430 ms for the preview's first 21 addresses at 100,000
    members, against 0.8–4.9 ms walking the address index. So there the kind is compared plainly and the
    scope's values are written into the statement (they are part of its shape, ``compiled._shape``, so a
    statement kept for one scope is never used for another)."""
    scope = criterion.structure
    fixed = _literal if isinstance(database.obj, pw.PostgresqlDatabase) else pw.Value
    if criterion.include_subtree:
        low, high = scope.subtree_bounds()
        in_scope = (Structure.path >= fixed(low)) & (Structure.path < fixed(high))
    else:
        in_scope = Structure.id == fixed(scope.id)
    if criterion.structure_kind and fixed is pw.Value:
        in_scope &= pw.fn.COALESCE(Structure.kind, "") == criterion.structure_kind
    elif criterion.structure_kind:
        in_scope &= Structure.kind == fixed(criterion.structure_kind)
    return in_scope


def _literal(value: str | int) -> pw.Node:
    """``value`` as an SQL constant: an integer, or a word of letters, digits and underscores (structure paths,
    kinds); anything else is refused rather than quoted."""
    if isinstance(value, int):
        return pw.SQL(str(int(value)))
    if not value.replace("_", "").isalnum() or not value.isascii():
        raise ValueError(f"not a plain word: {value!r}")
    return pw.SQL(f"'{value}'")


def _criterion_branch(criterion: ListCriterion, role_ids: list[int], day: date,
                      ident: pw.Value | None = None) -> pw.SelectQuery:
    """Rows (email_key, email, member_id, criterion_id, role_id, structure_id) of one criterion; ``ident`` is
    what the criterion_id column holds (a slot of a compiled statement; by default the criterion's id)."""
    ident = pw.Value(criterion.id) if ident is None else ident
    in_scope = _in_scope(criterion)
    where = in_scope & Member.email_key.is_null(False)
    if criterion.require_valid_licence:
        where &= Member.licence_valid_until >= day
    query: pw.ModelSelect[Any]
    if role_ids:
        query = (Mandate.select(Member.email_key, Member.email, Member.id.alias("member_id"),
                                ident.alias("criterion_id"),
                                Mandate.role.alias("role_id"), Mandate.structure.alias("structure_id"))
                 .join(Member, on=(Mandate.member == Member.id))
                 .switch(Mandate).join(Structure, on=(Mandate.structure == Structure.id))
                 .where(where & Mandate.role.in_(role_ids) & Mandate.current(day)))
    else:  # licensees of the clubs in scope
        query = (Member.select(Member.email_key, Member.email, Member.id.alias("member_id"),
                               ident.alias("criterion_id"),
                               pw.Value(None).alias("role_id"), Member.club.alias("structure_id"))
                 .join(Structure, on=(Member.club == Structure.id))
                 .where(where))
    return query


def _static_branch(mailing_list: MailingList) -> pw.SelectQuery:
    return (Subscription.select(Subscription.email_key, Subscription.email,
                                Subscription.member.alias("member_id"), pw.Value(None).alias("criterion_id"),
                                pw.Value(None).alias("role_id"), pw.Value(None).alias("structure_id"))
            .where(Subscription.mailing_list == mailing_list))


def _exclusions(mailing_list: MailingList, key: pw.Field, member: pw.Field,
                now: datetime | None = None) -> pw.Expression:
    """Not opted out (by member or by address) and not disabled by bounces (until after ``now``)."""
    opted_members = OptOut.select(OptOut.member).where(
        (OptOut.mailing_list == mailing_list) & OptOut.member.is_null(False))
    opted_keys = OptOut.select(OptOut.email_key).where(
        (OptOut.mailing_list == mailing_list) & OptOut.email_key.is_null(False))
    disabled = Bounce.select(Bounce.email_key).where(Bounce.disabled_until > (now or clock.now()))
    member_ok = member.is_null() | member.not_in(opted_members)
    return member_ok & key.not_in(opted_keys) & key.not_in(disabled)


def _branches(mailing_list: MailingList, day: date, member: Member | None = None, apply_exclusions: bool = True,
              keys: pw.Expression | None = None, now: datetime | None = None,
              loaded: compiled.Loaded | None = None,
              idents: list[pw.Value] | None = None) -> list[tuple[pw.SelectQuery, pw.Field[Any]]]:
    """One query per criterion and one for static subscribers, each with its address-key column. ``keys`` is a
    condition on an address-key column (``Member.email_key``), applied to each branch's own column; ``idents``
    what each criterion's criterion_id column holds (slots of a compiled statement; by default its id)."""
    criteria, roles = loaded or compiled.load(mailing_list)
    branches: list[tuple[pw.SelectQuery, pw.Field[Any]]] = []
    for number, criterion in enumerate(criteria):
        branch = _criterion_branch(criterion, roles.get(criterion.id, []), day,
                                   idents[number] if idents is not None else None)
        if apply_exclusions:
            branch = branch.where(_exclusions(mailing_list, Member.email_key, Member.id, now))
        if member is not None:
            branch = branch.where(Member.id == member.id)
        branches.append((branch, Member.email_key))
    static = _static_branch(mailing_list)
    if apply_exclusions:
        static = static.where(_exclusions(mailing_list, Subscription.email_key, Subscription.member, now))
    if member is not None:
        static = static.where((Subscription.member == member.id) |
                              (Subscription.email_key == (member.email_key or "")))
    branches.append((static, Subscription.email_key))
    if keys is None:
        return branches
    return [(branch.where(_on_column(keys, column)), column) for branch, column in branches]


def _on_column(condition: pw.Expression, column: pw.Field) -> pw.Expression:
    """``condition`` written on ``Member.email_key``, applied to ``column`` (the same address key elsewhere)."""
    return pw.Expression(column, condition.op, condition.rhs)


def _rows_query(mailing_list: MailingList, day: date, member: Member | None = None,
                apply_exclusions: bool = True, keys: pw.Expression | None = None, now: datetime | None = None,
                loaded: compiled.Loaded | None = None) -> pw.SelectQuery:
    branches = [branch for branch, _column in _branches(mailing_list, day, member, apply_exclusions, keys, now,
                                                        loaded)]
    query = branches[0]
    for branch in branches[1:]:
        query = query + branch  # UNION ALL
    return query


def make_reason(names: labels.Labels, criterion_id: int | None, role_id: int | None,
                structure_id: int | None) -> Reason:
    """The reason of one row: static (no criterion), licensee of a club (no role), or role × structure."""
    if criterion_id is None:
        return Reason("static", None, None, None, STATIC_FR, STATIC_EN)
    where = names.structure(structure_id) if structure_id else ""
    if role_id is None:
        return Reason("criterion", criterion_id, None, structure_id, f"licencié(e) — {where}", f"licensee — {where}")
    fr, en = names.role(role_id)
    return Reason("criterion", criterion_id, role_id, structure_id, f"{fr} — {where}", f"{en} — {where}")


class _Labels:
    """Reasons for one resolution: the process's cached role and structure names, one Reason object per kind."""

    def __init__(self) -> None:
        self.names = labels.current()
        self._reasons: dict[tuple[int | None, int | None, int | None], Reason] = {}

    def reason(self, criterion_id: int | None, role_id: int | None, structure_id: int | None) -> Reason:
        key = (criterion_id, role_id, structure_id)
        found = self._reasons.get(key)
        if found is None:
            found = self._reasons[key] = make_reason(self.names, criterion_id, role_id, structure_id)
        return found


_cursor_numbers = itertools.count()


def _stream(query: pw.SelectQuery, chunk: int = 5000) -> Iterator[list[tuple[Any, ...]]]:
    """Chunks of rows of ``query`` ordered by address key, never all at once (server-side on PostgreSQL)."""
    return _stream_sql(*query.order_by(pw.SQL("1")).sql(), chunk=chunk)


def _stream_sql(sql: str, params: Any, chunk: int = 5000) -> Iterator[list[tuple[Any, ...]]]:
    db = database.obj
    if isinstance(db, pw.PostgresqlDatabase):
        with db.atomic():
            cursor = db.connection().cursor(name=f"palanquee_resolve_{next(_cursor_numbers)}")
            try:
                cursor.execute(sql, params)
                while rows := cursor.fetchmany(chunk):
                    yield rows
            finally:
                cursor.close()
    else:
        cursor = db.execute_sql(sql, params)
        try:
            while rows := cursor.fetchmany(chunk):
                yield rows
        finally:
            cursor.close()


def _members(ids: list[int]) -> tuple[int, ...]:
    if not ids:
        return ()
    return (ids[0],) if len(ids) == 1 else tuple(sorted(set(ids)))


def _ordered(reasons: list[Reason]) -> tuple[Reason, ...]:
    """An address's reasons in one order whatever order the database returned its rows in (the branches of a
    UNION ALL come back in the plan's order): static first, then by criterion, role and structure."""
    return tuple(sorted(reasons, key=lambda r: (r.kind != "static", r.criterion_id or 0, r.role_id or 0,
                                                r.structure_id or 0)))


def resolve(mailing_list: MailingList, *, day: date | None = None, batch_size: int = 1000,
            with_reasons: bool = True) -> Generator[list[Recipient], None, None]:
    """Stream the list's recipients now, one per distinct address, in batches ordered by address key (its SQL
    compiled once per shape of the list: ``compiled.py``)."""
    day = _today(day)

    def build(now: datetime, loaded: compiled.Loaded) -> tuple[str, list[Any]]:
        sql, params = _rows_query(mailing_list, day, now=now, loaded=loaded).order_by(pw.SQL("1")).sql()
        return sql, list(params)

    return _grouped(_stream_sql(*compiled.rows_sql(mailing_list, day, build)), batch_size, with_reasons)


def _grouped(chunks: Iterator[list[tuple[Any, ...]]], batch_size: int,
             with_reasons: bool) -> Generator[list[Recipient], None, None]:
    """Rows ordered by address key, grouped into one ``Recipient`` per key, in batches."""
    labels = _Labels() if with_reasons else None
    known = labels._reasons if labels is not None else {}
    batch: list[Recipient] = []
    append = batch.append
    current_key: str | None = None
    address: str = ""
    members: list[int] = []
    reasons: list[Reason] = []
    # The hot loop of every expansion: one pass over rows ordered by address key, locals only.
    for rows in chunks:
        for key, email, member_id, criterion_id, role_id, structure_id in rows:
            if key != current_key:
                if current_key is not None:
                    append(Recipient(address, current_key, (members[0],) if len(members) == 1 else
                                     _members(members), tuple(reasons) if len(reasons) < 2 else _ordered(reasons)))
                    if len(batch) >= batch_size:
                        yield batch
                        batch = []
                        append = batch.append
                current_key, address, members, reasons = key, email, [], []
            elif email < address:  # one spelling of a shared address whatever the rows' order
                address = email
            if member_id is not None:
                members.append(member_id)
            if labels is not None:
                reason = known.get((criterion_id, role_id, structure_id)) or labels.reason(
                    criterion_id, role_id, structure_id)
                if reason not in reasons:
                    reasons.append(reason)
    if current_key is not None:
        append(Recipient(address, current_key, _members(members), _ordered(reasons)))
    if batch:
        yield batch


def page_of(mailing_list: MailingList, *, after: str | None = None, before: str | None = None, size: int = 100,
            day: date | None = None) -> tuple[list[Recipient], bool]:
    """A page of recipients by address key (keyset paging, statements compiled once: ``paging.page_of``)."""
    from engine.lists import paging  # paging builds on this module's branches

    return paging.page_of(mailing_list, after=after, before=before, size=size, day=day)


def recipient_keys(mailing_list: MailingList, day: date | None = None) -> Iterator[str]:
    """The address key of every recipient now, once each, in no order: the list's reach without the Python
    grouping of ``resolve()`` (the criteria preview compares it with the last message's)."""
    sql, params = _rows_query(mailing_list, _today(day)).sql()
    for rows in _stream_sql(f"SELECT DISTINCT email_key FROM ({sql}) AS rows_", params):
        yield from (key for (key,) in rows)


def count_recipients(mailing_list: MailingList, day: date | None = None) -> int:
    """How many distinct addresses the list reaches now."""
    query = _rows_query(mailing_list, _today(day))
    sql, params = query.sql()
    row = database.obj.execute_sql(f"SELECT COUNT(DISTINCT email_key) FROM ({sql}) AS rows_", params).fetchone()
    return int(row[0])


def reasons_for_member(mailing_list: MailingList, member: Member, day: date | None = None) -> list[Reason]:
    """Why ``member`` is on the list (ignoring opt-outs): empty when no criterion or subscription names them."""
    query = _rows_query(mailing_list, _today(day), member=member, apply_exclusions=False)
    labels = _Labels()
    reasons: list[Reason] = []
    for rows in _stream(query):
        for _key, _email, _member_id, criterion_id, role_id, structure_id in rows:
            reason = labels.reason(criterion_id, role_id, structure_id)
            if reason not in reasons:
                reasons.append(reason)
    return reasons
