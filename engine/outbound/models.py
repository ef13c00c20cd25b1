"""One delivery row per recipient copy: the durable outbox the delivery workers claim from."""

from __future__ import annotations

from typing import TYPE_CHECKING

import peewee as pw

from engine.db import BaseModel
from engine.directory.models import Member
from engine.posting.models import Message


class DeliveryState:
    QUEUED = "queued"  # due at next_attempt_at
    SENT = "sent"
    DEFERRED = "deferred"  # temporary failure, due again at next_attempt_at
    FAILED = "failed"  # permanent failure or lifetime expired
    ALL = (QUEUED, SENT, DEFERRED, FAILED)


class Delivery(BaseModel):
    # No index of their own: (message, state) below covers the message; member deletion may scan.
    message = pw.ForeignKeyField(Message, backref="deliveries", on_delete="CASCADE", index=False)
    address = pw.CharField(max_length=254)
    member = pw.ForeignKeyField(Member, null=True, on_delete="SET NULL", index=False)
    member_ids = pw.CharField(max_length=255, default="")  # "12 57": every member sharing this copy's address
    reason = pw.CharField(max_length=255, default="")  # why this recipient is on the list
    state = pw.CharField(max_length=16, default=DeliveryState.QUEUED)
    attempts = pw.SmallIntegerField(default=0)
    next_attempt_at = pw.DateTimeField()
    claimed_until = pw.DateTimeField(null=True)
    claimed_by = pw.CharField(max_length=64, null=True)
    last_reply = pw.TextField(default="")
    updated_at = pw.DateTimeField()

    if TYPE_CHECKING:  # the ids peewee adds beside each foreign key
        message_id: pw.ForeignKeyField[int]
        member_id: pw.ForeignKeyField[int | None]

    class Meta:
        indexes = (
            # claiming due rows: state, then due time
            (("state", "next_attempt_at"), False),
            (("message", "state"), False),
        )


MODELS = [Delivery]
