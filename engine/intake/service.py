"""What the intake does with an accepted recipient's copy of a message; the reply it then gives.

Runs in the engine's database thread. A post is stored (committed) before the reply is returned, so
a 250 means the message survives a crash; notices (moderation requests, sender notices) are sent
only after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from email import policy as email_policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser

from engine import clock, notices, statements
from engine.bounces import complaints
from engine.bounces import service as bounces
from engine.config import Settings
from engine.db import write_transaction
from engine.intake import routes
from engine.intake.routes import Companion, Route
from engine.lists import mailto_unsubscribe
from engine.lists.models import Domain, MailingList
from engine.outbound import mail
from engine.posting import authentication, confirmation, moderation, render
from engine.posting.headers import one_line, readable, usable_address
from engine.posting.headers import text as header_text
from engine.posting.models import Message, MessageState
from engine.posting.policy import Action, Post, decide, looks_automated
from engine.posting.render import ListInfo

OK = "250 2.0.0 Message accepted for delivery"
log = logging.getLogger("palanquee.intake")


@dataclass(frozen=True)
class Outcome:
    reply: str
    message_id: int | None = None  # a stored post
    accepted: bool = False  # a post ready to expand now


def _headers(data: bytes) -> EmailMessage:
    return BytesHeaderParser(policy=email_policy.default).parsebytes(data)


def list_info(list_id: int) -> ListInfo:
    """What rendering needs of the list (for the intake's check, run outside the database thread)."""
    return render.list_info(_with_domain(list_id))


def rcpt(address: str, verp_key: bytes) -> tuple[Route, ListInfo | None]:
    """The route of an RCPT address (``routes.Refused`` when it is not ours) and, for a post, what the
    render check of its DATA needs of the list: read in the same query, so that a post costs the database
    thread one call at RCPT and one at DATA."""
    route, mailing_list = routes.find(address, verp_key)
    if route.companion != Companion.POST or mailing_list is None:
        return route, None
    return route, render.list_info(mailing_list)


_WITH_DOMAIN = statements.Select(
    lambda list_id: MailingList.select(MailingList, Domain).join(Domain).where(MailingList.id == list_id), MailingList.id)


def _with_domain(list_id: int) -> MailingList:
    """The list and its domain in one query (the rules and rendering read both), compiled once."""
    found = _WITH_DOMAIN(list_id)
    if not found:
        raise MailingList.DoesNotExist(f"no mailing list {list_id}")
    return found[0]


def receive(settings: Settings, route: Route, envelope_sender: str, data: bytes,
            client: authentication.Client | None = None, checked: object = authentication.UNCHECKED, *,
            render_problem: str | None = None) -> Outcome:
    """Handle one recipient of one SMTP/LMTP transaction; returns the reply for it.

    ``client`` is the SMTP client (address, HELO), for SPF when the engine verifies senders itself;
    ``checked`` the post's authentication (``authentication.check_post``), done by the intake outside the
    database thread (without it, it is done here from ``client``); ``render_problem`` the refusal of a
    post delivery could not render (``server`` checks it).
    """
    if route.companion == Companion.POST:
        if checked is authentication.UNCHECKED:
            checked = authentication.check_post(settings, data, envelope_sender, client, route.address.rpartition("@")[2])
        return _post(settings, route, envelope_sender, data, checked, render_problem)
    handlers = {
        Companion.BOUNCES: _bounce,
        Companion.UNSUBSCRIBE: _unsubscribe,
        Companion.REQUEST: _request,
        Companion.OWNER: _owner,
        Companion.FEEDBACK: _feedback,
    }
    return handlers[route.companion](settings, route, envelope_sender, data)


def _post(settings: Settings, route: Route, envelope_sender: str, data: bytes, checked: object,
          render_problem: str | None) -> Outcome:
    with write_transaction():
        outcome, after = store_post(settings, route, envelope_sender, data, checked, render_problem)
    if after is not None:
        after()
    return outcome


def store_post(settings: Settings, route: Route, envelope_sender: str, data: bytes, checked: object,
               render_problem: str | None) -> tuple[Outcome, Callable[[], None] | None]:
    """Decide on a post and store it inside the caller's transaction (the intake stores the posts waiting
    together in one: ``engine/dbthread.py``); returns its reply and what to do once committed (its
    notices), for the caller to run after the commit and before answering."""
    assert checked is None or isinstance(checked, authentication.Outcome)
    mailing_list = _with_domain(route.list_id)
    headers = _headers(data)
    post = Post(mailing_list, envelope_sender, headers, authentication=checked)
    decision = decide(post)
    if decision.action == Action.REFUSE:
        return Outcome(decision.reply), None
    if render_problem is not None:  # never stored: it could never be sent, nor shown to staff safely
        return Outcome(render_problem), None
    state = {Action.ACCEPT: MessageState.ACCEPTED, Action.HOLD: MessageState.HELD, Action.CONFIRM: MessageState.HELD,
             Action.DISCARD: MessageState.DISCARDED}[decision.action]
    values = dict(
        mailing_list=mailing_list, message_id=header_text(headers, "Message-ID")[:255] or None,
        envelope_sender=one_line(readable(envelope_sender))[:254], author=post.author[:254],
        subject=header_text(headers, "Subject")[:255], content=data, size=len(data), state=state,
        reason=decision.reply if decision.action != Action.ACCEPT else "", received_at=clock.now(),
        authentication=checked.header_value() if checked is not None else "")
    message_id = statements.insert(Message, **values)  # SQL text built once (Message.create builds it each time)
    outcome = Outcome(OK, message_id, accepted=state == MessageState.ACCEPTED)
    if state != MessageState.HELD:
        return outcome, None
    message = Message.get_by_id(message_id)  # held: the notices read it (rare, and not on the hot path)

    def notify() -> None:  # committed: the reply is 250 whatever happens now (a 4xx would make the client send it again)
        try:
            if decision.action == Action.CONFIRM:
                confirmation.request(settings, message)
            else:
                moderation.request(settings, message)
        except Exception:  # noqa: BLE001 - logged; the post is stored and shown to staff
            log.exception("notices for held message %s", message.id)
    return outcome, notify


def _bounce(settings: Settings, route: Route, envelope_sender: str, data: bytes) -> Outcome:
    """A returned message for one delivery: classified, kept and counted (``engine/bounces/service.py``).

    ``LIST-bounces@`` without a token is the envelope sender of the engine's notices and of mail
    forwarded to the owner: what comes back there names no delivery and is only logged.
    """
    if route.delivery_id is None:
        log.info("bounce of a notice of list %s from <%s>, %d bytes", route.list_id, envelope_sender, len(data))
        return Outcome(OK)
    bounces.receive(settings, route.list_id, route.delivery_id, data)
    return Outcome(OK)


def _feedback(settings: Settings, route: Route, envelope_sender: str, data: bytes) -> Outcome:
    """A complaint report at ``fbl@DOMAIN`` (``engine/bounces/complaints.py``): the complainer leaves the list
    its signed tokens name, if that list is of this domain; anything else is kept and sent to the administrator."""
    complaints.receive(settings, data, domain_id=route.domain_id)
    return Outcome(OK)


def _unsubscribe(settings: Settings, route: Route, envelope_sender: str, data: bytes) -> Outcome:
    """The mailto of List-Unsubscribe: a valid token in the subject unsubscribes; without one, the
    addresses concerned get a confirmation link (never an automaton: RFC 3834)."""
    headers = _headers(data)
    mailto_unsubscribe.handle(settings, route.list_id, envelope_sender, headers,
                              may_reply=not looks_automated(envelope_sender, headers))
    return Outcome(OK)


def _request(settings: Settings, route: Route, envelope_sender: str, data: bytes) -> Outcome:
    """Help for whoever writes to ``LIST-request@``: sent to the envelope sender (RFC 3834 §4), never
    to an automaton (§2), within daily limits per sender and per list."""
    headers = _headers(data)
    if looks_automated(envelope_sender, headers) or not usable_address(readable(envelope_sender)):
        return Outcome(OK)
    moderation.send_help(settings, MailingList.get_by_id(route.list_id), readable(envelope_sender))
    return Outcome(OK)


def _owner(settings: Settings, route: Route, envelope_sender: str, data: bytes) -> Outcome:
    """Mail for the list's owner: forwarded as it is to the owner, the moderators or the administrator."""
    mailing_list = MailingList.get_by_id(route.list_id)
    recipients = moderation.moderator_addresses(settings, mailing_list)
    if recipients:  # one transaction: a failure leaves nobody with a copy, so the sender's retry duplicates nothing
        mail.send_raw(settings, data, sender=notices.list_sender(mailing_list), recipients=recipients)
    return Outcome(OK)
