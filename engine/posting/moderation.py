"""Moderation: held posts, the request mailed to moderators with signed links, approve and reject.

A held post waits in the database (state ``held``). Moderators receive a request whose link opens
a page (GET shows the post, a POST decides: mail scanners follow links). Approving makes the post
``accepted``, which the engine expands at once; rejecting tells the sender, unless the sender is an
automaton (RFC 3834) or has already had ten notices today.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email import policy as email_policy
from email.parser import BytesHeaderParser
from typing import Any

from engine import audit, clock, notices, tokens
from engine.config import Settings
from engine.directory.models import Member, StaffScope
from engine.lists.models import ListModerator, MailingList
from engine.posting.models import Message, MessageState
from engine.posting.policy import looks_automated
from engine.posting.reasons import reason_words

HELP_REPLIES_PER_SENDER_PER_DAY = 3
HELP_REPLIES_PER_LIST_PER_DAY = 100
log = logging.getLogger("palanquee.moderation")


class NotHeld(Exception):
    """The post was already decided (by another moderator, or it was never held)."""


def moderation_url(settings: Settings, message: Message, moderator: str = "") -> str:
    """The link mailed to one moderator: it names the post and the address it was sent to, so that a decision
    taken through it is logged as that moderator's, not the system's."""
    payload: int | list[int | str] = [message.id, moderator] if moderator else message.id
    token = tokens.dumps(settings, tokens.Purpose.MODERATION, payload)
    return f"{settings.base_url}/moderation/{token}"


@dataclass(frozen=True)
class ModerationLink:
    message: Message
    moderator: str  # the address the link was mailed to ("" for a link that names none)


def moderation_link(settings: Settings, token: str) -> ModerationLink:
    """The held message and moderator a link names (``tokens.BadToken``/``ExpiredToken`` otherwise)."""
    payload = tokens.loads(settings, tokens.Purpose.MODERATION, token, settings.moderation_max_age)
    if isinstance(payload, list) and len(payload) == 2 and isinstance(payload[0], int) \
            and isinstance(payload[1], str):
        message_id, moderator = payload[0], payload[1]
    elif isinstance(payload, int):
        message_id, moderator = payload, ""
    else:
        raise tokens.BadToken("malformed moderation token")
    message = Message.get_or_none(Message.id == message_id)
    if message is None:
        raise tokens.BadToken("no such message")
    return ModerationLink(message, moderator)


def load_moderation_token(settings: Settings, token: str) -> Message:
    """The held message a moderation link names (``tokens.BadToken``/``ExpiredToken`` otherwise)."""
    return moderation_link(settings, token).message


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
    """Whether the post's author may be mailed about it now: a person, not flooded (a forged From names a
    victim); counts the notice when it may go (``notices.within_author_limits``)."""
    if not message.envelope_sender or not message.author:
        return False
    headers = BytesHeaderParser(policy=email_policy.default).parsebytes(bytes(message.content))
    if looks_automated(message.envelope_sender, headers):  # RFC 3834 §2
        return False
    return notices.within_author_limits(message.author, message.mailing_list_id)


def request(settings: Settings, message: Message) -> None:
    """Mail the moderators a request with the link, and tell the sender the post waits.

    Runs after the post is committed: nothing here may fail the intake's reply (a 4xx would make the
    client send the post again and again). Each notice is built from what can always be built and
    sent on its own; one that cannot be sent is logged, the others still go.
    """
    mailing_list = message.mailing_list
    audit.record("message.held", mailing_list, structure_id=mailing_list.structure_id,
                 message_id=message.id, author=message.author, reason=message.reason)
    sender = notices.list_sender(mailing_list)
    for address in moderator_addresses(settings, mailing_list):
        language = _language_of(settings, address)
        _notify(settings, "moderation_request", address, language=language, mailing_list=mailing_list,
                message=message, url=moderation_url(settings, message, address),
                reason=reason_words(message.reason, language), sender=sender)
    if may_notify_sender(message):
        _notify(settings, "moderation_pending", message.author, mailing_list=mailing_list, message=message,
                sender=sender)


def _notify(settings: Settings, template: str, to: str, **context: Any) -> None:
    try:
        notices.send_notice(settings, template, to, **context)
    except Exception:  # noqa: BLE001 - logged; the post is stored and shown to staff either way
        log.exception("could not send the %s notice to %r", template, to)


def _language_of(settings: Settings, address: str) -> str:
    """The language of the one member using ``address``, else the default one."""
    users = list(Member.using_address(address).limit(2))
    return (users[0].language if len(users) == 1 else None) or settings.default_language


def _deciding(actor: Member | None, via: str) -> tuple[Member | None, str]:
    """Who decides: the logged-in staff member; else the member the link was mailed to (or that address)."""
    if actor is not None or not via:
        return actor, ""
    users = list(Member.using_address(via).limit(2))
    return (users[0], "") if len(users) == 1 else (None, via[:64])


def _decide(message: Message, state: str, actor: Member | None) -> Message:
    updated = (Message.update(state=state, decided_at=clock.now(), decided_by=actor)
               .where((Message.id == message.id) & (Message.state == MessageState.HELD)).execute())
    if not updated:
        raise NotHeld(f"message {message.id} is not held")
    return Message.get_by_id(message.id)


def approve(settings: Settings, message: Message, actor: Member | None, *, via: str = "") -> Message:
    """Release a held post to the list (the engine expands accepted posts). ``via``: the moderator's address a
    moderation link was mailed to, when nobody is logged in."""
    actor, label = _deciding(actor, via)
    message = _decide(message, MessageState.ACCEPTED, actor)
    audit.record("message.approved", message.mailing_list, actor=actor, actor_label=label,
                 structure_id=message.mailing_list.structure_id, message_id=message.id,
                 **({"moderator": via} if via else {}))
    return message


def reject(settings: Settings, message: Message, actor: Member | None, reason: str = "", *,
           via: str = "") -> Message:
    """Refuse a held post and tell its sender (never an automaton)."""
    actor, label = _deciding(actor, via)
    message = _decide(message, MessageState.REJECTED, actor)
    if reason:
        Message.update(reason=reason[:2000]).where(Message.id == message.id).execute()
    audit.record("message.rejected", message.mailing_list, actor=actor, actor_label=label,
                 structure_id=message.mailing_list.structure_id, message_id=message.id,
                 **({"moderator": via} if via else {}))
    if may_notify_sender(message):  # the decision is recorded: a notice that cannot go is only logged
        _notify(settings, "moderation_rejected", message.author, mailing_list=message.mailing_list,
                message=message, reason=reason, sender=notices.list_sender(message.mailing_list))
    return message


def send_help(settings: Settings, mailing_list: MailingList, to: str) -> bool:
    """Answer a mail to ``LIST-request@`` with the help text, within the daily limits (per sender, and
    per list so that forged senders cannot turn the list into a mail cannon); whether it was sent."""
    limits = {f"list-request:{to.lower()}": HELP_REPLIES_PER_SENDER_PER_DAY,
              f"list-request-list:{mailing_list.id}": HELP_REPLIES_PER_LIST_PER_DAY}
    if not notices.within_daily_limit(limits):
        return False
    notices.send_notice(settings, "list_help", to, mailing_list=mailing_list,
                        headers={"Auto-Submitted": "auto-replied"}, sender=notices.list_sender(mailing_list))
    return True
