"""A message that cannot be rendered: failed once, with its reason, and its author and list owner told.

Rendering is deterministic (the stored post and the list's settings), so a post that raises while
it is prepared would raise again at every retry: the first worker that meets it marks it
``failed`` (a conditional update, so that one worker among several tells people, once), fails its
open copies, and mails the author and the list's owner. Other posts are never affected.
"""

from __future__ import annotations

import logging
from email import policy as email_policy
from email.parser import BytesHeaderParser

from engine import clock, notices
from engine.config import Settings
from engine.db import database, sql_datetime
from engine.outbound import outbox
from engine.outbound.models import DeliveryState
from engine.posting.models import Message, MessageState
from engine.posting.policy import looks_automated

log = logging.getLogger("palanquee.delivery")

# A delivery's reply when its message cannot be rendered (RFC 3463 §3.7: X.6.0, other media error).
UNRENDERABLE = "554 5.6.0 The message cannot be rendered"


def describe(error: BaseException) -> str:
    """One line naming what went wrong while preparing a message (shown to staff and the author)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return f"{UNRENDERABLE}: {type(error).__name__}: {text}"[:500]


def fail_message(settings: Settings, message_id: int, reason: str, keep: list[int]) -> bool:
    """Mark a ``sending`` message failed with ``reason`` and fail its open copies but those in ``keep``
    (the caller's claims, recorded with their attempt). Returns True for the worker that did it, which
    then tells the author and the owner; False when the message was no longer ``sending``."""
    now = clock.now()
    with database.atomic():
        won = (Message.update(state=MessageState.FAILED, reason=reason, finished_at=now)
               .where((Message.id == message_id) & (Message.state == MessageState.SENDING)).execute())
        if not won:
            return False
        param = database.obj.param
        exclude = f" AND id NOT IN ({', '.join([param] * len(keep))})" if keep else ""
        database.obj.execute_sql(
            f"UPDATE delivery SET state = {param}, last_reply = {param}, updated_at = {param}, "
            f"claimed_until = NULL, claimed_by = NULL WHERE message_id = {param} "
            f"AND state IN ({param}, {param}){exclude}",
            (DeliveryState.FAILED, reason, sql_datetime(now), message_id, DeliveryState.QUEUED,
             DeliveryState.DEFERRED, *keep))
        # The message's counters (engine/posting/queries.py): the copies failed here counted, ``keep`` by record().
        Message.update(**outbox.exact_counters()).where(Message.id == message_id).execute()
    log.error("message %s failed: %s", message_id, reason, extra={"message_id": message_id})
    _tell(settings, message_id, reason)
    return True


def _tell(settings: Settings, message_id: int, reason: str) -> None:
    """Mail the author (unless an automaton, no return path, or over the author limits) and the owner; never
    raise. Both come from the list's -bounces address, which the intake takes back without answering, and
    carry ``Auto-Submitted: auto-generated`` (RFC 3834 §5): a bounce or an auto-reply to them loops nowhere."""
    message = Message.get_by_id(message_id)
    mailing_list = message.mailing_list
    owner = mailing_list.owner
    recipients = [("message_failed", message.author)] if _may_tell_author(message) else []
    # The owner last: once the owner's notice is out, the author's has gone or never will (the tests wait on it).
    recipients.append(("message_failed_owner", (owner.email if owner is not None else None) or settings.admin_email))
    for template, address in recipients:
        if not address:
            continue
        try:
            notices.send_notice(settings, template, address, mailing_list=mailing_list, message=message,
                                reason=reason, sender=notices.list_sender(mailing_list))
        except Exception:  # the failure is recorded on the message, which staff see; a lost notice is logged
            log.exception("could not tell %s that message %s failed", address, message_id)


def _may_tell_author(message: Message) -> bool:
    """RFC 3834 §2: no notice to a null return path, Auto-Submitted or list mail, or an automaton's address;
    then at most the author limits (``notices.within_author_limits``), which counts this one."""
    if not message.envelope_sender or not message.author:
        return False
    try:
        headers = BytesHeaderParser(policy=email_policy.default).parsebytes(bytes(message.content))
        if looks_automated(message.envelope_sender, headers):
            return False
        return notices.within_author_limits(message.author, message.mailing_list_id)
    except Exception:
        return False
