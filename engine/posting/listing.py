"""The staff's messages pages as statements compiled once per staff scopes (``engine/prepared.py``).

A page of the messages the staff member may see, their number and the held ones: their SQL depends only on the
member's scopes (their structures' path bounds), kept per scopes; the page's limit and offset are slots. Whether
the member may see one message is their scopes against its list's structure (one compiled read).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

import peewee as pw

from engine.directory import staff
from engine.directory.models import Member, Structure
from engine.lists.models import Domain, MailingList
from engine.posting.models import Message, MessageState
from engine.prepared import Prepared, slot

KEPT = 256  # scopes kept, least recently used dropped

_PLACE: Prepared[Structure] = Prepared(lambda: (
    Structure.select().join(MailingList, on=(MailingList.structure == Structure.id))
    .where(MailingList.id == slot("list"))))
Compiled = tuple[Prepared[tuple[Any, ...]], Prepared[tuple[int]], Prepared[tuple[Any, ...]]]
_kept: OrderedDict[tuple[Any, ...], Compiled] = OrderedDict()


_MESSAGE: Prepared[Message] = Prepared(lambda: (
    Message.select(Message, MailingList, Domain).join(MailingList).join(Domain).where(Message.id == slot("id"))))


def message_with_list(message_id: int) -> Message | None:
    """The message with its list and the list's domain (one compiled statement), or None."""
    return _MESSAGE.first(id=message_id)


def may_see(member: Member, message: Message) -> bool:
    """Whether the message's list belongs to a structure within the member's scopes."""
    place = _PLACE.first(list=message.mailing_list_id)
    return place is not None and staff.can_manage(member, place)


class MessageRow(NamedTuple):
    """What the messages page shows of a message and computes its figures from (``stats.message_figures``)."""

    id: int
    mailing_list_id: int
    author: str
    subject: str
    state: str
    received_at: datetime
    recipient_count: int
    sent_count: int
    failed_count: int
    address: str  # the list's


# peewee's models of the whole message, its list and its domain (some forty columns, three objects a row) cost
# more to build than the page's statements cost to run: the driver's rows, the date converted as peewee does.
_SHOWN = (Message.id, Message.mailing_list, Message.author, Message.subject, Message.state, Message.received_at,
          Message.recipient_count, Message.sent_count, Message.failed_count, MailingList.local_part, Domain.name)
_RECEIVED_AT: Callable[[Any], datetime] = Message.received_at.python_value


def _row(values: tuple[Any, ...]) -> MessageRow:
    message_id, list_id, author, subject, state, received_at, count, sent, failed, local_part, domain = values
    received: datetime = _RECEIVED_AT(received_at)  # SQLite gives ISO text
    return MessageRow(message_id, list_id, author, subject, state, received, count, sent, failed,
                      f"{local_part}@{domain}")


def _compiled(member: Member) -> Compiled:
    from engine.posting.queries import visible_messages  # the query itself, written once there

    shape = tuple(scope.subtree_bounds() for scope in staff.scopes(member))
    found = _kept.get(shape)
    if found is not None:
        _kept.move_to_end(shape)
        return found
    page: Prepared[tuple[Any, ...]] = Prepared(lambda: visible_messages(member).select(*_SHOWN)
                                               .limit(slot("limit")).offset(slot("offset")).tuples())
    total: Prepared[tuple[int]] = Prepared(lambda: (
        Message.select(pw.fn.COUNT(Message.id)).join(MailingList).join(Domain)
        .where(MailingList.structure.in_(staff.manageable_structures(member).select(Structure.id))).tuples()))
    held: Prepared[tuple[Any, ...]] = Prepared(lambda: visible_messages(member).select(*_SHOWN)
                                               .where(Message.state == MessageState.HELD).tuples())
    found = _kept[shape] = (page, total, held)
    while len(_kept) > KEPT:
        _kept.popitem(last=False)
    return found


def page_of_messages(member: Member, page: int, per_page: int) -> tuple[list[MessageRow], int, list[MessageRow]]:
    """A page of the messages ``member`` may see (newest first), how many there are, and the held ones; each
    with what the page shows (``MessageRow``: not the mail itself, not its settings)."""
    rows, total, held = _compiled(member)
    return ([_row(r) for r in rows.rows(limit=per_page, offset=(max(page, 1) - 1) * per_page)],
            int(total.rows()[0][0]), [_row(r) for r in held.rows()])
