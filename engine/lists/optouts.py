"""Leaving and rejoining a list. An opt-out wins over every criterion and subscription until removed."""

from __future__ import annotations

from engine import audit, clock
from engine.directory.models import Member
from engine.lists.models import MailingList, OptOut


def _existing(mailing_list: MailingList, member: Member | None, email_key: str | None) -> OptOut | None:
    if member is not None:
        return OptOut.get_or_none((OptOut.mailing_list == mailing_list) & (OptOut.member == member))
    return OptOut.get_or_none((OptOut.mailing_list == mailing_list) & (OptOut.email_key == email_key))


def leave(mailing_list: MailingList, *, member: Member | None = None, email_key: str | None = None,
          source: str, actor: Member | None = None, ip: str | None = None) -> OptOut:
    """Record that ``member`` (or the bare address ``email_key``) left the list. Idempotent.

    ``source`` says how: footer, one-click, mailto, espace, staff, bounce.
    """
    if (member is None) == (email_key is None):
        raise ValueError("leave() takes a member or an address key, not both")
    key = email_key.strip().lower() if email_key else None
    found = _existing(mailing_list, member, key)
    if found is not None:
        return found
    opt_out = OptOut.create(mailing_list=mailing_list, member=member, email_key=key,
                            created_at=clock.now(), source=source)
    audit.record("list.left", mailing_list, actor=actor or member, actor_label="" if (actor or member) else source,
                 structure_id=mailing_list.structure_id, ip=ip, source=source,
                 member_id=member.id if member else None, address=key)
    return opt_out


def rejoin(mailing_list: MailingList, *, member: Member | None = None, email_key: str | None = None,
           actor: Member | None = None, ip: str | None = None) -> bool:
    """Remove the opt-out; returns whether there was one. Idempotent."""
    if (member is None) == (email_key is None):
        raise ValueError("rejoin() takes a member or an address key, not both")
    found = _existing(mailing_list, member, email_key.strip().lower() if email_key else None)
    if found is None:
        return False
    found.delete_instance()
    audit.record("list.rejoined", mailing_list, actor=actor or member, structure_id=mailing_list.structure_id,
                 ip=ip, member_id=member.id if member else None, address=email_key)
    return True
