"""Address changes imposed by staff or by the member import (issue 11, finding 1).

Only an actor whose ``staff.Authority`` allows it may change a member's address (the caller checks, with
``Authority.may_change_credentials``, before calling ``record``). The change is applied at once and recorded
as an ``EmailChange`` (source ``staff`` or ``import``); the old address is told, with the same "this was not
me" link as a change made in Mon espace. Used there, the link restores the old address and signs the member
out everywhere (``email_change.cancel_with_token``).
"""

from __future__ import annotations

from datetime import datetime

from engine import audit, clock, notices
from engine.config import Settings
from engine.db import database
from engine.directory import staff
from engine.directory.email_change import SameAddress, cancel_url, normalise_address
from engine.directory.models import EmailChange, Member, email_key
from engine.directory.wording import duration_words

SOURCES = ("staff", "import")


def record(member: Member, new: str | None, *, source: str, actor: Member | None = None, ip: str | None = None,
           now: datetime | None = None) -> EmailChange:
    """Record that ``member``'s address becomes ``new`` (None: removed) now; the caller sets and saves it.

    Returns the change, whose old address the caller tells with ``notify`` once its transaction is committed.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}")
    now = now or clock.now()
    change = EmailChange.create(member=member, old_email=member.email, new_email=new or "", requested_at=now,
                                verified_at=now, effective_at=now, applied_at=now, requested_ip=ip, source=source)
    audit.record("email_change.imposed", change, actor=actor, actor_label="" if actor else source, ip=ip,
                 how=source, old=member.email, new=new or "")
    return change


def notify(settings: Settings, change: EmailChange) -> bool:
    """Tell the old address of an imposed change, with the link that restores it; False when there was none."""
    if not change.old_email:
        return False
    member = Member.get_by_id(change.member_id)
    language = member.language or settings.default_language
    validity = duration_words(settings.email_change_max_age + settings.propagation_delay, language)
    notices.send_notice(settings, "email_imposed_notice", change.old_email, language=language, member=member,
                        new_email=change.new_email, source=change.source, link=cancel_url(settings, change),
                        validity=validity)
    return True


def impose_address(settings: Settings, actor: Member | None, member: Member, raw_address: str | None, *,
                   rights_beyond: staff.RightsBeyond, ip: str | None = None) -> EmailChange:
    """A staff edit of one member's address (every staff path that writes an address goes through here or
    through the import): ``staff.NotAllowed`` unless the actor's authority allows it (``rights_beyond``: the
    lists' part of it, ``engine.lists.authority.rights_beyond``), then applied at once and the old address
    told. ``raw_address`` empty or None removes the address."""
    staff.require_credentials_change(actor, Member.get_by_id(member.id), rights_beyond)
    new = normalise_address(raw_address) if raw_address and raw_address.strip() else None
    if email_key(new) == member.email_key:
        raise SameAddress(new or "")
    with database.atomic():
        change = record(member, new, source="staff", actor=actor, ip=ip)
        member.set_email(new)
        member.save(only=[Member.email, Member.email_key])
    notify(settings, change)
    return change
