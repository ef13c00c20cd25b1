"""Moderation: held posts, the request mailed to moderators with signed links, approve and reject.

A held post waits in the database (state ``held``). Moderators receive a request whose link opens
a page (GET shows the post, a POST decides: mail scanners follow links). Approving makes the post
``accepted``, which the engine expands at once; rejecting tells the sender, unless the sender is an
automaton (RFC 3834) or has already had ten notices today.
"""

from __future__ import annotations

from datetime import timedelta
from email import policy as email_policy
from email.parser import BytesHeaderParser

from engine import audit, clock, notices, tokens
from engine.config import Settings
from engine.directory.models import Member, StaffScope
from engine.lists.models import ListModerator, MailingList
from engine.posting.models import Message, MessageState
from engine.posting.policy import is_auto_submitted

NOTICES_PER_SENDER_PER_DAY = 10


class NotHeld(Exception):
    """The post was already decided (by another moderator, or it was never held)."""


def moderation_url(settings: Settings, message: Message) -> str:
    token = tokens.dumps(settings, tokens.Purpose.MODERATION, message.id)
    return f"{settings.base_url}/moderation/{token}"


def load_moderation_token(settings: Settings, token: str) -> Message:
    """The held message a moderation link names (``tokens.BadToken``/``ExpiredToken`` otherwise)."""
    message_id = tokens.loads(settings, tokens.Purpose.MODERATION, token, settings.moderation_max_age)
    message = Message.get_or_none(Message.id == message_id) if isinstance(message_id, int) else None
    if message is None:
        raise tokens.BadToken("no such message")
    return message


def moderator_addresses(settings: Settings, mailing_list: MailingList) -> list[str]:
    """Moderators' addresses, else the owner's, else the administrator's, else those of the staff
    nearest above the list's structure (a held post must reach someone); distinct, in order."""
    found: list[str] = []
    for moderator in ListModerator.select().where(ListModerator.mailing_list == mailing_list):
        address = moderator.email or (moderator.member.email if moderator.member is not None else None)
        if address:
            found.append(address)
    owner = mailing_list.owner
    if not found and owner is not None and owner.email:
        found.append(owner.email)
    if not found and settings.admin_email:
        found.append(settings.admin_email)
    if not found:
        found = _nearest_staff(mailing_list)
    return list(dict.fromkeys(found))


def _nearest_staff(mailing_list: MailingList) -> list[str]:
    for structure in reversed(list(mailing_list.structure.ancestors())):
        staff = (Member.select(Member.email).join(StaffScope, on=(StaffScope.member == Member.id))
                 .where((StaffScope.structure == structure) & Member.email.is_null(False)))
        addresses = [member.email for member in staff if member.email]
        if addresses:
            return addresses
    return []


def may_notify_sender(message: Message) -> bool:
    """Whether the post's author may be mailed about it: a person, not flooded (a forged From names a victim)."""
    if not message.envelope_sender or not message.author:
        return False
    headers = BytesHeaderParser(policy=email_policy.default).parsebytes(bytes(message.content))
    if is_auto_submitted(headers):
        return False
    since = clock.now() - timedelta(days=1)
    recent = Message.select().where((Message.author == message.author) & (Message.received_at >= since)
                                    & (Message.state.in_([MessageState.HELD, MessageState.REJECTED]))).count()
    return recent <= NOTICES_PER_SENDER_PER_DAY


def request(settings: Settings, message: Message) -> None:
    """Mail the moderators a request with the link, and tell the sender the post waits."""
    mailing_list = message.mailing_list
    url = moderation_url(settings, message)
    for address in moderator_addresses(settings, mailing_list):
        notices.send_notice(settings, "moderation_request", address, mailing_list=mailing_list,
                            message=message, url=url)
    if may_notify_sender(message):
        notices.send_notice(settings, "moderation_pending", message.author, mailing_list=mailing_list,
                            message=message)
    audit.record("message.held", mailing_list, structure_id=mailing_list.structure_id,
                 message_id=message.id, author=message.author, reason=message.reason)


def _decide(message: Message, state: str, actor: Member | None) -> Message:
    updated = (Message.update(state=state, decided_at=clock.now(), decided_by=actor)
               .where((Message.id == message.id) & (Message.state == MessageState.HELD)).execute())
    if not updated:
        raise NotHeld(f"message {message.id} is not held")
    return Message.get_by_id(message.id)


def approve(settings: Settings, message: Message, actor: Member | None) -> Message:
    """Release a held post to the list (the engine expands accepted posts)."""
    message = _decide(message, MessageState.ACCEPTED, actor)
    audit.record("message.approved", message.mailing_list, actor=actor,
                 structure_id=message.mailing_list.structure_id, message_id=message.id)
    return message


def reject(settings: Settings, message: Message, actor: Member | None, reason: str = "") -> Message:
    """Refuse a held post and tell its sender (never an automaton)."""
    message = _decide(message, MessageState.REJECTED, actor)
    if reason:
        Message.update(reason=reason[:2000]).where(Message.id == message.id).execute()
    audit.record("message.rejected", message.mailing_list, actor=actor,
                 structure_id=message.mailing_list.structure_id, message_id=message.id)
    if may_notify_sender(message):
        notices.send_notice(settings, "moderation_rejected", message.author, mailing_list=message.mailing_list,
                            message=message, reason=reason)
    return message


def send_help(settings: Settings, mailing_list: MailingList, to: str) -> None:
    notices.send_notice(settings, "list_help", to, mailing_list=mailing_list,
                        headers={"Auto-Submitted": "auto-replied"})
