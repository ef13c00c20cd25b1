"""Who administers a list's creation, and which domain a staff member creates lists under by default.

"Notifier l’administrateur" tells, as a hosting panel does, the administrator of the platform
(``PALANQUEE_ADMIN_EMAIL``) or else the administrators of the structure above the list's: the staff holding a
scope on the nearest structure above it that has any with an address. Never the creator: a federation
administrator creating a list at the top tells nobody, and the page says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.config import Settings
from engine.directory import staff
from engine.directory.models import Member, StaffScope, Structure
from engine.lists.models import Domain, MailingList
from engine.lists.resolve import count_recipients
from engine.notices import send_notice


@dataclass(frozen=True)
class Administrator:
    """Someone told of a list's creation: a staff member, or the platform's configured address."""

    address: str
    name: str = ""  # empty for PALANQUEE_ADMIN_EMAIL
    language: str | None = None
    structure: str = ""  # the structure they administer


def administrators_above(structure: Structure, *, besides: Member | None = None) -> list[Administrator]:
    """Staff of the nearest structure strictly above ``structure`` that has staff with an address."""
    above = [s for s in structure.ancestors() if isinstance(s, Structure) and s != structure]
    for holder in reversed(above):
        people: list[Member] = list(Member.select().join(StaffScope).where(
            (StaffScope.structure == holder) & Member.email.is_null(False)).order_by(Member.licence_number))
        found = [Administrator(str(m.email), m.full_name, m.language, str(holder.name)) for m in people
                 if m != besides]
        if found:
            return found
    return []


def creation_recipients(settings: Settings, ml: MailingList, actor: Member | None) -> list[Administrator]:
    """Who "Notifier l’administrateur" tells: PALANQUEE_ADMIN_EMAIL, else the administrators above."""
    if settings.admin_email:
        return [Administrator(settings.admin_email)]
    return administrators_above(ml.structure, besides=actor)


def notify_created(settings: Settings, ml: MailingList, actor: Member | None, subscriber_count: int
                   ) -> list[Administrator]:
    """Mail the list-created notice to each administrator (in their language); returns who was told."""
    told = creation_recipients(settings, ml, actor)
    owner = ml.owner
    for person in told:
        send_notice(settings, "list_created", person.address, language=person.language or settings.default_language,
                    mailing_list=ml, owner=owner, creator=actor, subscriber_count=subscriber_count,
                    structure=ml.structure, domain_enabled=ml.domain.lists_enabled,
                    admin_url=f"{settings.base_url}/admin/lists/{ml.id}")
    return told


# --- domains as the creation form offers them ---

def default_domain(member: Member | None, domains: list[Domain]) -> Domain | None:
    """The domain a new list gets unless staff choose: an enabled one, the staff member's own when there is one
    (the domain of one of their structures or below, then the nearest above), never a switched-off one."""
    enabled = [d for d in domains if d.lists_enabled]
    if not enabled:
        return None
    if member is None:
        return enabled[0]
    scopes = staff.scopes(member)

    def closeness(domain: Domain) -> tuple[int, int, str]:
        own = any(domain.structure.is_within(scope) for scope in scopes)
        # own domains first, the highest of them; else the nearest above (the deepest)
        return (0, domain.structure.depth, domain.name) if own else (1, -domain.structure.depth, domain.name)

    return min(enabled, key=closeness)


@dataclass(frozen=True)
class DomainImpact:
    """What switching a domain's list service off stops: its live lists and their recipients now."""

    lists: list[tuple[MailingList, int]]

    @property
    def recipients(self) -> int:
        return sum(count for _ml, count in self.lists)


def domain_impact(domain: Domain) -> DomainImpact:
    lists = (MailingList.select().where((MailingList.domain == domain) & MailingList.deleted_at.is_null())
             .order_by(MailingList.local_part))
    return DomainImpact([(ml, count_recipients(ml)) for ml in lists])
