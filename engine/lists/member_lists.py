"""The lists one member is on, and why, for every live list at once ("Mes listes" in Mon espace).

One SQL statement answers for all lists together, whatever their number: the member's current mandates
matched against every role criterion, the member's club against every licensee criterion, the static
subscriptions naming the member or their address, and the opt-outs naming either, each row with what the
page shows of its list and opt-out (and the version of the names of roles and structures). The names in the reasons come from the process's label cache
(engine/directory/labels.py). ``resolve()`` stays the reference for who a list
reaches; this answers the same question from the member's side (tests/engine/test_member_lists.py).
"""

from __future__ import annotations

from datetime import date, datetime
from functools import cache
from typing import Any, NamedTuple

from engine.db import database
from engine.directory import labels
from engine.directory.models import Member
from engine.lists.resolve import Reason, _today, make_reason


class ListSummary(NamedTuple):
    """What Mes listes shows of a list (the view's needs, without loading the whole row)."""

    id: int
    local_part: str
    name: str
    domain: str

    @property
    def address(self) -> str:
        return f"{self.local_part}@{self.domain}"


class LeftSummary(NamedTuple):
    """An opt-out as Mes listes shows it."""

    id: int
    member_id: int | None  # None: the opt-out names the member's address, not the member
    created_at: datetime
    source: str


class MemberList(NamedTuple):
    """A live list the member is on (``reasons``) or has left (``opt_out``), or both."""

    mailing_list: ListSummary
    reasons: tuple[Reason, ...]  # criteria first (by criterion, role, structure), then "subscribed by the administrator"
    opt_out: LeftSummary | None  # the member's own opt-out, else one recorded for their address


# A structure is in a criterion's scope when it is the criterion's structure, or below it with include_subtree
# (paths are fixed-width segments, so "below" is "the path starts with the scope's path").
_IN_SCOPE = ("({s}.id = cs.id OR (lc.include_subtree AND substr({s}.path, 1, length(cs.path)) = cs.path)) "
             "AND (lc.structure_kind IS NULL OR lc.structure_kind = {s}.kind)")

_NULL = "CAST(NULL AS INTEGER)"  # typed, so that PostgreSQL can unite branches that start with a NULL


@cache
def _statement(param: str, *, email: bool, valid: bool, club: bool, one_list: bool) -> str:
    """The SQL for one member: (list id, criterion id, role id, structure id, opt-out id) per reason or opt-out.

    ``email``: the member has an address (criteria reach only members with one); ``valid``: their licence is
    valid today (else only criteria that do not require it); ``club``: they belong to a club.
    """
    p = param
    licence = "" if valid else " AND NOT lc.require_valid_licence"
    branches = []
    if email:
        branches.append(
            f"SELECT lc.mailing_list_id, lc.id, md.role_id, md.structure_id, {_NULL} FROM mandate md "
            f"JOIN criterion_role cr ON cr.role_id = md.role_id JOIN list_criterion lc ON lc.id = cr.criterion_id "
            f"JOIN structure s ON s.id = md.structure_id JOIN structure cs ON cs.id = lc.structure_id "
            f"WHERE md.member_id = {p} AND md.starts_on <= {p} AND (md.ends_on IS NULL OR md.ends_on >= {p}) "
            f"AND {_IN_SCOPE.format(s='s')}{licence}")
        if club:
            branches.append(
                f"SELECT lc.mailing_list_id, lc.id, {_NULL}, c.id, {_NULL} FROM list_criterion lc "
                f"JOIN structure cs ON cs.id = lc.structure_id JOIN structure c ON c.id = {p} "
                f"WHERE NOT EXISTS (SELECT 1 FROM criterion_role cr WHERE cr.criterion_id = lc.id) "
                f"AND {_IN_SCOPE.format(s='c')}{licence}")
    by_address = f" OR sub.email_key = {p}" if email else ""
    branches.append(f"SELECT sub.mailing_list_id, {_NULL}, {_NULL}, {_NULL}, {_NULL} FROM subscription sub "
                    f"WHERE sub.member_id = {p}{by_address}")
    by_address = f" OR o.email_key = {p}" if email else ""
    branches.append(f"SELECT o.mailing_list_id, {_NULL}, {_NULL}, {_NULL}, o.id FROM opt_out o "
                    f"WHERE o.member_id = {p}{by_address}")
    only = f" AND ml.id = {p}" if one_list else ""
    return (f"WITH hit (list_id, criterion_id, role_id, structure_id, opt_out_id) AS ({' UNION ALL '.join(branches)}) "
            f"SELECT hit.list_id, hit.criterion_id, hit.role_id, hit.structure_id, hit.opt_out_id, ml.local_part, "
            f"ml.name, d.name, o.member_id, o.created_at, o.source, ({labels.VERSION_SQL}) FROM hit "
            f"JOIN mailing_list ml ON ml.id = hit.list_id JOIN domain d ON d.id = ml.domain_id "
            f"LEFT JOIN opt_out o ON o.id = hit.opt_out_id WHERE ml.deleted_at IS NULL{only}")


def _params(member: Member, day: date, list_id: int | None) -> tuple[list[Any], dict[str, bool]]:
    email = bool(member.email_key)
    flags = {"email": email, "valid": member.licence_valid_on(day), "club": member.club_id is not None,
             "one_list": list_id is not None}
    day_param: Any = day.isoformat() if database.obj.param == "?" else day  # SQLite stores dates as ISO text
    params: list[Any] = []
    if email:
        params += [member.id, day_param, day_param]
        if flags["club"]:
            params.append(member.club_id)
        params += [member.id, member.email_key, member.id, member.email_key]
    else:
        params += [member.id, member.id]
    if list_id is not None:
        params.append(list_id)
    return params, flags


def lists_of_member(member: Member, day: date | None = None, *, list_id: int | None = None) -> list[MemberList]:
    """Every live list ``member`` is on (with why) or has left (with the opt-out), by list address.

    With ``list_id``, only that list (empty when the member is neither on it nor opted out of it).
    """
    params, flags = _params(member, _today(day), list_id)
    rows = database.obj.execute_sql(_statement(database.obj.param, **flags), params).fetchall()
    if not rows:
        return []
    names = labels.current(rows[0][11])  # the label version came with the rows: no statement of its own
    lists: dict[int, ListSummary] = {}
    reasons: dict[int, dict[tuple[int | None, int | None, int | None], Reason]] = {}
    left: dict[int, LeftSummary] = {}
    for row in sorted(rows, key=_order):
        list_id_, criterion_id, role_id, structure_id, opt_out_id, local_part, name, domain = row[:8]
        if list_id_ not in lists:
            lists[list_id_], reasons[list_id_] = ListSummary(list_id_, local_part, name, domain), {}
        if opt_out_id is None:
            key = (criterion_id, role_id, structure_id)
            if key not in reasons[list_id_]:
                reasons[list_id_][key] = make_reason(names, criterion_id, role_id, structure_id)
        elif list_id_ not in left or row[8] == member.id:  # the member's own opt-out first (rows by id)
            left[list_id_] = LeftSummary(opt_out_id, row[8], _created(row[9]), row[10])
    ordered = sorted(lists.values(), key=lambda ml: (ml.local_part, ml.domain, ml.id))
    return [MemberList(ml, tuple(reasons[ml.id].values()), left.get(ml.id)) for ml in ordered]


def _created(value: Any) -> datetime:
    """SQLite returns the text peewee stored (``isoformat(" ")``); PostgreSQL a datetime."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _order(row: tuple[Any, ...]) -> tuple[int, int, int, int]:
    """Reasons by criterion (by criterion, role, structure), static subscriptions after them; opt-outs by id."""
    _list, criterion_id, role_id, structure_id, opt_out_id = row[:5]
    if opt_out_id is not None:
        return (2, opt_out_id, 0, 0)
    if criterion_id is None:
        return (1, 0, 0, 0)
    return (0, criterion_id, role_id or 0, structure_id or 0)
