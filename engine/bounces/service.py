"""Where bounces come in: a returned message at ``LIST-bounces+TOKEN@`` (the intake) and a delivery that
failed for good (the outbound worker). Both classify, keep the report, and count it against the address.

A message whose token names no delivery of that list is ignored (a forged token is refused earlier, at
RCPT). An unrecognised message goes to the list's owner (the ``LIST-owner@`` recipients), never to the
list, at most ``OWNER_FORWARDS_PER_DAY`` a day per list. A complaint report (ARF) is no bounce: ``complaints``
takes the complainer off the list and scores nothing. An address disabled here is told to its members and to
the owner of the list whose copy bounced. Mail the engine writes here goes out with a null envelope sender
(RFC 5321 §4.5.5) or the list's ``-bounces`` address: nothing bounces back to a person.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formataddr

from engine import clock, notices
from engine.bounces import scoring
from engine.bounces.classify import Classification, Kind, classify, classify_reply
from engine.bounces.models import BounceEvent, tuples
from engine.config import Settings
from engine.db import write_transaction
from engine.directory.models import Member
from engine.lists.models import MailingList
from engine.outbound import mail
from engine.outbound.models import Delivery
from engine.posting.models import Message

log = logging.getLogger("palanquee.bounces")

RAW_KEPT = 64 * 1024
OWNER_FORWARDS_PER_DAY = 20
OWNER_NOTICES_PER_DAY = 20  # addresses disabled, told to one list's owners


def _delivery(delivery_id: int) -> tuple[str, int, int, float | None] | None:
    """(address, message id, list id, list threshold) of a delivery."""
    row = (Delivery.select(Delivery.address, Delivery.message, Message.mailing_list, MailingList.bounce_threshold)
           .join(Message, on=(Delivery.message == Message.id))
           .join(MailingList, on=(Message.mailing_list == MailingList.id))
           .where(Delivery.id == delivery_id).tuples().first())
    return row  # type: ignore[no-any-return]


def receive(settings: Settings, list_id: int, delivery_id: int | None, data: bytes) -> None:
    """A message at ``LIST-bounces+TOKEN@``: classified, kept and counted before the intake answers."""
    found = classify(data)
    if found.kind == Kind.COMPLAINT:  # a feedback-loop report: the complainer leaves, nothing is scored
        from engine.bounces import complaints  # it forwards what it cannot read through this module

        complaints.receive(settings, data, list_id=list_id, delivery_id=delivery_id)
        return
    target = _delivery(delivery_id) if delivery_id is not None else None
    if target is None or target[2] != list_id:
        log.info("bounce for delivery %s of list %s ignored: no such delivery of that list", delivery_id, list_id,
                 extra={"delivery_id": delivery_id, "list_id": list_id})
        return
    address, message_id, _, list_threshold = target
    key = address.lower()
    now = clock.now()
    with write_transaction():
        counted = scoring.count(settings, key, found, scoring.threshold_of(settings, list_threshold), now)
        event = BounceEvent.create(
            at=now, email_key=key, mailing_list=list_id, message=message_id, delivery_id=delivery_id, source="dsn",
            kind=found.kind, status=found.status[:16], final=found.final, weight=counted.weight,
            recipients=" ".join(found.recipients)[:1000], diagnostic=found.diagnostic, content=data[:RAW_KEPT])
    log.info("bounce %s %s for %s (score %.1f)", found.kind, found.status or "-", key, counted.score,
             extra={"delivery_id": delivery_id, "message_id": message_id, "list_id": list_id, "kind": found.kind,
                    "status": found.status, "score": counted.score})
    if counted.disabled_now:
        _tell_members(settings, key, found)
        _tell_owners(settings, list_id, address, found)
    if found.kind == Kind.UNKNOWN:
        forward_to_owner(settings, list_id, event, data)


def record_delivery_failures(settings: Settings, failures: Iterable[tuple[int, str]]) -> None:
    """Deliveries that failed for good, ``(delivery id, last SMTP reply)``: the outbound worker calls this
    once per batch. Hard and soft failures count against the address as a returned message would."""
    # Failed for good: final, even when the last reply was a 4xx (the retry lifetime ran out).
    scored = [(delivery_id, found) for delivery_id, reply in failures
              if scoring.weight_of(found := dataclasses.replace(classify_reply(reply), final=True)) > 0]
    if not scored:
        return
    query = (Delivery.select(Delivery.id, Delivery.address, Delivery.message, Message.mailing_list,
                             MailingList.bounce_threshold)
             .join(Message, on=(Delivery.message == Message.id))
             .join(MailingList, on=(Message.mailing_list == MailingList.id))
             .where(Delivery.id.in_([delivery_id for delivery_id, _ in scored])))
    targets = {row[0]: row[1:] for row in tuples(query)}
    now = clock.now()
    disabled: list[tuple[int, str, Classification]] = []
    with write_transaction():
        for delivery_id, found in scored:
            if delivery_id not in targets:
                continue
            address, message_id, list_id, list_threshold = targets[delivery_id]
            key = address.lower()
            counted = scoring.count(settings, key, found, scoring.threshold_of(settings, list_threshold), now)
            BounceEvent.create(at=now, email_key=key, mailing_list=list_id, message=message_id,
                               delivery_id=delivery_id, source="smtp", kind=found.kind, status=found.status[:16],
                               final=True, weight=counted.weight, diagnostic=found.diagnostic)
            if counted.disabled_now:
                disabled.append((list_id, address, found))
    for list_id, address, found in disabled:
        _tell_members(settings, address.lower(), found)
        _tell_owners(settings, list_id, address, found)


def send_notice(settings: Settings, template: str, to: str, language: str | None, **context: object) -> None:
    """A notice of this module, sent with a null envelope sender (RFC 5321 §4.5.5: no bounce comes back)."""
    subject, body = notices.render(template, language, settings=settings, **context)
    message = EmailMessage()
    message["From"] = formataddr(("Palanquée", notices.sender_address(settings)))
    message["To"] = notices.safe_header_value(to)
    message["Subject"] = subject
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834
    message.set_content(body)
    mail.send(settings, message, sender="")


def _tell_members(settings: Settings, key: str, found: Classification) -> None:
    """Mail the address that was just disabled (the failure may be passing): what happened, how to fix it."""
    members = list(Member.select().where(Member.email_key == key).order_by(Member.id))
    if not members:
        return  # a static subscriber who is no member: staff see it on the list's page
    try:
        send_notice(settings, "bounce_disabled", members[0].email or key,
                    members[0].language or settings.default_language, members=members,
                    reply=found.diagnostic[:500], espace_url=f"{settings.base_url}/espace/")
    except Exception:  # the address bounces, the relay may refuse: the warning in Mon espace remains
        log.exception("could not tell %s that its address is disabled", key)


def _tell_owners(settings: Settings, list_id: int, address: str, found: Classification) -> None:
    """Mail the ``LIST-owner@`` recipients of the list whose copy disabled ``address`` (DELIVERABILITY.md
    §7.3): who uses it, why, what the member sees. One notice per address and list a day (a disabling
    happens once, but it may come again after a clearing), at most ``OWNER_NOTICES_PER_DAY`` a day per
    list (the rest is on the list's statistics page); from the list's ``-bounces`` address (what comes
    back is only logged), ``Auto-Submitted`` (RFC 3834), never to the list itself. Never raises."""
    from engine.posting import moderation  # the LIST-owner@ recipients

    key = address.lower()
    try:
        mailing_list = MailingList.get_by_id(list_id)
        recipients = [to for to in moderation.moderator_addresses(settings, mailing_list)
                      if not _loops(mailing_list, to) and to.lower() != key]
        if not recipients or not notices.within_daily_limit({f"bounce-owner:{list_id}:{key}": 1,
                                                             f"bounce-owner-list:{list_id}": OWNER_NOTICES_PER_DAY}):
            return
        members = list(Member.select().where(Member.email_key == key).order_by(Member.id))
        for to in recipients:
            notices.send_notice(settings, "bounce_disabled_owner", to, sender=notices.list_sender(mailing_list),
                                mailing_list=mailing_list, address=address, members=members,
                                status=found.status, reply=found.diagnostic[:500],
                                stats_url=f"{settings.base_url}/admin/messages/listes/{list_id}")
    except Exception:  # the disabling is recorded and shown to staff; a lost notice is logged
        log.exception("could not tell the owners of list %s that %s is disabled", list_id, key)


def _loops(mailing_list: MailingList, address: str) -> bool:
    """Whether ``address`` is the list itself or one of its companions (``-owner``, ``-bounces``…)."""
    local, _, domain = address.lower().rpartition("@")
    own = mailing_list.local_part.lower()
    return domain == mailing_list.domain.name.lower() and (local == own or local.startswith(own + "-"))


def forward_to_owner(settings: Settings, list_id: int | None, event: BounceEvent, data: bytes, *,
                     template: str = "bounce_unknown", **context: object) -> None:
    """Send an unrecognised message on, attached, to the list's owner (the ``LIST-owner@`` recipients), or to
    the administrator when it names no list; at most ``OWNER_FORWARDS_PER_DAY`` a day per list (or for all
    that name none), counted on ``event``'s table."""
    from engine.posting import moderation  # the LIST-owner@ recipients

    since = clock.now() - timedelta(days=1)
    same_list = BounceEvent.mailing_list.is_null() if list_id is None else BounceEvent.mailing_list == list_id
    recent = BounceEvent.select().where(same_list & BounceEvent.forwarded & (BounceEvent.at >= since)).count()
    if recent >= OWNER_FORWARDS_PER_DAY:
        log.warning("unrecognised message for list %s kept, not forwarded (%s today)", list_id, recent)
        return
    mailing_list = MailingList.get_by_id(list_id) if list_id is not None else None
    try:
        recipients = (moderation.moderator_addresses(settings, mailing_list) if mailing_list is not None
                      else [settings.admin_email] if settings.admin_email else [])
        for address in recipients:
            _send_wrapped(settings, template, address, data, mailing_list=mailing_list, **context)
    except Exception:
        log.exception("could not forward an unrecognised message of list %s", list_id)
        return
    BounceEvent.update(forwarded=True).where(BounceEvent.id == event.id).execute()


def _send_wrapped(settings: Settings, template: str, to: str, data: bytes, **context: object) -> None:
    subject, body = notices.render(template, settings.default_language, settings=settings, **context)
    message = EmailMessage()
    message["From"] = formataddr(("Palanquée", notices.sender_address(settings)))
    message["To"] = notices.safe_header_value(to)
    message["Subject"] = subject
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body)
    message.add_attachment(data[:RAW_KEPT], maintype="application", subtype="octet-stream",
                           filename="message-retourne.eml")
    mail.send(settings, message, sender="")
