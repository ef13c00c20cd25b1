"""Static subscribers typed by staff, one address per line, and the opt-outs staff may read and export.

Editing works in batches so that lists of 100,000 addresses stay usable: the whole-text edit (added lines
subscribe, removed lines unsubscribe) and the bulk add/remove both insert and delete 500 rows at a time.
Bad lines are reported with their number and content while every valid line is saved; duplicates are
merged case-insensitively. Opt-outs are never touched here: a subscriber who left stays out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import peewee as pw

from engine import audit, clock, exports
from engine.db import batched
from engine.directory import staff
from engine.directory.models import Member, email_key
from engine.directory.models import valid_address as valid_address  # its home is the directory; kept importable here
from engine.lists import counts
from engine.lists.models import MailingList, OptOut, Subscription

BATCH = 500
TEXTAREA_LIMIT = 5000  # above this many subscribers, the portal offers bulk add/remove instead of one text


@dataclass(frozen=True)
class BadLine:
    number: int  # 1-based line number in the text typed
    content: str
    reason: str  # bad_address, unknown_licence


@dataclass
class SubscriberChange:
    added: int = 0
    removed: int = 0
    kept: int = 0
    duplicates: int = 0
    bad: list[BadLine] = field(default_factory=list)
    opted_out: list[str] = field(default_factory=list)  # valid lines whose address left the list
    new: dict[str, str] = field(default_factory=dict)  # addresses this change subscribed, by key (to welcome)


def parse_lines(text: str) -> tuple[dict[str, str], list[BadLine]]:
    """Valid addresses by key (first spelling met, in order) and the bad lines; duplicates are merged."""
    found: dict[str, str] = {}
    bad: list[BadLine] = []
    for number, raw in enumerate((text or "").splitlines(), start=1):
        line = raw.strip().strip(",;")
        if not line:
            continue
        address = valid_address(line)
        if address is None:
            bad.append(BadLine(number, raw.strip()[:200], "bad_address"))
            continue
        found.setdefault(email_key(address) or "", address)
    return found, bad


def _line_count(text: str) -> int:
    return sum(1 for line in (text or "").splitlines() if line.strip().strip(",;"))


def subscriber_count(ml: MailingList) -> int:
    return Subscription.select().where(Subscription.mailing_list == ml).count()


def subscribers_text(ml: MailingList) -> str:
    """Every subscriber, one per line, ordered by address (for the textarea of small lists)."""
    rows = (Subscription.select(Subscription.email).where(Subscription.mailing_list == ml)
            .order_by(Subscription.email_key).tuples().iterator())
    return "\n".join(address for (address,) in rows)


def subscribers_page(ml: MailingList, *, page: int = 1, per_page: int = 100, search: str = "") -> tuple[list[Subscription], int]:
    query = Subscription.select().where(Subscription.mailing_list == ml)
    if search.strip():
        query = query.where(Subscription.email_key.contains(search.strip().lower()))
    return list(query.order_by(Subscription.email_key).paginate(max(page, 1), per_page)), query.count()


def _existing_keys(ml: MailingList) -> set[str]:
    rows = Subscription.select(Subscription.email_key).where(Subscription.mailing_list == ml).tuples().iterator()
    return {key for (key,) in rows}


def _insert(ml: MailingList, wanted: dict[str, str]) -> None:
    now = clock.now()
    for keys in batched(list(wanted), BATCH):
        owners: dict[str, int] = {}
        for member_id, key in (Member.select(Member.id, Member.email_key).where(Member.email_key.in_(keys))
                               .order_by(Member.id).tuples().iterator()):
            owners.setdefault(key, member_id)  # a family address: linked to its first member
        Subscription.insert_many([dict(mailing_list=ml.id, email=wanted[k], email_key=k, member=owners.get(k),
                                       created_at=now, source="staff") for k in keys]).execute()


def _delete(ml: MailingList, keys: list[str]) -> None:
    for chunk in batched(keys, BATCH):
        Subscription.delete().where((Subscription.mailing_list == ml) & Subscription.email_key.in_(chunk)).execute()


def _opted_out(ml: MailingList, keys: list[str]) -> list[str]:
    found: list[str] = []
    for chunk in batched(keys, BATCH):
        by_key = OptOut.select(OptOut.email_key).where((OptOut.mailing_list == ml) & OptOut.email_key.in_(chunk))
        by_member = (OptOut.select(Member.email_key).join(Member, on=(OptOut.member == Member.id))
                     .where((OptOut.mailing_list == ml) & Member.email_key.in_(chunk)))
        found += [k for (k,) in by_key.tuples().iterator()] + [k for (k,) in by_member.tuples().iterator()]
    return sorted(set(found))


def _finish(actor: Member | None, ml: MailingList, action: str, change: SubscriberChange, ip: str | None,
            wanted: dict[str, str], audit_empty: bool = True) -> SubscriberChange:
    change.opted_out = _opted_out(ml, list(wanted))
    if audit_empty or change.added or change.removed:
        audit.record(action, ml, actor=actor, structure_id=ml.structure_id, ip=ip, added=change.added,
                     removed=change.removed, bad_lines=len(change.bad))
    return change


def replace_subscribers(actor: Member | None, ml: MailingList, text: str, *, ip: str | None = None,
                        audit_empty: bool = True) -> SubscriberChange:
    """Make the static subscribers exactly the valid lines of ``text``: added lines subscribe, removed ones leave.

    Bad lines are reported and change nothing (the portal shows them again, to be corrected).
    """
    staff.require_manage(actor, ml.structure)
    wanted, bad = parse_lines(text)
    existing = _existing_keys(ml)
    to_add = {k: v for k, v in wanted.items() if k not in existing}
    to_remove = sorted(existing - set(wanted))
    change = SubscriberChange(added=len(to_add), removed=len(to_remove), kept=len(existing & set(wanted)),
                              duplicates=_line_count(text) - len(bad) - len(wanted), bad=bad)
    with MailingList._meta.database.atomic():
        _insert(ml, to_add)
        change.new = to_add
        _delete(ml, to_remove)
        change = _finish(actor, ml, "list.subscribers_replaced", change, ip, wanted, audit_empty)
    counts.recount(ml)  # after the commit: the count does not hold the write lock
    return change


def add_subscribers(actor: Member | None, ml: MailingList, text: str, *, ip: str | None = None) -> SubscriberChange:
    """Subscribe every valid line of ``text`` (bulk form for large lists); addresses already there are kept."""
    staff.require_manage(actor, ml.structure)
    wanted, bad = parse_lines(text)
    change = SubscriberChange(duplicates=_line_count(text) - len(bad) - len(wanted), bad=bad)
    with MailingList._meta.database.atomic():
        for keys in batched(list(wanted), BATCH):
            present = {k for (k,) in Subscription.select(Subscription.email_key).where(
                (Subscription.mailing_list == ml) & Subscription.email_key.in_(keys)).tuples().iterator()}
            added = {k: wanted[k] for k in keys if k not in present}
            _insert(ml, added)
            change.new.update(added)
            change.added += len(keys) - len(present)
            change.kept += len(present)
        change = _finish(actor, ml, "list.subscribers_added", change, ip, wanted)
    counts.recount(ml)
    return change


def remove_subscribers(actor: Member | None, ml: MailingList, text: str, *, ip: str | None = None) -> SubscriberChange:
    """Unsubscribe every valid line of ``text`` (bulk form for large lists)."""
    staff.require_manage(actor, ml.structure)
    wanted, bad = parse_lines(text)
    change = SubscriberChange(duplicates=_line_count(text) - len(bad) - len(wanted), bad=bad)
    with MailingList._meta.database.atomic():
        for keys in batched(list(wanted), BATCH):
            change.removed += Subscription.delete().where(
                (Subscription.mailing_list == ml) & Subscription.email_key.in_(keys)).execute()
        audit.record("list.subscribers_removed", ml, actor=actor, structure_id=ml.structure_id, ip=ip,
                     removed=change.removed, bad_lines=len(bad))
    counts.recount(ml)
    return change


# --- opt-outs, as staff see them ---

def opt_outs(ml: MailingList, *, source: str = "", search: str = "") -> pw.ModelSelect[OptOut]:
    """The list's opt-outs, newest first, with the member when there is one; filtered by source and text."""
    query = (OptOut.select(OptOut, Member).join(Member, pw.JOIN.LEFT_OUTER, on=(OptOut.member == Member.id))
             .where(OptOut.mailing_list == ml))
    if source:
        query = query.where(OptOut.source == source)
    if search.strip():
        needle = search.strip().lower()
        query = query.where(OptOut.email_key.contains(needle) | Member.email_key.contains(needle) |
                            pw.fn.LOWER(Member.last_name).contains(needle) |
                            (Member.licence_number == search.strip().upper()))
    return query.order_by(OptOut.created_at.desc(), OptOut.id.desc())


def opt_out_sources(ml: MailingList) -> list[str]:
    return [s for (s,) in OptOut.select(OptOut.source).where(OptOut.mailing_list == ml).distinct()
            .order_by(OptOut.source).tuples().iterator()]


CSV_HEADER = ("date_utc", "adresse", "numero_licence", "nom", "prenom", "source")


def opt_outs_csv(ml: MailingList, *, source: str = "", search: str = "") -> Iterator[str]:
    """The filtered opt-outs as CSV text (semicolon-separated, like the federation's exports), streamed; every
    cell neutralised against spreadsheet formulas (``engine.exports``)."""
    def rows() -> Iterator[tuple[str, ...]]:
        for opt in opt_outs(ml, source=source, search=search).iterator():
            member = opt.member if opt.member_id else None
            yield (opt.created_at.strftime("%Y-%m-%d %H:%M:%S"), (member.email if member else opt.email_key) or "",
                   member.licence_number if member else "", member.last_name if member else "",
                   member.first_name if member else "", opt.source)

    return exports.csv_rows(CSV_HEADER, rows())
