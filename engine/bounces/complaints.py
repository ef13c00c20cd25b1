"""Complaints: a feedback-loop report (ARF, RFC 5965) takes the complainer off the list at once, with the same
opt-out as the one-click unsubscribe of that list (../shared/DELIVERABILITY.md §2.3, §7.2).

Reports arrive at the copy's return path ``LIST-bounces+TOKEN@`` (``service.receive`` hands them here) or at the
domain's feedback address ``fbl@DOMAIN`` registered with the providers (the intake routes it here). The copy is
named only by what the engine signed into it: the unsubscribe token of its List-Unsubscribe, else its VERP
token (the report's ``Original-Mail-From`` or the copy's ``Return-Path``, or the envelope at
``-bounces+TOKEN@``); each must name a list of the address the report came to. An address written in the
report is never trusted. A report naming no copy of ours changes nothing: it is kept and goes to the list's
owner (the administrator at ``fbl@``), within the daily limit of unrecognised bounces. The member is not mailed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from engine import clock, tokens
from engine.bounces import arf, dsn, verp
from engine.bounces.classify import Kind
from engine.bounces.models import BounceEvent, tuples
from engine.bounces.service import RAW_KEPT, forward_to_owner
from engine.config import Settings
from engine.db import write_transaction
from engine.directory.models import Member
from engine.lists import optouts
from engine.lists.models import MailingList
from engine.outbound.models import Delivery
from engine.posting.models import Message

log = logging.getLogger("palanquee.bounces")

FEEDBACK_LOCAL_PART = "fbl"  # fbl@DOMAIN: the address to register with feedback loops (docs/bounces.md)
OPT_OUT_SOURCE = "complaint"  # OptOut.source and the audit entry's source
EVENT_SOURCE = "arf"  # BounceEvent.source: never counted as a bounce


@dataclass(frozen=True)
class Scope:
    """Where the report arrived: a list's return path, or a domain's feedback address."""

    list_id: int | None = None
    domain_id: int | None = None


@dataclass(frozen=True)
class Copy:
    delivery_id: int
    address: str
    member_ids: tuple[int, ...]
    message_id: int
    list_id: int


@dataclass(frozen=True)
class Target:
    """Who leaves which list: the unsubscribe token of the copy, as its List-Unsubscribe carried it."""

    list_id: int
    token: str
    email_key: str
    message_id: int | None
    delivery_id: int | None


def _copy(delivery_id: int) -> Copy | None:
    row = (Delivery.select(Delivery.address, Delivery.member_ids, Delivery.message, Message.mailing_list)
           .join(Message, on=(Delivery.message == Message.id)).where(Delivery.id == delivery_id))
    found = tuples(row)
    if not found:
        return None
    address, member_ids, message_id, list_id = found[0]
    members = tuple(int(part) for part in str(member_ids or "").split() if part.isdigit())
    return Copy(delivery_id, str(address), members, int(message_id), int(list_id))


def _in_scope(list_id: int, scope: Scope) -> bool:
    if scope.list_id is not None:
        return list_id == scope.list_id
    return scope.domain_id is not None and MailingList.select().where(
        (MailingList.id == list_id) & (MailingList.domain == scope.domain_id)).exists()


def _copies(settings: Settings, report: arf.Report, scope: Scope, envelope_delivery: int | None) -> list[Copy]:
    """The copies of that scope the genuine VERP tokens name (the envelope's first)."""
    key = verp.signing_key(settings)
    ids = [envelope_delivery] if envelope_delivery is not None else []
    ids += [found for token in report.verp_tokens if (found := verp.read_token(key, token)) is not None]
    copies = [copy for delivery_id in dict.fromkeys(ids) if (copy := _copy(delivery_id)) is not None]
    return [copy for copy in copies if _in_scope(copy.list_id, scope)]


def _message_named(list_id: int, message_id_header: str) -> int | None:
    """The list's message whose Message-ID the returned copy shows (for the per-message figures)."""
    if not message_id_header:
        return None
    found = tuples(Message.select(Message.id).where((Message.mailing_list == list_id)
                                                    & (Message.message_id == message_id_header))
                   .order_by(Message.id.desc()).limit(1))
    return int(found[0][0]) if found else None


def _member_key(member_ids: tuple[int, ...]) -> str:
    found = tuples(Member.select(Member.email_key).where(Member.id.in_(list(member_ids))).order_by(Member.id))
    return next((str(row[0]) for row in found if row[0]), "")


def identify(settings: Settings, report: arf.Report, scope: Scope, envelope_delivery: int | None = None
             ) -> Target | None:
    """The copy a report is about, from its signed tokens only; None when none is genuine and of ``scope``."""
    copies = _copies(settings, report, scope, envelope_delivery)
    for token in report.unsubscribe_tokens:
        try:
            named = tokens.load_unsubscribe_token(settings, token)
        except tokens.BadToken:
            continue
        if not _in_scope(named.list_id, scope):
            continue
        copy = next((c for c in copies if c.list_id == named.list_id), None)
        if copy is not None:
            return Target(named.list_id, token, copy.address.lower(), copy.message_id, copy.delivery_id)
        key = named.email_key or _member_key(tuple(named.member_ids))
        return Target(named.list_id, token, key.lower(), _message_named(named.list_id, report.message_id), None)
    for copy in copies:  # no usable List-Unsubscribe: the token the copy carried, rebuilt from its delivery
        token = tokens.make_unsubscribe_token(settings, copy.list_id, copy.member_ids, email_key=copy.address)
        return Target(copy.list_id, token, copy.address.lower(), copy.message_id, copy.delivery_id)
    return None


def receive(settings: Settings, data: bytes, *, list_id: int | None = None, domain_id: int | None = None,
            delivery_id: int | None = None) -> Target | None:
    """A complaint report at a list's return path (``list_id``, ``delivery_id`` from the envelope's token) or
    at a domain's feedback address (``domain_id``): the complainer leaves, the report is kept. Idempotent."""
    report = arf.read(dsn.parse(data))
    scope = Scope(list_id, domain_id)
    target = identify(settings, report, scope, delivery_id)
    now = clock.now()
    if target is None:
        with write_transaction():
            event = BounceEvent.create(at=now, email_key="", mailing_list=list_id, source=EVENT_SOURCE,
                                       kind=Kind.UNKNOWN, weight=0.0, content=data[:RAW_KEPT],
                                       diagnostic=f"complaint report naming no copy ({report.feedback_type or '-'})")
        log.warning("complaint report for list %s / domain %s names no copy of ours: kept, sent to the owner",
                    list_id, domain_id, extra={"list_id": list_id, "domain_id": domain_id})
        forward_to_owner(settings, list_id, event, data, template="complaint_unknown",
                         feedback_type=report.feedback_type)
        return None
    try:
        with write_transaction():
            outcome = optouts.unsubscribe_with_token(settings, target.token, OPT_OUT_SOURCE)
            BounceEvent.create(at=now, email_key=target.email_key[:254], mailing_list=target.list_id,
                               message=target.message_id, delivery_id=target.delivery_id, source=EVENT_SOURCE,
                               kind=Kind.COMPLAINT, weight=0.0, diagnostic=report.feedback_type,
                               content=data[:RAW_KEPT])
    except optouts.UnknownList:  # the list was deleted for good since: nobody left to take off it
        log.info("complaint report for deleted list %s ignored", target.list_id)
        return None
    log.info("complaint (%s) for list %s: %s left%s", report.feedback_type or "-", target.list_id,
             target.email_key, " (already out)" if outcome.already_out else "",
             extra={"list_id": target.list_id, "message_id": target.message_id, "delivery_id": target.delivery_id})
    return target
