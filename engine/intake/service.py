"""What the intake does with an accepted recipient's copy of a message; the reply it then gives.

Runs in the engine's database thread. A post is stored (committed) before the reply is returned, so
a 250 means the message survives a crash; notices (moderation requests, sender notices) are sent
only after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from email import policy as email_policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser

from engine import clock
from engine.bounces.models import Bounce
from engine.config import Settings
from engine.db import database
from engine.intake.routes import Companion, Route
from engine.lists.models import MailingList
from engine.outbound import mail
from engine.outbound.models import Delivery
from engine.posting import authentication, confirmation, moderation
from engine.posting.models import Message, MessageState
from engine.posting.policy import Action, Post, decide, is_auto_submitted

OK = "250 2.0.0 Message accepted for delivery"


@dataclass(frozen=True)
class Outcome:
    reply: str
    message_id: int | None = None  # a stored post
    accepted: bool = False  # a post ready to expand now


def _headers(data: bytes) -> EmailMessage:
    return BytesHeaderParser(policy=email_policy.default).parsebytes(data)


def receive(settings: Settings, route: Route, envelope_sender: str, data: bytes,
            client: authentication.Client | None = None) -> Outcome:
    """Handle one recipient of one SMTP/LMTP transaction; returns the reply for it.
    ``client`` is the SMTP client (address, HELO), for SPF when the engine verifies senders itself."""
    handlers = {
        Companion.POST: _post,
        Companion.BOUNCES: _bounce,
        Companion.UNSUBSCRIBE: _unsubscribe,
        Companion.REQUEST: _request,
        Companion.OWNER: _owner,
    }
    if route.companion == Companion.POST:
        return _post(settings, route, envelope_sender, data, client)
    return handlers[route.companion](settings, route, envelope_sender, data)


def _post(settings: Settings, route: Route, envelope_sender: str, data: bytes,
          client: authentication.Client | None = None) -> Outcome:
    mailing_list = MailingList.get_by_id(route.list_id)
    headers = _headers(data)
    checked = authentication.check(settings.inbound_authentication, settings.authserv_id or mailing_list.domain.name,
                                   data, headers, envelope_sender, client)
    post = Post(mailing_list, envelope_sender, headers, authentication=checked)
    decision = decide(post)
    if decision.action == Action.REFUSE:
        return Outcome(decision.reply)
    state = {Action.ACCEPT: MessageState.ACCEPTED, Action.HOLD: MessageState.HELD, Action.CONFIRM: MessageState.HELD,
             Action.DISCARD: MessageState.DISCARDED}[decision.action]
    with database.atomic():
        message = Message.create(
            mailing_list=mailing_list, message_id=str(headers.get("Message-ID", ""))[:255] or None,
            envelope_sender=envelope_sender[:254], author=post.author[:254],
            subject=" ".join(str(headers.get("Subject", "")).split())[:255], content=data, size=len(data), state=state,
            reason=decision.reply if decision.action != Action.ACCEPT else "", received_at=clock.now(),
            authentication=checked.header_value() if checked is not None else "")
    if decision.action == Action.CONFIRM:
        confirmation.request(settings, message)
    elif state == MessageState.HELD:
        moderation.request(settings, message)
    return Outcome(OK, message.id, accepted=state == MessageState.ACCEPTED)


def _bounce(settings: Settings, route: Route, envelope_sender: str, data: bytes) -> Outcome:
    """A bounce for one delivery: remember it against the address (scoring comes with bounce work)."""
    delivery = Delivery.get_or_none(Delivery.id == route.delivery_id)
    if delivery is not None:
        key = delivery.address.lower()
        now = clock.now()
        with database.atomic():
            bounce, _ = Bounce.get_or_create(email_key=key)  # type: ignore[no-untyped-call]  # untyped in peewee's stub
            bounce.score += 1.0
            bounce.bounce_count += 1
            bounce.last_bounce_at = now
            bounce.last_reply = str(_headers(data).get("Subject", ""))[:500]
            bounce.save()
    return Outcome(OK)


def _unsubscribe(settings: Settings, route: Route, envelope_sender: str, data: bytes) -> Outcome:
    """The mailto of List-Unsubscribe: the subject carries the personal token; else the sender leaves."""
    from engine.lists import mailto_unsubscribe

    mailto_unsubscribe.handle(settings, route.list_id, envelope_sender, _headers(data))
    return Outcome(OK)


def _request(settings: Settings, route: Route, envelope_sender: str, data: bytes) -> Outcome:
    headers = _headers(data)
    if envelope_sender and not is_auto_submitted(headers):
        mailing_list = MailingList.get_by_id(route.list_id)
        moderation.send_help(settings, mailing_list, envelope_sender)
    return Outcome(OK)


def _owner(settings: Settings, route: Route, envelope_sender: str, data: bytes) -> Outcome:
    """Mail for the list's owner: forwarded as it is to the owner, the moderators or the administrator."""
    mailing_list = MailingList.get_by_id(route.list_id)
    for address in moderation.moderator_addresses(settings, mailing_list):
        mail.send_raw(settings, data, sender=f"{mailing_list.local_part}-bounces@{mailing_list.domain.name}",
                      recipients=[address])
    return Outcome(OK)
