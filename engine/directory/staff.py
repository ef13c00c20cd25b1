"""Staff scoping: which structures a staff member may manage (their scopes and everything below).

Also the scoped reading of the audit log: a staff member sees the events of the structures they manage and
the member-side events (address changes, logins) of the members of their clubs; a federation administrator
sees every event.
"""

from __future__ import annotations

import functools
import operator
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import peewee as pw

from engine import clock
from engine.audit import AuditEvent
from engine.db import database
from engine.directory.models import EmailChange, Mandate, Member, StaffScope, Structure
from engine.prepared import Prepared, slot


class NotAllowed(Exception):
    """The staff member may not act on this object (the portal answers 403)."""


_SCOPES: Prepared[Structure] = Prepared(lambda: (
    Structure.select().join(StaffScope).where(StaffScope.member == slot("member")).order_by(Structure.path)))


def scopes(member: Member) -> list[Structure]:
    """The structures ``member`` is staff of, read once per member object: a page asks several times (the
    list's scope, the structures it shows) and a request loads its member anew, so a grant or a withdrawal
    is seen at the next request."""
    known: list[Structure] | None = member.__dict__.get("_staff_scopes")
    if known is None:
        known = member.__dict__["_staff_scopes"] = _SCOPES.all(member=member.id)
    return known


_ANY_SCOPE: Prepared[tuple[int]] = Prepared(lambda: (
    StaffScope.select(StaffScope.id).where(StaffScope.member == slot("member")).limit(1).tuples()))


def is_staff(member: Member) -> bool:
    """Whether the member holds a staff scope (every page's navigation asks: known already when the member was
    loaded by ``sessions.member_for``, else a query compiled once)."""
    known = member.__dict__.get("holds_staff_scope")
    if known is not None:
        return bool(known)
    return _ANY_SCOPE.first(member=member.id) is not None


def is_federation_admin(member: Member) -> bool:
    """Staff on a root structure (the national federation) sees everything."""
    return any(scope.parent_id is None for scope in scopes(member))


def within_scopes(member: Member, path: pw.Field) -> pw.ColumnBase:
    """Condition on a structure path column: inside one of the member's scopes (false for non-staff)."""
    parts = []
    for scope in scopes(member):
        low, high = scope.subtree_bounds()
        parts.append((path >= low) & (path < high))
    if not parts:
        return pw.SQL("1 = 0")
    return functools.reduce(operator.or_, parts)


def manageable_structures(member: Member) -> pw.ModelSelect[Structure]:
    """Every structure within one of the member's staff scopes (empty for non-staff)."""
    return Structure.select().where(within_scopes(member, Structure.path))


def can_manage(member: Member, structure: Structure) -> bool:
    return any(structure.is_within(scope) for scope in scopes(member))


def require_manage(member: Member | None, structure: Structure) -> None:
    """Raise ``NotAllowed`` unless ``member`` manages ``structure``; ``None`` is the system (CLI, jobs)."""
    if member is not None and not can_manage(member, structure):
        raise NotAllowed(f"{structure.code} is outside the staff member's scopes")


RightsBeyond = Callable[[Member], Mapping[int, str]]
"""Given a staff member, the members holding rights granted outside the directory on structures beyond that
staff member's scopes (member id -> what they hold, a key of the import's reasons). The lists give theirs
(``engine.lists.authority.rights_beyond``: owners and moderators of lists); the directory cannot see them."""


def no_rights_beyond(_actor: Member) -> Mapping[int, str]:
    """For callers that never change credentials (a scope test only)."""
    return {}


@dataclass(frozen=True)
class Authority:
    """What one actor may do to members, read once (an import checks thousands of rows against it).

    ``actor`` ``None`` is the system (command line, jobs): it may do anything.
    """

    system: bool
    federation_admin: bool
    structures: frozenset[int]  # every structure within the actor's scopes
    staff_rights: dict[int, frozenset[int]]  # member id -> the structures of that member's staff scopes
    beyond: Mapping[int, str] = field(default_factory=dict)  # member id -> a right held beyond the scopes

    def covers(self, member: Member) -> bool:
        """The member is the actor's to manage: their club is within the actor's scopes. A member with no
        club is outside every regional scope (only federation administrators and the system reach them)."""
        if self.system or self.federation_admin:
            return True
        return member.club_id is not None and member.club_id in self.structures

    def refusal(self, member: Member) -> str | None:
        """Why the actor may not change what authenticates ``member`` (address, password, licence number),
        or None when they may: ``out_of_scope``, ``protected`` (staff rights), ``protected_mandate`` or
        ``protected_list`` (a mandate, or a list owned or moderated, on a structure beyond the actor's scopes).

        The member must be covered; a member who holds staff rights can only be changed by a federation
        administrator whose scopes include every one of those rights, and any other right held beyond the
        actor's scopes protects the member too. Otherwise a regional staff member could mail themselves a
        reset link for an account above their own, or the moderation links and board mail of a national list
        (issue 11, finding 1).
        """
        if self.system:
            return None
        if not self.covers(member):
            return "out_of_scope"
        rights = self.staff_rights.get(member.id)
        if rights and not (self.federation_admin and rights <= self.structures):
            return "protected"
        return self.beyond.get(member.id)

    def may_change_credentials(self, member: Member) -> bool:
        return self.refusal(member) is None


def mandates_beyond(actor: Member) -> dict[int, str]:
    """Members holding a mandate (current or to come) on a structure outside the actor's scopes: a national
    board member licensed in a regional club receives, and may post to, the national board's lists."""
    outside = Structure.select(Structure.id).where(~within_scopes(actor, Structure.path))
    today = clock.now().date()
    query = (Mandate.select(Mandate.member).distinct()
             .where(Mandate.structure.in_(outside) & (Mandate.ends_on.is_null() | (Mandate.ends_on >= today))))
    return {member_id: "protected_mandate" for (member_id,) in query.tuples().iterator()}


def authority(actor: Member | None, rights_beyond: RightsBeyond) -> Authority:
    """The actor's authority over members; ``rights_beyond`` adds the rights the directory cannot see
    (pass ``engine.lists.authority.rights_beyond`` wherever credentials may change)."""
    if actor is None:
        return Authority(True, False, frozenset(), {})
    structures = frozenset(s for (s,) in manageable_structures(actor).select(Structure.id).tuples().iterator())
    rights: dict[int, set[int]] = {}
    for member_id, structure_id in StaffScope.select(StaffScope.member, StaffScope.structure).tuples().iterator():
        rights.setdefault(member_id, set()).add(structure_id)
    beyond = {**mandates_beyond(actor), **rights_beyond(actor)}
    return Authority(False, is_federation_admin(actor), structures,
                     {member_id: frozenset(ids) for member_id, ids in rights.items()}, beyond)


def covers_member(actor: Member | None, member: Member) -> bool:
    return authority(actor, no_rights_beyond).covers(member)


def require_credentials_change(actor: Member | None, member: Member, rights_beyond: RightsBeyond) -> None:
    """Raise ``NotAllowed`` unless ``actor`` may change ``member``'s address or password."""
    if not authority(actor, rights_beyond).may_change_credentials(member):
        raise NotAllowed(f"{member.licence_number}: outside the actor's authority")


def can_use(member: Member, structure: Structure) -> bool:
    """Within a scope, or above one: the federation's domain serves the committees below it."""
    return any(structure.is_within(scope) or scope.is_within(structure) for scope in scopes(member))


@dataclass(frozen=True)
class AuditFilter:
    action: str = ""
    object_type: str = ""
    object_id: int | None = None
    actor: str = ""  # licence number, or an actor label such as "import" or "system"
    since: date | None = None
    until: date | None = None


def _unindexed(column: pw.Field) -> pw.ColumnBase:
    """``+column``: the same value, but the planner will not pick an index on it (SQLite's documented hint; a no-op
    in PostgreSQL for numbers). The journal must be read in (at, id) order and stop at a page: gathering every
    event of a region through the other indexes, then sorting them, took seconds on a million events."""
    return pw.NodeList((pw.SQL("+"), column), glue="")


def _looked_up(query: pw.SelectQuery) -> pw.SelectQuery:
    """``query`` as a look-up for each event, on PostgreSQL too. Its planner turns an ``EXISTS`` into a hash of
    the subquery's every row when it expects to test many rows (half a million events, by its estimate), and
    builds it before the first: at 100,000 members that was every member in a region's clubs, twice, 60 ms
    each, for a page that stops after 51 events. ``OFFSET 0`` keeps the subquery as it is written (PostgreSQL
    does not flatten a subquery with an offset), an index look-up per event read. SQLite plans it so already."""
    return query.offset(0) if isinstance(database.obj, pw.PostgresqlDatabase) else query


def _visible_to(member: Member) -> pw.Expression:
    """Events tied to a structure in scope, and member-side events (no structure) of members of clubs in scope.

    Each test is a lookup for the event at hand (the journal is read newest first and stops at a page), not a
    list of every member of a region built for each page."""
    place, club = Structure.alias("scope_place"), Structure.alias("scope_club")
    person, change = Member.alias("scope_member"), EmailChange.alias("scope_change")

    def in_scope_member(member_id: pw.ColumnBase) -> pw.ColumnBase:
        return pw.fn.EXISTS(_looked_up(person.select(person.id).join(club, on=(person.club == club.id))
                                       .where((person.id == member_id) & within_scopes(member, club.path))))

    placed = pw.fn.EXISTS(_looked_up(place.select(place.id).where(
        (place.id == _unindexed(AuditEvent.structure_id)) & within_scopes(member, place.path))))
    changed = pw.fn.EXISTS(_looked_up(change.select(change.id).join(person, on=(change.member == person.id))
                                      .join(club, on=(person.club == club.id))
                                      .where((change.id == AuditEvent.object_id) & within_scopes(member, club.path))))
    unplaced = _unindexed(AuditEvent.structure_id).is_null() & (
        in_scope_member(_unindexed(AuditEvent.actor)) |
        ((AuditEvent.object_type == "member") & in_scope_member(_unindexed(AuditEvent.object_id))) |
        ((AuditEvent.object_type == "email_change") & changed))
    return placed | unplaced


def audit_events(member: Member, filters: AuditFilter | None = None) -> pw.ModelSelect[AuditEvent]:
    """The audit events ``member`` may read, newest first, narrowed by ``filters``."""
    filters = filters or AuditFilter()
    query = AuditEvent.select(AuditEvent, Member).join(Member, pw.JOIN.LEFT_OUTER, on=(AuditEvent.actor == Member.id))
    if not is_federation_admin(member):
        query = query.where(_visible_to(member))
    if filters.action:
        query = query.where(AuditEvent.action.startswith(filters.action))
    if filters.object_type:
        query = query.where(AuditEvent.object_type == filters.object_type)
    if filters.object_id is not None:
        query = query.where(AuditEvent.object_id == filters.object_id)
    if filters.actor:
        query = query.where((Member.licence_number == filters.actor.upper()) |
                            (AuditEvent.actor_label == filters.actor))
    if filters.since:
        query = query.where(AuditEvent.at >= datetime.combine(filters.since, time()))
    if filters.until:
        query = query.where(AuditEvent.at < datetime.combine(filters.until + timedelta(days=1), time()))
    return query.order_by(AuditEvent.at.desc(), AuditEvent.id.desc())


def audit_page(member: Member, filters: AuditFilter | None = None, *, before: tuple[datetime, int] | None = None,
               size: int = 50) -> tuple[list[AuditEvent], tuple[datetime, int] | None]:
    """``size`` events older than ``before`` (an event's (at, id); the newest without it), and the position to
    pass for the next page (None at the end). Keyset paging on the (at, id) index: the thousandth page of a
    journal of a million events costs what the first does, where an OFFSET would read every row before it."""
    filters = filters or AuditFilter()
    if filters == AuditFilter():  # the usual journal, unfiltered: compiled once per scopes and direction
        events = _unfiltered(member, before, size).all(
            at=before[0] if before else None, id=before[1] if before else None, limit=size + 1)
    else:
        query = audit_events(member, filters)
        if before is not None:
            query = _older_than(query, *before)
        events = list(query.limit(size + 1))
    more = len(events) > size
    events = events[:size]
    return events, ((events[-1].at, events[-1].id) if more and events else None)


def _older_than(query: pw.ModelSelect[AuditEvent], at: Any, event_id: Any) -> pw.ModelSelect[AuditEvent]:
    return query.where((AuditEvent.at <= at) & ((AuditEvent.at < at) | (AuditEvent.id < event_id)))


_JOURNALS: OrderedDict[tuple[Any, ...], Prepared[AuditEvent]] = OrderedDict()


def _unfiltered(member: Member, before: tuple[datetime, int] | None, size: int) -> Prepared[AuditEvent]:
    """The unfiltered journal's page statement for ``member``'s scopes, kept per scopes and direction (peewee
    wrote its SQL, with the scope tests of ``_visible_to``, in more time than the database runs it)."""
    shape = (type(database.obj).__name__, tuple(scope.subtree_bounds() for scope in scopes(member)), before is not None)
    found = _JOURNALS.get(shape)
    if found is None:
        query = audit_events(member)
        if before is not None:
            query = _older_than(query, slot("at", AuditEvent.at), slot("id"))
        found = _JOURNALS[shape] = Prepared(lambda: query.limit(slot("limit")))
        while len(_JOURNALS) > 256:
            _JOURNALS.popitem(last=False)
    else:
        _JOURNALS.move_to_end(shape)
    return found
