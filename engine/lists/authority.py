"""The lists' part of a staff member's authority over members (issue 11, finding 1).

Owning or moderating a list is a right like a staff scope: moderation requests, held posts and the owner's
notices go to that member's address. A staff member may not change the address of someone who owns or
moderates a live list of a structure beyond their scopes, or they would receive what that list's moderators
receive. The directory cannot look at lists (``lists`` depends on ``directory``, never the reverse), so the
callers that change addresses (the import page, ``palanquee import-members``, staff edits) hand
``rights_beyond`` to it (``engine.directory.staff.RightsBeyond``).
"""

from __future__ import annotations

from engine.directory import staff
from engine.directory.models import Member, Structure
from engine.lists.models import ListModerator, MailingList


def rights_beyond(actor: Member) -> dict[int, str]:
    """Members who own or moderate a live list of a structure outside ``actor``'s scopes (id -> ``protected_list``)."""
    outside = (MailingList.select(MailingList.id).join(Structure, on=(MailingList.structure == Structure.id))
               .where(~staff.within_scopes(actor, Structure.path) & MailingList.deleted_at.is_null()))
    owners = MailingList.select(MailingList.owner).where(MailingList.id.in_(outside) & MailingList.owner.is_null(False))
    moderators = ListModerator.select(ListModerator.member).where(
        ListModerator.mailing_list.in_(outside) & ListModerator.member.is_null(False))
    found = {member_id for (member_id,) in owners.tuples().iterator()}
    found |= {member_id for (member_id,) in moderators.tuples().iterator()}
    return dict.fromkeys(found, "protected_list")
