"""Read-side queries for the staff pages of the engine: messages of the lists one may manage, with progress."""

from __future__ import annotations

from dataclasses import dataclass

import peewee as pw

from engine.directory.models import Member, Structure
from engine.directory.staff import manageable_structures
from engine.lists.models import Domain, MailingList
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


def visible_messages(staff: Member) -> pw.ModelSelect:
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
             .where(Delivery.message.in_(list(found))).group_by(Delivery.message, Delivery.state).tuples())
    for message_id, state, number in query:
        found[message_id][state] = number
    return found


def problems(message: Message, offset: int = 0, limit: int = 50) -> list[Delivery]:
    """Failed and deferred copies with the SMTP reply that decided them."""
    return list(Delivery.select().where((Delivery.message == message)
                                        & Delivery.state.in_([DeliveryState.FAILED, DeliveryState.DEFERRED]))
                .order_by(Delivery.state, Delivery.address).offset(offset).limit(limit))
