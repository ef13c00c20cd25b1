"""Staff workflows on mail domains and lists: scoping, the lists page, create, settings, posting policy, delete.

Every function takes the acting staff member (``None`` for the system: CLI, jobs) and checks their scope
itself, so that a forged form cannot reach outside it; the portal only validates and calls. Errors that
people must read are ``AdminError(code, **params)``: the portal turns the code into a translated sentence.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee as pw

from engine import audit, clock
from engine.config import Settings
from engine.directory import staff
from engine.directory.models import Member, Role, Structure
from engine.lists import administrators, counts, listing, subscribers, welcome
from engine.lists.models import (
    DMARC_AUTHOR_IN,
    DMARC_MODES,
    SENDER_CHECKS,
    Domain,
    ListKind,
    ListModerator,
    MailingList,
    PostingPermission,
    PostPolicy,
)

# RFC 5321 allows more, but list addresses are typed by people and parsed by the intake: lower-case
# letters, digits, dots, dashes and underscores; no "+" (sub-addresses) and none of the intake's suffixes.
LOCAL_PART = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
RESERVED_SUFFIXES = ("-request", "-owner", "-bounces", "-unsubscribe", "-confirm", "-join", "-leave", "-admin")
RESERVED_NAMES = ("fbl",)  # the domain's feedback-loop address (engine/bounces/complaints.py FEEDBACK_LOCAL_PART)
# RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its angle brackets, so an address 254. The List-Id
# (RFC 2919) is the same ``local_part.domain``, which must stay within 255: one limit keeps both.
ADDRESS_MAX = 254
REPLY_TO = ("author", "list")
SORTS = {
    "address": (MailingList.local_part, Domain.name),
    "name": (MailingList.name,),
    "kind": (MailingList.kind, MailingList.local_part),
    "state": (Domain.lists_enabled, MailingList.local_part),
    "created": (MailingList.created_at, MailingList.id),
}


class AdminError(ValueError):
    """A refusal people must read: ``code`` names the sentence, ``params`` fill it in."""

    def __init__(self, code: str, **params: Any) -> None:
        super().__init__(code, params)
        self.code = code
        self.params = params


def check_header_text(value: str, field: str) -> str:
    """Refuse line breaks and control characters in text that goes into mail headers later."""
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value):
        raise AdminError("control_characters", field=field)
    return value.strip()


def check_local_part(local_part: str) -> str:
    value = local_part.strip().lower()
    if not LOCAL_PART.match(value) or ".." in value or value.endswith(RESERVED_SUFFIXES) or value in RESERVED_NAMES:
        raise AdminError("bad_local_part", value=local_part[:80])
    return value


def check_address_length(local_part: str, domain: str) -> None:
    """Refuse a list address longer than ``ADDRESS_MAX`` (a 64-octet local part on a long domain would be)."""
    if len(local_part) + 1 + len(domain) > ADDRESS_MAX:
        raise AdminError("address_too_long", address=f"{local_part}@{domain}", limit=ADDRESS_MAX)


# --- scoping ---

def visible_lists(member: Member | None) -> pw.ModelSelect[MailingList]:
    """Live lists whose structure the member manages (every live list for the system)."""
    query = (MailingList.select(MailingList, Domain, Structure).join(Domain)
             .switch(MailingList).join(Structure).where(MailingList.deleted_at.is_null()))
    if member is not None:
        query = query.where(staff.within_scopes(member, Structure.path))
    return query


def get_list(member: Member | None, list_id: int) -> MailingList:
    """A live list the member manages; ``DoesNotExist`` when absent or deleted, ``NotAllowed`` outside scope."""
    ml = listing.live_list(list_id)  # with its domain and structure: one statement compiled once
    if ml is None:
        raise MailingList.DoesNotExist(f"no live list {list_id}")
    staff.require_manage(member, ml.structure)
    return ml


def usable_domains(member: Member | None) -> list[Domain]:
    """Domains a member may create lists under: their structures', and those of structures above them."""
    domains = list(Domain.select(Domain, Structure).join(Structure).order_by(Domain.name))
    return [d for d in domains if member is None or staff.can_use(member, d.structure)]


@dataclass(frozen=True)
class ListRow:
    mailing_list: listing.ListSummary  # what the page shows of the list (address, name, kind, domain's state)
    recipients: int | None  # the stored count (engine/lists/counts.py); None until first counted
    counted_at: datetime | None = None
    stale: bool = False  # a new count is on its way (the list changed, or the count is old)


def lists_page(member: Member | None, *, search: str = "", sort: str = "address", descending: bool = False,
               page: int = 1, per_page: int = 50) -> tuple[list[ListRow], int]:
    """One page of the lists page (search in address and name) with each list's stored recipient count."""
    fields = SORTS.get(sort, SORTS["address"])
    if not search.strip():  # the usual page: statements compiled once per scopes and sort
        lists, total = listing.page_of_lists(member, fields, descending, page, per_page)
        found = counts.counts_of(lists)
        return [ListRow(ml, found[ml.id].recipients, found[ml.id].counted_at, found[ml.id].stale)
                for ml in lists], total
    query = visible_lists(member)
    if search.strip():
        needle = search.strip().lower()
        query = query.where(pw.fn.LOWER(MailingList.local_part).contains(needle) |
                            pw.fn.LOWER(MailingList.name).contains(needle) | Domain.name.contains(needle))
    total = query.count()
    query = query.order_by(*[f.desc() if descending else f.asc() for f in fields])
    lists = [listing.ListSummary.of(ml) for ml in query.paginate(max(page, 1), per_page)]
    found = counts.counts_of(lists)  # stored counts: never one resolve per row
    return [ListRow(ml, found[ml.id].recipients, found[ml.id].counted_at, found[ml.id].stale) for ml in lists], total


# --- domains ---

def set_domain_enabled(actor: Member | None, domain: Domain, enabled: bool, *, ip: str | None = None) -> bool:
    """Switch the list service of a domain; its lists are kept either way. Returns whether it changed."""
    staff.require_manage(actor, domain.structure)
    if domain.lists_enabled == enabled:
        return False
    Domain.update(lists_enabled=enabled).where(Domain.id == domain.id).execute()
    domain.lists_enabled = enabled
    audit.record("domain.enabled" if enabled else "domain.disabled", domain, actor=actor,
                 structure_id=domain.structure_id, ip=ip, domain=domain.name)
    return True


# --- create, settings, delete ---

@dataclass(frozen=True)
class NewList:
    domain_id: int
    local_part: str
    name: str
    structure_id: int
    kind: str = ListKind.STATIC
    owner_id: int | None = None
    description: str = ""
    subscribers: str = ""
    notify: bool = False


@dataclass(frozen=True)
class Created:
    mailing_list: MailingList
    subscribers: subscribers.SubscriberChange
    notified: tuple[administrators.Administrator, ...] = ()  # who was told of the creation


def create_list(settings: Settings, actor: Member | None, new: NewList, *, ip: str | None = None) -> Created:
    """Create a list, subscribe its valid lines, and tell the administrators when asked (``administrators``)."""
    domain = Domain.get_by_id(new.domain_id)
    structure = Structure.get_by_id(new.structure_id)
    staff.require_manage(actor, structure)
    if actor is not None and not staff.can_use(actor, domain.structure):
        raise staff.NotAllowed(f"domain {domain.name} is outside the staff member's scopes")
    local_part = check_local_part(new.local_part)
    check_address_length(local_part, domain.name)
    name = check_header_text(new.name, "name") or local_part
    if new.kind not in ListKind.ALL:
        raise AdminError("bad_kind", value=new.kind)
    taken = MailingList.get_or_none((MailingList.domain == domain) & (MailingList.local_part == local_part))
    if taken is not None:
        code = "address_deleted" if taken.deleted_at else "address_taken"
        raise AdminError(code, address=f"{local_part}@{domain.name}")
    with MailingList._meta.database.atomic():
        ml = MailingList.create(domain=domain, local_part=local_part, name=name, kind=new.kind,
                                structure=structure, owner=new.owner_id, description=new.description.strip(),
                                created_at=clock.now())
        audit.record("list.created", ml, actor=actor, structure_id=structure.id, ip=ip, address=ml.address,
                     kind=ml.kind, name=ml.name)
        change = subscribers.replace_subscribers(actor, ml, new.subscribers, ip=ip, audit_empty=False)
    welcome.welcome_new(settings, actor, ml, change.new, change.opted_out, ip=ip)  # after the commit
    told = administrators.notify_created(settings, ml, actor, subscribers.subscriber_count(ml)) if new.notify else []
    if told:
        audit.record("list.creation_notified", ml, actor=actor, structure_id=structure.id, ip=ip,
                     to=[person.address for person in told])
    return Created(ml, change, tuple(told))


def update_settings(actor: Member | None, ml: MailingList, *, name: str, description: str = "",
                    subject_prefix: str = "", reply_to: str = "author", owner_id: int | None = None,
                    ip: str | None = None, delivery: Mapping[str, Any] | None = None) -> list[str]:
    """Edit a list's names and options; returns the fields that changed (audited). ``delivery`` may set
    ``dmarc_mode``, ``dmarc_author_in``, ``sender_check`` and ``arc_seal`` (absent: unchanged)."""
    staff.require_manage(actor, ml.structure)
    if reply_to not in REPLY_TO:
        raise AdminError("bad_reply_to", value=reply_to)
    values = {"name": check_header_text(name, "name") or ml.local_part, "description": description.strip(),
              "subject_prefix": check_header_text(subject_prefix, "subject_prefix"), "reply_to": reply_to,
              "owner": owner_id, **_delivery_options(delivery or {})}
    changed = [k for k, v in values.items() if getattr(ml, "owner_id" if k == "owner" else k) != v]
    if changed:
        MailingList.update(**{k: values[k] for k in changed}).where(MailingList.id == ml.id).execute()
        for key in changed:
            setattr(ml, "owner_id" if key == "owner" else key, values[key])
        new_values: dict[str, Any] = {k: values[k] for k in changed}
        audit.record("list.settings_changed", ml, actor=actor, structure_id=ml.structure_id, ip=ip,
                     fields=changed, **new_values)
    return changed


def _delivery_options(delivery: Mapping[str, Any]) -> dict[str, Any]:
    allowed = {"dmarc_mode": DMARC_MODES, "dmarc_author_in": DMARC_AUTHOR_IN, "sender_check": SENDER_CHECKS,
               "arc_seal": (True, False)}
    for key, value in delivery.items():
        if key not in allowed or value not in allowed[key]:
            raise AdminError("bad_option", value=f"{key}={value}")
    return dict(delivery)


def delete_lists(actor: Member | None, list_ids: list[int], *, ip: str | None = None) -> list[MailingList]:
    """Soft-delete lists: they refuse mail at once; messages, deliveries and audit events are kept."""
    lists = [get_list(actor, list_id) for list_id in dict.fromkeys(list_ids)]  # every one checked first
    now = clock.now()
    with MailingList._meta.database.atomic():
        for ml in lists:
            MailingList.update(deleted_at=now).where(MailingList.id == ml.id).execute()
            ml.deleted_at = now
            audit.record("list.deleted", ml, actor=actor, structure_id=ml.structure_id, ip=ip, address=ml.address)
    return lists


def purge_list(actor: Member | None, ml: MailingList, *, ip: str | None = None) -> None:
    """Remove a deleted list for good (its messages and deliveries with it; audit events stay)."""
    staff.require_manage(actor, ml.structure)
    if ml.deleted_at is None:
        raise AdminError("not_deleted", address=ml.address)
    audit.record("list.purged", ml, actor=actor, structure_id=ml.structure_id, ip=ip, address=ml.address)
    ml.delete_instance(recursive=False)


# --- posting policy ---

@dataclass(frozen=True)
class PostingRules:
    policy: str
    hold_unauthorised: bool
    role_ids: tuple[int, ...] = ()
    role_structure_id: int | None = None  # with policy "roles": holders in this structure and below
    addresses: str = ""  # with policy "addresses": one per line
    moderators: str = ""  # licence numbers or addresses, one per line


def posting_rules(ml: MailingList) -> PostingRules:
    perms = list(PostingPermission.select().where(PostingPermission.mailing_list == ml))
    mods = [m.member.licence_number if m.member is not None else (m.email or "")
            for m in ListModerator.select().where(ListModerator.mailing_list == ml)]
    return PostingRules(ml.post_policy, ml.hold_unauthorised,
                        tuple(p.role_id for p in perms if p.role_id),
                        next((p.structure_id for p in perms if p.role_id), None),
                        "\n".join(p.email_key for p in perms if p.email_key), "\n".join(mods))


def set_posting_rules(actor: Member | None, ml: MailingList, rules: PostingRules, *, ip: str | None = None) -> None:
    """Store who may post, who moderates, and what happens to the others (held or refused)."""
    staff.require_manage(actor, ml.structure)
    if rules.policy not in PostPolicy.ALL:
        raise AdminError("bad_policy", value=rules.policy)
    structure = Structure.get_by_id(rules.role_structure_id) if rules.role_structure_id else ml.structure
    staff.require_manage(actor, structure)
    roles = list(Role.select().where(Role.id.in_(list(rules.role_ids))))
    addresses, bad = subscribers.parse_lines(rules.addresses)
    moderators, bad_mods = _parse_moderators(rules.moderators)
    if bad or bad_mods:
        raise AdminError("bad_lines", lines=[(b.number, b.content) for b in [*bad, *bad_mods]])
    if rules.policy == PostPolicy.ROLES and not roles:
        raise AdminError("roles_required")
    with MailingList._meta.database.atomic():
        MailingList.update(post_policy=rules.policy, hold_unauthorised=rules.hold_unauthorised).where(
            MailingList.id == ml.id).execute()
        ml.post_policy, ml.hold_unauthorised = rules.policy, rules.hold_unauthorised
        PostingPermission.delete().where(PostingPermission.mailing_list == ml).execute()
        for role in roles:
            PostingPermission.create(mailing_list=ml, role=role, structure=structure)
        for key in addresses:
            PostingPermission.create(mailing_list=ml, email_key=key)
        ListModerator.delete().where(ListModerator.mailing_list == ml).execute()
        for member, email in moderators:
            ListModerator.create(mailing_list=ml, member=member, email=email)
        audit.record("list.posting_changed", ml, actor=actor, structure_id=ml.structure_id, ip=ip,
                     policy=rules.policy, hold=rules.hold_unauthorised, roles=[r.code for r in roles],
                     addresses=len(addresses), moderators=len(moderators))


def _parse_moderators(text: str) -> tuple[list[tuple[Member | None, str | None]], list[subscribers.BadLine]]:
    """Each line a licence number (a member) or an address (kept as typed)."""
    found: list[tuple[Member | None, str | None]] = []
    bad: list[subscribers.BadLine] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if "@" not in line:
            member = Member.get_or_none(Member.licence_number == line.upper())
            if member is None:
                bad.append(subscribers.BadLine(number, line, "unknown_licence"))
            else:
                found.append((member, None))
            continue
        address = subscribers.valid_address(line)
        if address is None:
            bad.append(subscribers.BadLine(number, line, "bad_address"))
        else:
            found.append((None, address))
    return found, bad
