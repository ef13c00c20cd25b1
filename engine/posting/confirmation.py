"""Confirmation by its author of a post whose From was not authenticated (a list's ``sender_check=confirm``).

The post waits (held); a signed, timed link goes to the From address, which only its real owner reads.
Opening the link shows the post and a button (link scanners fetch URLs: a GET decides nothing); the
button releases it. A forger never sees the link; the real owner who did not write the post ignores it.
The link names the message and the address it was mailed to, so it cannot confirm any other post.
"""

from __future__ import annotations

from engine import audit, notices, tokens
from engine.config import Settings
from engine.posting import moderation
from engine.posting.models import Message, MessageState


def confirmation_url(settings: Settings, message: Message) -> str:
    token = tokens.dumps(settings, tokens.Purpose.POST_CONFIRM, [message.id, message.author.lower()])
    return f"{settings.base_url}/confirmer/{token}"


def request(settings: Settings, message: Message) -> None:
    """Mail the confirmation link to the post's From address (at most a few a day per address)."""
    mailing_list = message.mailing_list
    if moderation.may_notify_sender(message):
        notices.send_notice(settings, "post_confirm", message.author, mailing_list=mailing_list, message=message,
                            url=confirmation_url(settings, message))
    audit.record("message.held", mailing_list, structure_id=mailing_list.structure_id, message_id=message.id,
                 author=message.author, reason=message.reason)


def load(settings: Settings, token: str) -> Message:
    """The post a confirmation link names (``tokens.BadToken``/``ExpiredToken`` otherwise)."""
    payload = tokens.loads(settings, tokens.Purpose.POST_CONFIRM, token, settings.moderation_max_age)
    if not (isinstance(payload, list) and len(payload) == 2 and isinstance(payload[0], int)):
        raise tokens.BadToken("malformed confirmation token")
    message = Message.get_or_none(Message.id == payload[0])
    if message is None or message.author.lower() != str(payload[1]):
        raise tokens.BadToken("no such message")
    return message


def confirm(settings: Settings, message: Message) -> Message:
    """Release the post to its list (``moderation.NotHeld`` when it was already decided)."""
    if message.state != MessageState.HELD:
        raise moderation.NotHeld(f"message {message.id} is not held")
    message = moderation.approve(settings, message, None)
    audit.record("message.confirmed", message.mailing_list, structure_id=message.mailing_list.structure_id,
                 message_id=message.id, author=message.author)
    return message
