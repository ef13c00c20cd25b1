"""Staff scoping: which structures a staff member may manage (their scopes and everything below)."""

from __future__ import annotations

import peewee as pw

from engine.directory.models import Member, StaffScope, Structure


def scopes(member: Member) -> list[Structure]:
    return list(Structure.select().join(StaffScope).where(StaffScope.member == member).order_by(Structure.path))


def is_staff(member: Member) -> bool:
    return StaffScope.select().where(StaffScope.member == member).exists()


def is_federation_admin(member: Member) -> bool:
    """Staff on a root structure (the national federation) sees everything."""
    return StaffScope.select().join(Structure).where(
        (StaffScope.member == member) & Structure.parent.is_null()).exists()


def manageable_structures(member: Member) -> pw.ModelSelect:
    """Every structure within one of the member's staff scopes (empty for non-staff)."""
    condition = None
    for scope in scopes(member):
        low, high = scope.subtree_bounds()
        part = (Structure.path >= low) & (Structure.path < high)
        condition = part if condition is None else (condition | part)
    if condition is None:
        return Structure.select().where(pw.SQL("1 = 0"))
    return Structure.select().where(condition)


def can_manage(member: Member, structure: Structure) -> bool:
    return any(structure.is_within(scope) for scope in scopes(member))
