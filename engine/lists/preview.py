"""Criteria of role-based lists: editing them, and previewing who a list reaches before saving.

The preview never re-implements membership: it writes the proposed criteria inside a savepoint, asks
``resolve()`` and ``count_recipients()``, and rolls the savepoint back. The difference from the list "as it
was at its last message" compares the current recipients with the delivery rows of the list's latest
expanded message, by address key (one set of that message's keys in memory, the current ones streamed).
"""

from __future__ import annotations

import itertools
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date, datetime

import peewee as pw

from engine import audit
from engine.db import database
from engine.directory import staff
from engine.directory.models import Member, Role, Structure, StructureKind, email_key
from engine.lists.admin import AdminError
from engine.lists.models import CriterionRole, ListCriterion, MailingList
from engine.lists.resolve import Recipient, count_recipients, resolve
from engine.outbound.models import Delivery
from engine.posting.models import Message


@dataclass(frozen=True)
class CriterionSpec:
    """Holders of ``role_ids`` (none: every licensee of the clubs) in a structure, optionally below it."""

    structure_id: int
    role_ids: tuple[int, ...] = ()
    include_subtree: bool = False
    structure_kind: str | None = None
    require_valid_licence: bool = True


def current_specs(ml: MailingList) -> list[CriterionSpec]:
    criteria = list(ListCriterion.select().where(ListCriterion.mailing_list == ml).order_by(ListCriterion.id))
    roles: dict[int, list[int]] = {}
    for link in CriterionRole.select().where(CriterionRole.criterion.in_([c.id for c in criteria])):
        roles.setdefault(link.criterion_id, []).append(link.role_id)
    return [CriterionSpec(c.structure_id, tuple(sorted(roles.get(c.id, []))), c.include_subtree,
                          c.structure_kind, c.require_valid_licence) for c in criteria]


def check_specs(actor: Member | None, specs: list[CriterionSpec]) -> None:
    """Every structure exists and is within the actor's scopes; roles exist; the kind is known."""
    known_roles = {r for (r,) in Role.select(Role.id).tuples().iterator()}
    for spec in specs:
        structure = Structure.get_or_none(Structure.id == spec.structure_id)
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
    return True


def _canonical(specs: list[CriterionSpec]) -> list[tuple[int, tuple[int, ...], bool, str, bool]]:
    return sorted((s.structure_id, tuple(sorted(s.role_ids)), s.include_subtree, s.structure_kind or "",
                   s.require_valid_licence) for s in specs)


@dataclass(frozen=True)
class Diff:
    since: datetime  # when the list's last expanded message arrived
    added: int
    removed: int
    added_sample: list[str] = field(default_factory=list)
    removed_sample: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Preview:
    count: int
    sample: list[Recipient]
    names: dict[int, str]  # member id → full name, for the sample
    diff: Diff | None


def last_expanded_message(ml: MailingList) -> Message | None:
    """The list's latest message that was expanded into delivery rows."""
    has_rows = pw.fn.EXISTS(Delivery.select(Delivery.id).where(Delivery.message == Message.id))
    found: Message | None = (Message.select().where((Message.mailing_list == ml) & has_rows)
                             .order_by(Message.received_at.desc(), Message.id.desc()).first())
    return found


def diff_since_last_message(ml: MailingList, day: date | None = None, sample: int = 10) -> Diff | None:
    message = last_expanded_message(ml)
    if message is None:
        return None
    before = {email_key(a) for (a,) in Delivery.select(Delivery.address).where(Delivery.message == message)
              .tuples().iterator()}
    added = 0
    added_sample: list[str] = []
    for batch in resolve(ml, day=day, batch_size=2000, with_reasons=False):
        for recipient in batch:
            if recipient.email_key in before:
                before.discard(recipient.email_key)
            else:
                added += 1
                if len(added_sample) < sample:
                    added_sample.append(recipient.address)
    removed = sorted(k for k in before if k)
    return Diff(message.received_at, added, len(removed), added_sample, removed[:sample])


def _compute(ml: MailingList, day: date | None, sample_size: int) -> Preview:
    with closing(resolve(ml, day=day, batch_size=sample_size)) as batches:
        sample = next(batches, [])
    ids = {i for r in sample for i in r.member_ids}
    names = {m.id: m.full_name for m in Member.select(Member.id, Member.first_name, Member.last_name)
             .where(Member.id.in_(list(ids)))} if ids else {}
    return Preview(count_recipients(ml, day=day), sample, names, diff_since_last_message(ml, day))


def preview(actor: Member | None, ml: MailingList, specs: list[CriterionSpec] | None = None, *,
            day: date | None = None, sample_size: int = 20) -> Preview:
    """Who the list reaches now, with ``specs`` in place of its criteria when given (nothing is saved)."""
    staff.require_manage(actor, ml.structure)
    if specs is None:
        return _compute(ml, day, sample_size)
    check_specs(actor, specs)
    with database.atomic() as transaction:
        _write(ml, specs)
        result = _compute(ml, day, sample_size)
        transaction.rollback()
    return result


def recipients_page(actor: Member | None, ml: MailingList, *, page: int = 1, per_page: int = 100,
                    day: date | None = None) -> list[Recipient]:
    """One page of the list's recipients now, in address order, streamed up to that page only."""
    staff.require_manage(actor, ml.structure)
    start = (max(page, 1) - 1) * per_page
    with closing(resolve(ml, day=day, batch_size=per_page)) as batches:
        flat = (r for batch in batches for r in batch)
        return list(itertools.islice(flat, start, start + per_page))
