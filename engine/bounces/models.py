"""Bounces in the database: a score per address, every returned message kept for audit, and the delivery
counts of finished messages (the statistics read those instead of counting 100,000 deliveries again)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import peewee as pw

from engine.db import BaseModel
from engine.lists.models import MailingList
from engine.posting.models import Message


class Bounce(BaseModel):
    """One address's bounce score. ``disabled_until`` in the future: lists skip the address (resolve())."""

    email_key = pw.CharField(max_length=254, unique=True)
    score = pw.FloatField(default=0.0)
    bounce_count = pw.IntegerField(default=0)  # counted failures (hard and soft) since the record began
    last_bounce_at = pw.DateTimeField(null=True)  # the last counted failure
    disabled_until = pw.DateTimeField(null=True, index=True)
    last_reply = pw.TextField(default="")  # the remote server's words, for the member and staff
    disabled_at = pw.DateTimeField(null=True)  # set when disabled, cleared only by a probe or a confirmation
    counted_on = pw.DateField(null=True)  # the local day of the last counted failure (one a day counts)
    counted_weight = pw.FloatField(default=0.0)  # what that day has counted so far
    last_kind = pw.CharField(max_length=16, default="")
    last_status = pw.CharField(max_length=16, default="")
    probe_sent_at = pw.DateTimeField(null=True)


class BounceEvent(BaseModel):
    """One failure report: a returned message (``dsn``) or a synchronous 5xx at delivery (``smtp``)."""

    at = pw.DateTimeField()
    email_key = pw.CharField(max_length=254)
    mailing_list = pw.ForeignKeyField(MailingList, null=True, on_delete="CASCADE", index=False)
    message = pw.ForeignKeyField(Message, null=True, on_delete="CASCADE", index=False)
    delivery_id = pw.IntegerField(null=True)  # no foreign key: the hottest table stays free of one more index
    source = pw.CharField(max_length=8)  # dsn, smtp
    kind = pw.CharField(max_length=16)
    status = pw.CharField(max_length=16, default="")
    final = pw.BooleanField(default=True)  # False: a delay warning
    weight = pw.FloatField(default=0.0)  # what it added to the address's score
    recipients = pw.CharField(max_length=1000, default="")
    diagnostic = pw.TextField(default="")
    content = pw.BlobField(null=True)  # the returned message's first 64 KB (``raw`` is a Model method)
    forwarded = pw.BooleanField(default=False)  # unrecognised: sent on to the list's owner

    if TYPE_CHECKING:  # the ids peewee adds beside each foreign key
        mailing_list_id: pw.ForeignKeyField[int | None]
        message_id: pw.ForeignKeyField[int | None]

    class Meta:
        indexes = (
            (("message", "kind"), False),  # bounced copies of a message
            (("mailing_list", "at"), False),  # a list's recent bounces; forwarding limit
            (("email_key", "at"), False),  # an address's history
        )


class MessageStats(BaseModel):
    """Delivery counts of a message whose delivery is over (they no longer change)."""

    message = pw.ForeignKeyField(Message, primary_key=True, on_delete="CASCADE")
    sent = pw.IntegerField(default=0)
    failed = pw.IntegerField(default=0)
    settled_at = pw.DateTimeField()

    if TYPE_CHECKING:
        message_id: pw.ForeignKeyField[int]


MODELS = [Bounce, BounceEvent, MessageStats]


def tuples(query: pw.SelectBase) -> list[tuple[Any, ...]]:
    """The rows of ``query`` as tuples (typed: peewee's stubs type ``.tuples()`` as model instances)."""
    return list(cast(Iterable[tuple[Any, ...]], query.tuples()))
