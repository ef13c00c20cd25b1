"""What staff see and do about one list's bounces: its bouncing addresses, its threshold, re-enabling an address.

Every function takes the acting staff member and checks their scope itself (as ``engine/lists/admin.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import peewee as pw

from engine import audit, clock
from engine.bounces import scoring
from engine.bounces.models import Bounce, BounceEvent, tuples
from engine.config import Settings
from engine.directory import staff
from engine.directory.models import Member
from engine.lists.models import MailingList

WINDOW = timedelta(days=30)
THRESHOLD_RANGE = (1.0, 100.0)


class BadThreshold(ValueError):
    """Not a number between ``THRESHOLD_RANGE``."""


@dataclass(frozen=True)
class AddressRow:
    email_key: str
    events: int  # reports for this list in the window
    last_at: datetime
    last_kind: str
    last_status: str
    score: float  # as it stands (stale scores read as zero)
    disabled: bool
    reply: str


def bouncing_addresses(settings: Settings, actor: Member | None, ml: MailingList, *, offset: int = 0,
                       limit: int = 50) -> list[AddressRow]:
    """Addresses of the list that failed in the last 30 days (disabled first, then by score): two queries."""
    staff.require_manage(actor, ml.structure)
    now = clock.now()
    recent = (BounceEvent.select(BounceEvent.email_key, pw.fn.COUNT(BounceEvent.id), pw.fn.MAX(BounceEvent.at))
              .where((BounceEvent.mailing_list == ml.id) & (BounceEvent.at >= now - WINDOW)
                     & (BounceEvent.weight > 0))
              .group_by(BounceEvent.email_key))
    counts = {row[0]: (int(row[1]), row[2]) for row in tuples(recent)}
    if not counts:
        return []
    rows = []
    for bounce in Bounce.select().where(Bounce.email_key.in_(list(counts))):
        events, last_at = counts[bounce.email_key]
        rows.append(AddressRow(bounce.email_key, events, last_at, bounce.last_kind, bounce.last_status,
                               scoring.current(settings, bounce, now), scoring.is_disabled(bounce, now),
                               bounce.last_reply))
    rows.sort(key=lambda r: (not r.disabled, -r.score, r.email_key))
    return rows[offset: offset + limit]


def set_threshold(actor: Member | None, ml: MailingList, raw: str, *, ip: str | None = None) -> float | None:
    """The list's own threshold (``raw`` empty: the installation's default); returns what is now set."""
    staff.require_manage(actor, ml.structure)
    value: float | None = None
    if raw.strip():
        try:
            value = float(raw.strip().replace(",", "."))
        except ValueError as exc:
            raise BadThreshold(raw) from exc
        if not THRESHOLD_RANGE[0] <= value <= THRESHOLD_RANGE[1]:
            raise BadThreshold(raw)
    MailingList.update(bounce_threshold=value).where(MailingList.id == ml.id).execute()
    audit.record("list.bounce_threshold", ml, actor=actor, structure_id=ml.structure_id, ip=ip,
                 old=ml.bounce_threshold, new=value)
    ml.bounce_threshold = value
    return value


def reenable(actor: Member | None, ml: MailingList, email_key: str, *, ip: str | None = None) -> bool:
    """Staff give an address of their list another chance (it bounced on this list): cleared everywhere."""
    staff.require_manage(actor, ml.structure)
    known = BounceEvent.select().where((BounceEvent.mailing_list == ml.id) & (BounceEvent.email_key == email_key))
    if not known.exists():
        return False
    done = scoring.clear(email_key, how="staff")
    if done:
        audit.record("bounce.reenabled", ml, actor=actor, structure_id=ml.structure_id, ip=ip, address=email_key)
    return done
