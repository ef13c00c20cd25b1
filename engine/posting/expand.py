"""Expansion: the recipients of an accepted post, computed now, written as one delivery row each.

One transaction claims the post (accepted → expanding, so that two engines never expand it
twice), streams ``resolve()`` in batches into ``Delivery`` rows and marks it ``sending``: a crash
in the middle leaves it ``accepted``, to be expanded again from scratch after restart.
"""

from __future__ import annotations

from engine import clock
from engine.db import database, sql_datetime
from engine.lists import counts
from engine.lists.models import MailingList
from engine.lists.resolve import resolve
from engine.outbound.models import DeliveryState
from engine.posting.models import Message, MessageState

COLUMNS = ("message_id", "address", "member_id", "member_ids", "reason", "state", "attempts", "next_attempt_at",
           "updated_at", "last_reply")


def _insert_sql() -> str:
    # Plain executemany: peewee's insert_many costs about 10 times more per row here (PERFORMANCE.md).
    param = database.obj.param
    return (f"INSERT INTO delivery ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join([param] * len(COLUMNS))})")


def _reason(labels: list[str]) -> str:
    text = " ; ".join(dict.fromkeys(labels))
    return text if len(text) <= 255 else text[:254] + "…"


def expand(message_id: int) -> int | None:
    """Expand one accepted post; returns the number of recipients, None if it was not ``accepted``."""
    now = clock.now()
    with database.atomic():
        claimed = (Message.update(state=MessageState.EXPANDING)
                   .where((Message.id == message_id) & (Message.state == MessageState.ACCEPTED)).execute())
        if not claimed:
            return None
        # Its list's id is all resolve() needs: neither the post's content nor the list's other columns
        mailing_list = MailingList.select(MailingList.id).join(Message).where(Message.id == message_id).get()
        count = 0
        sql = _insert_sql()
        cursor = database.obj.cursor()
        stamp = sql_datetime(now)
        for batch in resolve(mailing_list, batch_size=1000):
            rows = [
                (message_id, r.address, r.member_ids[0] if r.member_ids else None,
                 " ".join(map(str, r.member_ids)), _reason([reason.label_fr for reason in r.reasons]),
                 DeliveryState.QUEUED, 0, stamp, stamp, "")
                for r in batch
            ]
            cursor.executemany(sql, rows)
            count += len(rows)
        state = MessageState.SENDING if count else MessageState.DONE
        Message.update(state=state, recipient_count=count, finished_at=None if count else now).where(
            Message.id == message_id).execute()
        MailingList.update(last_posted_at=now).where(MailingList.id == mailing_list.id).execute()
        counts.record(mailing_list.id, count, now)  # the lists page's count, for free
    return count


def accepted_messages(limit: int = 20) -> list[int]:
    """Posts waiting for expansion, oldest first (after a restart, those a crash interrupted)."""
    return [m.id for m in Message.select(Message.id).where(Message.state == MessageState.ACCEPTED)
            .order_by(Message.received_at).limit(limit)]
