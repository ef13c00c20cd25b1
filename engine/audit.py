"""The audit trail: who did what to which object, when. Every staff action and member change writes one."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import peewee as pw

from engine import clock
from engine.db import BaseModel
from engine.directory.models import Member


class AuditEvent(BaseModel):
    at = pw.DateTimeField(index=True)
    actor = pw.ForeignKeyField(Member, null=True, backref="audit_events", on_delete="SET NULL")
    actor_label = pw.CharField(max_length=64, default="")  # "system", "import", a recipient token
    action = pw.CharField(max_length=64, index=True)  # e.g. "email_change.requested"
    object_type = pw.CharField(max_length=32)
    object_id = pw.IntegerField(null=True)
    structure_id = pw.IntegerField(null=True, index=True)  # for staff scoping of the log
    detail = pw.TextField(default="{}")
    ip = pw.CharField(max_length=64, null=True)

    if TYPE_CHECKING:  # the ids peewee adds beside each foreign key
        actor_id: pw.ForeignKeyField[int | None]

    class Meta:
        indexes = ((("object_type", "object_id"), False),)

    @property
    def details(self) -> dict[str, Any]:
        details: dict[str, Any] = json.loads(self.detail or "{}")
        return details


def record(
    action: str,
    obj: BaseModel | None = None,
    *,
    actor: Member | None = None,
    actor_label: str = "",
    structure_id: int | None = None,
    ip: str | None = None,
    **detail: Any,
) -> AuditEvent:
    """Write one audit event. ``obj`` names the object acted on (its table and id)."""
    return AuditEvent.create(
        at=clock.now(),
        actor=actor,
        actor_label=actor_label or ("" if actor else "system"),
        action=action,
        object_type=obj._meta.table_name if obj is not None else "",
        object_id=obj.id if obj is not None else None,
        structure_id=structure_id,
        detail=json.dumps(detail, default=str, ensure_ascii=False),
        ip=ip,
    )


MODELS = [AuditEvent]
