"""Leaving and rejoining a list. An opt-out wins over every criterion and subscription until removed.

Three doors lead here: the public unsubscribe link (``unsubscribe_with_token``, source ``footer`` for the
confirm button, ``one-click`` for the RFC 8058 POST), Mon espace (``leave_from_espace``, source ``espace``)
and staff. A member's opt-out names the member, so it survives address changes, role changes and re-imports.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine import audit, clock, tokens
from engine.config import Settings
from engine.directory.models import Member
from engine.lists import counts
from engine.lists.member_lists import lists_of_member
from engine.lists.models import MailingList, OptOut, Subscription


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
    counts.mark_changed(mailing_list.id)
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
    counts.mark_changed(mailing_list.id)
    audit.record("list.rejoined", mailing_list, actor=actor or member, structure_id=mailing_list.structure_id,
                 ip=ip, member_id=member.id if member else None, address=email_key)
    return True


# --- a member leaves or rejoins (Mon espace, or the member-naming unsubscribe link) ---

def _subscribed_by_address_only(mailing_list: MailingList, member: Member) -> bool:
    """The member's address is typed on the list without being linked to any member (a family address)."""
    return bool(member.email_key) and Subscription.select().where(
        (Subscription.mailing_list == mailing_list) & (Subscription.email_key == member.email_key)
        & Subscription.member.is_null()).exists()


def leave_as_member(mailing_list: MailingList, member: Member, *, source: str, ip: str | None = None,
                    actor: Member | None = None) -> OptOut:
    """The member leaves; when their address is also typed on the list as a bare address, that stops too."""
    opt_out = leave(mailing_list, member=member, source=source, ip=ip, actor=actor)
    if _subscribed_by_address_only(mailing_list, member):
        leave(mailing_list, email_key=member.email_key, source=source, ip=ip, actor=actor or member)
    return opt_out


def rejoin_as_member(mailing_list: MailingList, member: Member, *, ip: str | None = None) -> bool:
    """Remove the member's opt-out and one recorded for their current address; whether there was one."""
    removed = rejoin(mailing_list, member=member, ip=ip)
    if member.email_key:
        removed = rejoin(mailing_list, email_key=member.email_key, actor=member, ip=ip) or removed
    return removed


class NotOnList(LookupError):
    """The list does not exist, or the member is neither on it nor opted out of it."""


def _member_list(member: Member, list_id: int) -> tuple[MailingList, bool, bool]:
    """(list, the member is on it by some reason, the member has left it); NotOnList otherwise."""
    found = lists_of_member(member, list_id=list_id)
    if not found:  # absent, deleted, or neither on it nor opted out of it
        raise NotOnList(list_id)
    return MailingList.get_by_id(list_id), bool(found[0].reasons), found[0].opt_out is not None


def leave_from_espace(member: Member, list_id: int, *, ip: str | None = None) -> MailingList:
    """Mon espace's "leave" button: only for a list the member is on."""
    mailing_list, on_list, _left = _member_list(member, list_id)
    if not on_list:
        raise NotOnList(list_id)
    leave_as_member(mailing_list, member, source="espace", ip=ip)
    return mailing_list


def rejoin_from_espace(member: Member, list_id: int, *, ip: str | None = None) -> MailingList:
    """Mon espace's "rejoin" button: only for a list the member has left."""
    mailing_list, _on_list, left = _member_list(member, list_id)
    if not left:
        raise NotOnList(list_id)
    rejoin_as_member(mailing_list, member, ip=ip)
    return mailing_list


# --- the public unsubscribe link (engine/tokens.py makes it) ---

class UnknownList(LookupError):
    """A genuine token naming a list that no longer exists at all."""


@dataclass(frozen=True)
class UnsubscribeOutcome:
    mailing_list: MailingList
    members: tuple[Member, ...]  # the members the token names that still exist
    email_key: str | None  # or the bare address
    already_out: bool  # every one of them had already left (nothing new recorded)


def _target(settings: Settings, token: str) -> tuple[MailingList, tuple[Member, ...], str | None]:
    target = tokens.load_unsubscribe_token(settings, token)  # BadToken when forged or foreign
    mailing_list = MailingList.get_or_none(MailingList.id == target.list_id)
    if mailing_list is None:
        raise UnknownList(target.list_id)
    members = tuple(Member.select().where(Member.id.in_(list(target.member_ids))).order_by(Member.id)) \
        if target.member_ids else ()
    return mailing_list, members, target.email_key


def _all_out(mailing_list: MailingList, members: tuple[Member, ...], email_key: str | None) -> bool:
    if email_key is not None:
        return _existing(mailing_list, None, email_key) is not None
    return all(_existing(mailing_list, m, None) is not None for m in members)


def describe_unsubscribe(settings: Settings, token: str) -> UnsubscribeOutcome:
    """What a link would do, for the confirmation page: changes nothing (mail scanners follow links)."""
    mailing_list, members, email_key = _target(settings, token)
    return UnsubscribeOutcome(mailing_list, members, email_key, _all_out(mailing_list, members, email_key))


def unsubscribe_with_token(settings: Settings, token: str, source: str, *, ip: str | None = None
                           ) -> UnsubscribeOutcome:
    """Unsubscribe everyone the token names (a family that shared one copy leaves together). Idempotent.

    ``source``: ``footer`` (the confirm button), ``one-click`` (RFC 8058 POST), ``mailto``.
    """
    mailing_list, members, email_key = _target(settings, token)
    already = _all_out(mailing_list, members, email_key)
    if email_key is not None:
        leave(mailing_list, email_key=email_key, source=source, ip=ip)
    for member in members:
        leave_as_member(mailing_list, member, source=source, ip=ip)
    return UnsubscribeOutcome(mailing_list, members, email_key, already)


def rejoin_with_token(settings: Settings, token: str, *, ip: str | None = None) -> UnsubscribeOutcome:
    """Undo an unsubscription from the page that confirmed it (the same link, so the same people)."""
    mailing_list, members, email_key = _target(settings, token)
    if email_key is not None:
        rejoin(mailing_list, email_key=email_key, ip=ip)
    for member in members:
        rejoin_as_member(mailing_list, member, ip=ip)
    return UnsubscribeOutcome(mailing_list, members, email_key, False)
