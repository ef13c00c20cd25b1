"""Criteria of role-based lists: editing them, and previewing who a list reaches before saving.

The preview never re-implements membership: it writes the proposed criteria inside a savepoint, asks the list's
own query (its first addresses by key with ``page_of``; its count and its difference from the list's latest
expanded message counted by the database, ``reach.exact``) and rolls the savepoint back. The cheap preview
(``exact=False``) gives the sample and what is known at once of the count (``reach.estimate``).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from datetime import date, datetime

import peewee as pw

from engine import audit
from engine.db import database
from engine.directory import staff
from engine.directory.models import Member, Role, Structure, StructureKind
from engine.lists import compiled, counts, reach
from engine.lists.admin import AdminError
from engine.lists.models import CriterionRole, ListCriterion, MailingList
from engine.lists.reach import Diff
from engine.lists.resolve import Recipient, _today, page_of
from engine.outbound.models import Delivery
from engine.posting.models import Message
from engine.prepared import Prepared, PreparedIn, slot


@dataclass(frozen=True)
class CriterionSpec:
    """Holders of ``role_ids`` (none: every licensee of the clubs) in a structure, optionally below it."""

    structure_id: int
    role_ids: tuple[int, ...] = ()
    include_subtree: bool = False
    structure_kind: str | None = None
    require_valid_licence: bool = True


def current_specs(ml: MailingList) -> list[CriterionSpec]:
    """The list's criteria as specs (``compiled.load``: two compiled statements)."""
    return specs_of(compiled.load(ml))


def specs_of(loaded: compiled.Loaded) -> list[CriterionSpec]:
    criteria, roles = loaded
    return [CriterionSpec(c.structure_id, tuple(sorted(roles.get(c.id, []))), c.include_subtree,
                          c.structure_kind, c.require_valid_licence) for c in criteria]


_ROLE_IDS: Prepared[tuple[int]] = Prepared(lambda: Role.select(Role.id).tuples())
_STRUCTURE: Prepared[Structure] = Prepared(lambda: Structure.select().where(Structure.id == slot("id")))
_NAMES = PreparedIn(lambda ids: Member.select(Member.id, Member.first_name, Member.last_name)
                    .where(Member.id.in_(ids)).tuples())


def check_specs(actor: Member | None, specs: list[CriterionSpec]) -> None:
    """Every structure exists and is within the actor's scopes; roles exist; the kind is known."""
    known_roles = {r for (r,) in _ROLE_IDS.rows()}
    for spec in specs:
        structure = _STRUCTURE.first(id=spec.structure_id)
        if structure is None:
            raise AdminError("unknown_structure", value=spec.structure_id)
        staff.require_manage(actor, structure)
        if not set(spec.role_ids) <= known_roles:
            raise AdminError("unknown_role")
        if spec.structure_kind not in (None, *StructureKind.ALL):
            raise AdminError("bad_structure_kind", value=spec.structure_kind)


def _write(ml: MailingList, specs: list[CriterionSpec]) -> None:
    ListCriterion.delete().where(ListCriterion.mailing_list == ml).execute()
    for spec in specs:
        criterion = ListCriterion.create(mailing_list=ml, structure=spec.structure_id,
                                         include_subtree=spec.include_subtree, structure_kind=spec.structure_kind,
                                         require_valid_licence=spec.require_valid_licence)
        if spec.role_ids:
            CriterionRole.insert_many([dict(criterion=criterion.id, role=r) for r in set(spec.role_ids)]).execute()


def replace_criteria(actor: Member | None, ml: MailingList, specs: list[CriterionSpec], *,
                     ip: str | None = None) -> bool:
    """Make the list's criteria exactly ``specs`` (audited); returns whether anything changed."""
    staff.require_manage(actor, ml.structure)
    check_specs(actor, specs)
    before = current_specs(ml)
    if _canonical(before) == _canonical(specs):
        return False
    with database.atomic():
        _write(ml, specs)
        codes = dict(Structure.select(Structure.id, Structure.code).where(
            Structure.id.in_([s.structure_id for s in specs])).tuples().iterator())
        audit.record("list.criteria_changed", ml, actor=actor, structure_id=ml.structure_id, ip=ip,
                     criteria=[dict(structure=codes.get(s.structure_id), roles=list(s.role_ids),
                                    subtree=s.include_subtree, kind=s.structure_kind,
                                    valid_licence=s.require_valid_licence) for s in specs])
    counts.recount(ml)  # the lists page shows the new reach at once
    return True


def _canonical(specs: list[CriterionSpec]) -> list[tuple[int, tuple[int, ...], bool, str, bool]]:
    return sorted((s.structure_id, tuple(sorted(s.role_ids)), s.include_subtree, s.structure_kind or "",
                   s.require_valid_licence) for s in specs)


@dataclass(frozen=True)
class Preview:
    count: int | None  # None: not known yet (``exact`` false: the exact figure is asked for next)
    sample: list[Recipient]
    names: dict[int, str]  # member id → full name, for the sample
    diff: Diff | None  # None: no message expanded yet (or not known yet: ``diff_known``)
    exact: bool = True  # counted now; otherwise an estimate (an exact count taken at ``counted_at``)
    counted_at: datetime | None = None
    diff_known: bool = True


def last_expanded_message(ml: MailingList) -> Message | None:
    """The list's latest message that was expanded into delivery rows."""
    has_rows = pw.fn.EXISTS(Delivery.select(Delivery.id).where(Delivery.message == Message.id))
    found: Message | None = (Message.select(Message.id, Message.received_at)
                             .where((Message.mailing_list == ml) & has_rows)
                             .order_by(Message.received_at.desc(), Message.id.desc()).first())
    return found


def _sample(ml: MailingList, day: date | None, sample_size: int) -> tuple[list[Recipient], dict[int, str]]:
    # the first addresses, from the address-key index (statements kept per criteria, whatever their ids)
    sample, _more = page_of(ml, size=sample_size, day=day)
    ids = sorted({i for r in sample for i in r.member_ids})
    # Member.full_name's form, without a model a row
    names = {member_id: f"{first} {last}" for member_id, first, last in _NAMES.rows(ids)} if ids else {}
    return sample, names


def _compute(ml: MailingList, day: date | None, sample_size: int, key: Hashable, exact: bool,
             saved: bool) -> Preview:
    sample, names = _sample(ml, day, sample_size)
    if exact:
        message = last_expanded_message(ml)
        figures = reach.exact(ml, day, (message.id, message.received_at) if message else None)
        reach.remember(key, figures)
    else:
        figures = reach.estimate(key, ml, saved)
    return Preview(figures.count, sample, names, figures.diff, figures.exact, figures.counted_at,
                   figures.diff_known)


def preview(actor: Member | None, ml: MailingList, specs: list[CriterionSpec] | None = None, *,
            day: date | None = None, sample_size: int = 20, exact: bool = True) -> Preview:
    """Who the list reaches now, with ``specs`` in place of its criteria when given (nothing is saved).

    ``exact`` false: the sample and an estimate of the count (``reach.estimate``), at the cost of one page of
    recipients whatever the list's size; the exact figures are then asked for with ``exact`` true."""
    staff.require_manage(actor, ml.structure)
    current = current_specs(ml)
    key = (database.obj.database, ml.id, ml.created_at, _today(day),
           tuple(_canonical(current if specs is None else specs)))
    saved = specs is None or _canonical(specs) == _canonical(current)
    if saved:
        return _compute(ml, day, sample_size, key, exact, saved)
    check_specs(actor, specs or [])
    with database.atomic() as transaction:
        _write(ml, specs or [])
        result = _compute(ml, day, sample_size, key, exact, saved)
        transaction.rollback()
    return result
