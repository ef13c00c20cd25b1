"""A message posted to a list, stored before the intake answers 250, and its lifecycle state."""

from __future__ import annotations

from typing import TYPE_CHECKING

import peewee as pw

from engine.db import BaseModel
from engine.directory.models import Member
from engine.lists.models import MailingList


class MessageState:
    RECEIVED = "received"  # stored, policy not yet applied
    HELD = "held"  # waiting for a moderator
    ACCEPTED = "accepted"  # to be expanded
    EXPANDING = "expanding"
    SENDING = "sending"
    DONE = "done"
    REJECTED = "rejected"
    DISCARDED = "discarded"  # loops, bounces and auto-replies sent to the list address
    FAILED = "failed"  # could not be rendered: its open copies failed, author and owner told
    ALL = (RECEIVED, HELD, ACCEPTED, EXPANDING, SENDING, DONE, REJECTED, DISCARDED, FAILED)


class Message(BaseModel):
    mailing_list = pw.ForeignKeyField(MailingList, backref="messages", on_delete="CASCADE")
    message_id = pw.CharField(max_length=255, null=True)
    envelope_sender = pw.CharField(max_length=254, default="")
    author = pw.CharField(max_length=254, default="")  # From: address
    subject = pw.CharField(max_length=255, default="")
    content = pw.BlobField()  # the message as received (not ``raw``: that is peewee's Model.raw query)
    size = pw.IntegerField()
    state = pw.CharField(max_length=16, default=MessageState.RECEIVED)
    reason = pw.TextField(default="")
    received_at = pw.DateTimeField()
    decided_at = pw.DateTimeField(null=True)
    decided_by = pw.ForeignKeyField(Member, null=True, on_delete="SET NULL")
    recipient_count = pw.IntegerField(default=0)
    # Copies sent and failed so far, added by each batch of results (outbound/outbox.py) and recounted exactly
    # when the message is done: its progress never counts 100,000 delivery rows.
    sent_count = pw.IntegerField(default=0)
    failed_count = pw.IntegerField(default=0)
    finished_at = pw.DateTimeField(null=True)
    authentication = pw.TextField(default="")  # inbound Authentication-Results value (posting/authentication.py)

    if TYPE_CHECKING:  # the ids peewee adds beside each foreign key
        mailing_list_id: pw.ForeignKeyField[int]
        decided_by_id: pw.ForeignKeyField[int | None]

    class Meta:
        indexes = ((("state", "received_at"), False),)


MODELS = [Message]
