"""One delivery row per recipient copy (the durable outbox the workers claim from), and the throttling
rules and shared pace per destination group."""

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
    # No index of their own: (message, state, address) below covers the message; member deletion may scan.
    message = pw.ForeignKeyField(Message, backref="deliveries", on_delete="CASCADE", index=False)
    address = pw.CharField(max_length=254)
    member = pw.ForeignKeyField(Member, null=True, on_delete="SET NULL", index=False)
    member_ids = pw.TextField(default="")  # "12 57": every member sharing this copy's address (any number: 0120)
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
            # a message's copies by state, and its problem copies in address order (0130)
            (("message", "state", "address"), False),
        )



class ThrottleRule(BaseModel):
    """How fast one provider group may receive: its domains, the MX hosts that identify it, limits.

    Empty limits mean no limit. The rule named ``default`` applies to every other domain, each
    domain on its own. Edited by federation administrators (portal/admin/throttle_views.py).
    """

    name = pw.CharField(max_length=32, unique=True)  # "orange", "default"
    label = pw.CharField(max_length=100)
    domains = pw.TextField(default="")  # one per line, exact
    mx_patterns = pw.TextField(default="")  # one per line: an MX host or "*.suffix"
    per_minute = pw.IntegerField(null=True)
    per_hour = pw.IntegerField(null=True)
    per_day = pw.IntegerField(null=True)
    connections = pw.IntegerField(null=True)  # concurrent sessions carrying this group's copies
    per_connection = pw.IntegerField(null=True)  # copies per session, then a new one
    updated_at = pw.DateTimeField(null=True)

    @property
    def domain_list(self) -> list[str]:
        return [line.strip().lower() for line in self.domains.splitlines() if line.strip()]

    @property
    def mx_list(self) -> list[str]:
        return [line.strip().lower() for line in self.mx_patterns.splitlines() if line.strip()]


class ThrottleState(BaseModel):
    """The shared pace of one group (or of one domain under the default rule), for every engine.

    ``tat`` is the theoretical arrival time of the generic cell rate algorithm (the next copy is on
    time when ``tat`` is not ahead of now by more than the burst); ``horizon`` is how far copies put
    off for this group are already scheduled; the windows count copies per hour and per day;
    ``factor`` scales the rate (halved on a slow-down reply, recovering with time).
    """

    key = pw.CharField(max_length=300, unique=True)
    tat = pw.DateTimeField()
    horizon = pw.DateTimeField()
    hour_start = pw.DateTimeField()
    hour_count = pw.IntegerField(default=0)
    day_start = pw.DateTimeField()
    day_count = pw.IntegerField(default=0)
    factor = pw.FloatField(default=1.0)
    factor_at = pw.DateTimeField()
    slowdowns = pw.IntegerField(default=0)
    slowed_at = pw.DateTimeField(null=True)


MODELS = [Delivery, ThrottleRule, ThrottleState]
