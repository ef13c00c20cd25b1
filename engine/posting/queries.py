"""Read-side queries for the staff pages of the engine: messages of the lists one may manage, with progress."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parseaddr
from typing import NamedTuple

import peewee as pw

from engine.bounces import verp
from engine.config import Settings
from engine.db import batched
from engine.directory.models import Member, Structure
from engine.directory.staff import is_federation_admin, manageable_structures
from engine.lists.models import Domain, MailingList
from engine.outbound import mail
from engine.outbound.models import Delivery, DeliveryState
from engine.posting.models import Message, MessageState
from engine.prepared import Prepared, slot

CAPTURE_BATCH = 200  # captured files read (headers only) per query of their deliveries
IN_PROGRESS = (MessageState.ACCEPTED, MessageState.EXPANDING, MessageState.SENDING)


@dataclass(frozen=True)
class Progress:
    message_id: int
    state: str
    recipients: int
    sent: int
    deferred: int
    failed: int
    queued: int  # waiting or claimed

    @property
    def finished(self) -> bool:
        return self.state not in IN_PROGRESS

    @property
    def percent(self) -> int:
        done = self.sent + self.failed
        return 100 if not self.recipients else int(100 * done / self.recipients)

    def as_dict(self) -> dict[str, object]:
        return {"message_id": self.message_id, "state": self.state, "recipients": self.recipients,
                "sent": self.sent, "deferred": self.deferred, "failed": self.failed, "queued": self.queued,
                "percent": self.percent, "finished": self.finished}


def visible_messages(staff: Member) -> pw.ModelSelect[Message]:
    """Messages of the lists whose structure the staff member manages, newest first."""
    structures = manageable_structures(staff).select(Structure.id)
    listed = [field for field in Message._meta.sorted_fields if field is not Message.content]  # not the mail itself
    return (Message.select(*listed, MailingList, Domain).join(MailingList).join(Domain)
            .where(MailingList.structure.in_(structures)).order_by(Message.received_at.desc(), Message.id.desc()))


def held_messages(staff: Member) -> list[Message]:
    return list(visible_messages(staff).where(Message.state == MessageState.HELD))


def may_see(staff: Member, message: Message) -> bool:
    from engine.posting import listing  # compiled on top of visible_messages

    return listing.may_see(staff, message)


def progress(message: Message) -> Progress:
    """Where a message's delivery stands: sent and failed from its counters, deferred from the (message, state)
    index (the copies waiting for a retry, usually few), queued the rest. Never a count of every delivery row."""
    deferred = _deferred([message.id]).get(message.id, 0)
    return Progress(message.id, message.state, message.recipient_count, message.sent_count, deferred,
                    message.failed_count, _queued(message, deferred))


def _queued(message: Message, deferred: int) -> int:
    return max(message.recipient_count - message.sent_count - message.failed_count - deferred, 0)


def _deferred(message_ids: list[int]) -> dict[int, int]:
    query = (Delivery.select(Delivery.message, pw.fn.COUNT(pw.SQL("*")))
             .where(Delivery.message.in_(message_ids) & (Delivery.state == DeliveryState.DEFERRED))
             .group_by(Delivery.message).tuples().iterator())
    return dict(query)


def progress_of_many(messages: list[Message]) -> dict[int, dict[str, int]]:
    """Delivery counts by state for several messages: their counters, and one query for the deferred copies."""
    deferred = _deferred([m.id for m in messages]) if messages else {}
    return {m.id: {DeliveryState.SENT: m.sent_count, DeliveryState.FAILED: m.failed_count,
                   DeliveryState.DEFERRED: deferred.get(m.id, 0),
                   DeliveryState.QUEUED: _queued(m, deferred.get(m.id, 0))} for m in messages}


class Problem(NamedTuple):
    """A failed or deferred copy as a message's page shows it."""

    address: str
    state: str
    attempts: int
    last_reply: str


def problems(message: Message, offset: int = 0, limit: int = 50) -> list[Problem]:
    """Failed and deferred copies with the SMTP reply that decided them, by state then address: read in that
    order from the (message, state, address) index, never sorted (a 100,000-copy message may have thousands)."""
    return [Problem(*row) for row in _PROBLEMS.rows(message=message.id, offset=offset, limit=limit)]


_PROBLEMS: Prepared[tuple[str, str, int, str]] = Prepared(lambda: (
    Delivery.select(Delivery.address, Delivery.state, Delivery.attempts, Delivery.last_reply)
    .where((Delivery.message == slot("message"))
           & Delivery.state.in_([DeliveryState.DEFERRED, DeliveryState.FAILED]))
    .order_by(Delivery.state, Delivery.address).offset(slot("offset")).limit(slot("limit")).tuples()))


def manageable_list_addresses(staff: Member) -> set[str]:
    """Addresses of the lists whose structure the staff member manages (lower case)."""
    lists = (MailingList.select(MailingList, Domain).join(Domain)
             .where(MailingList.structure.in_(manageable_structures(staff).select(Structure.id))))
    return {mailing_list.address.lower() for mailing_list in lists}


# --- captured mail: who may read which copy (issue 11, finding 14) ---

def _first(headers: EmailMessage, name: str) -> str:
    found = headers.get_all(name) or []
    return parseaddr(str(found[0]))[1].strip().lower() if found else ""


def _delivery_named(verp_key: bytes, headers: EmailMessage) -> int | None:
    """The delivery a captured copy claims to be, from its envelope sender (VERP: LIST-bounces+TOKEN@domain).

    Only what the capture itself writes first is read; the token is signed with the secret key.
    """
    local = _first(headers, "Return-Path").rpartition("@")[0]
    _, marker, token = local.rpartition("-bounces+")
    return verp.read_token(verp_key, token) if marker else None


def _lists_of_copies(settings: Settings, batch: list[tuple[str, EmailMessage]]) -> dict[str, int]:
    """Key -> list id, for the captured copies of a list delivery: a genuine VERP token whose delivery went to
    the address the capture recorded (Delivered-To). A header the sender wrote (X-Loop, a Return-Path lower in
    the message) decides nothing: mail passed on to a list's owner keeps every header its sender chose."""
    verp_key = verp.signing_key(settings)
    named = {key: delivery for key, headers in batch if (delivery := _delivery_named(verp_key, headers)) is not None}
    if not named:
        return {}
    rows = (Delivery.select(Delivery.id, Delivery.address, Message.mailing_list).join(Message)
            .where(Delivery.id.in_(list(set(named.values())))).tuples().iterator())
    found: dict[int, tuple[str, int]] = {delivery: (address.lower(), list_id) for delivery, address, list_id in rows}
    recorded = dict(batch)
    return {key: found[delivery][1] for key, delivery in named.items()
            if delivery in found and found[delivery][0] == _first(recorded[key], "Delivered-To")}


def _manageable_list_ids(staff: Member) -> set[int]:
    lists = MailingList.select(MailingList.id).where(
        MailingList.structure.in_(manageable_structures(staff).select(Structure.id)))
    return {list_id for (list_id,) in lists.tuples().iterator()}


def may_see_captured(settings: Settings, staff: Member, key: str, headers: EmailMessage) -> bool:
    """Federation administrators see all captured mail; other staff the copies of their lists' deliveries."""
    if is_federation_admin(staff):
        return True
    return _lists_of_copies(settings, [(key, headers)]).get(key) in _manageable_list_ids(staff)


def captured_page(settings: Settings, staff: Member, offset: int,
                  limit: int) -> tuple[list[tuple[str, EmailMessage]], bool]:
    """(key, headers) of the captured messages ``staff`` may see, newest first, and whether more follow."""
    folder = settings.capture_dir
    mine = None if is_federation_admin(staff) else _manageable_list_ids(staff)
    rows: list[tuple[str, EmailMessage]] = []
    for keys in batched(mail.captured_keys(folder), CAPTURE_BATCH):
        batch = [(key, headers) for key in keys
                 if (headers := mail.read_one_captured(folder, key, headers_only=True)) is not None]
        lists = _lists_of_copies(settings, batch) if mine is not None else {}
        for key, headers in batch:
            if mine is not None and lists.get(key) not in mine:
                continue
            if offset:
                offset -= 1
                continue
            rows.append((key, headers))
            if len(rows) >= limit:
                return rows, True
    return rows, False
