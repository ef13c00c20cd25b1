"""Read-side queries for the staff pages of the engine: messages of the lists one may manage, with progress."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import peewee as pw

from engine.directory.models import Member, Structure
from engine.directory.staff import is_federation_admin, manageable_structures
from engine.lists.models import Domain, MailingList
from engine.outbound import mail
from engine.outbound.models import Delivery, DeliveryState
from engine.outbound.outbox import counts
from engine.posting.models import Message, MessageState

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
    return (Message.select(Message, MailingList, Domain).join(MailingList).join(Domain)
            .where(MailingList.structure.in_(structures)).order_by(Message.received_at.desc(), Message.id.desc()))


def held_messages(staff: Member) -> list[Message]:
    return list(visible_messages(staff).where(Message.state == MessageState.HELD))


def may_see(staff: Member, message: Message) -> bool:
    return visible_messages(staff).where(Message.id == message.id).exists()


def progress(message: Message) -> Progress:
    by_state = counts(message.id)
    return Progress(message.id, message.state, message.recipient_count, by_state[DeliveryState.SENT],
                    by_state[DeliveryState.DEFERRED], by_state[DeliveryState.FAILED],
                    by_state[DeliveryState.QUEUED])


def progress_of_many(messages: list[Message]) -> dict[int, dict[str, int]]:
    """Delivery counts by state for several messages in one query."""
    found: dict[int, dict[str, int]] = {m.id: dict.fromkeys(DeliveryState.ALL, 0) for m in messages}
    if not found:
        return found
    query = (Delivery.select(Delivery.message, Delivery.state, pw.fn.COUNT(Delivery.id))
             .where(Delivery.message.in_(list(found))).group_by(Delivery.message, Delivery.state).tuples().iterator())
    for message_id, state, number in query:
        found[message_id][state] = number
    return found


def problems(message: Message, offset: int = 0, limit: int = 50) -> list[Delivery]:
    """Failed and deferred copies with the SMTP reply that decided them."""
    return list(Delivery.select().where((Delivery.message == message)
                                        & Delivery.state.in_([DeliveryState.FAILED, DeliveryState.DEFERRED]))
                .order_by(Delivery.state, Delivery.address).offset(offset).limit(limit))


def manageable_list_addresses(staff: Member) -> set[str]:
    """Addresses of the lists whose structure the staff member manages (lower case)."""
    lists = (MailingList.select(MailingList, Domain).join(Domain)
             .where(MailingList.structure.in_(manageable_structures(staff).select(Structure.id))))
    return {mailing_list.address.lower() for mailing_list in lists}


def _list_of_copy(headers: EmailMessage) -> str:
    return str(headers.get("X-Loop", "")).strip().lower()  # every list copy names its list there


def may_see_captured(staff: Member, headers: EmailMessage) -> bool:
    """Federation administrators see all captured mail; other staff the copies of their lists."""
    return is_federation_admin(staff) or _list_of_copy(headers) in manageable_list_addresses(staff)


def captured_page(staff: Member, folder: Path, offset: int, limit: int) -> tuple[list[tuple[str, EmailMessage]], bool]:
    """(key, headers) of the captured messages ``staff`` may see, newest first, and whether more follow."""
    addresses = None if is_federation_admin(staff) else manageable_list_addresses(staff)
    rows: list[tuple[str, EmailMessage]] = []
    for key in mail.captured_keys(folder):
        headers = mail.read_one_captured(folder, key, headers_only=True)
        if headers is None or (addresses is not None and _list_of_copy(headers) not in addresses):
            continue
        if offset:
            offset -= 1
            continue
        rows.append((key, headers))
        if len(rows) >= limit:
            return rows, True
    return rows, False
