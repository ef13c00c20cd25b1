"""What a member sees and does about their own disabled address: its state for Mon espace, the probe (a
message with a link: following it proves the address receives mail again), and the scheduled job that
clears an address confirmed by the link of an address change.

A new address needs nothing from here: it has no bounce record, so lists use it as soon as it is the
member's effective address (``engine/directory/email_change.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from engine import clock, tokens
from engine.bounces import scoring, service
from engine.bounces.models import Bounce, tuples
from engine.config import Settings
from engine.directory.models import EmailChange, Member, email_key
from engine.prepared import Prepared, slot

PROBE_MAX_AGE = timedelta(days=7)
PROBE_INTERVAL = timedelta(minutes=10)  # one probe at a time: the form cannot be used to flood an address


@dataclass(frozen=True)
class AddressStatus:
    """A member's address that the lists no longer use because it bounces."""

    address: str
    disabled_at: datetime | None
    reply: str  # what the remote server said last
    probe_sent_at: datetime | None

    def probe_allowed(self, now: datetime) -> bool:
        return self.probe_sent_at is None or self.probe_sent_at + PROBE_INTERVAL <= now


class ProbeLinkError(tokens.LinkError):
    """A probe link that cannot act: ``reason`` is invalid, expired or changed (the address changed since)."""


_DISABLED: Prepared[Bounce] = Prepared(lambda: Bounce.select().where(
    (Bounce.email_key == slot("key")) & (Bounce.disabled_until > slot("now", Bounce.disabled_until))).limit(1))


def address_status(member: Member, now: datetime | None = None) -> AddressStatus | None:
    """The member's disabled address, or None when the lists use it (one indexed query)."""
    if not member.email_key:
        return None
    row = _DISABLED.first(key=member.email_key, now=now or clock.now())  # Mon espace asks at every view
    if row is None:
        return None
    return AddressStatus(member.email or member.email_key, row.disabled_at, row.last_reply, row.probe_sent_at)


def probe_url(settings: Settings, member: Member) -> str:
    token = tokens.dumps(settings, tokens.Purpose.BOUNCE_PROBE, {"m": member.id, "k": member.email_key})
    return f"{settings.base_url}/espace/adresse/verification/{token}"


def send_probe(settings: Settings, member: Member) -> bool:
    """Mail the member's disabled address a link that re-enables it; False when one went out a moment ago."""
    now = clock.now()
    status = address_status(member, now)
    if status is None:
        return False
    claimed = (Bounce.update(probe_sent_at=now)
               .where((Bounce.email_key == member.email_key)
                      & (Bounce.probe_sent_at.is_null() | (Bounce.probe_sent_at <= now - PROBE_INTERVAL)))
               .execute())
    if not claimed:
        return False
    service.send_notice(settings, "bounce_probe", status.address, member.language or settings.default_language,
                  member=member, link=probe_url(settings, member), validity_days=PROBE_MAX_AGE.days)
    return True


def confirm_probe(settings: Settings, token: str) -> Member:
    """The member whose address the link names works again: its bounce record is cleared."""
    payload = tokens.load_link(settings, tokens.Purpose.BOUNCE_PROBE, token, PROBE_MAX_AGE, ProbeLinkError,
                               ints=("m",))
    member = Member.get_or_none(Member.id == payload["m"])
    if member is None:
        raise ProbeLinkError("invalid")
    key = member.email_key
    if not key or key != payload.get("k"):
        raise ProbeLinkError("changed")
    scoring.clear(key, how="probe")
    return member


def clear_confirmed_addresses(now: datetime | None = None, window: timedelta = timedelta(days=1)) -> int:
    """Addresses confirmed by an address-change link after they were disabled receive mail: clear them.

    Scheduled every minute (``engine/jobs.py``); it looks at the confirmations of the last ``window``.
    """
    now = now or clock.now()
    confirmed: dict[str, datetime] = {}
    recent = (EmailChange.select(EmailChange.new_email, EmailChange.verified_at)
              .where((EmailChange.verified_at >= now - window) & (EmailChange.verified_at <= now)))
    for address, verified_at in tuples(recent):
        key = email_key(address)
        if key:
            confirmed[key] = max(verified_at, confirmed.get(key, verified_at))
    if not confirmed:
        return 0
    rows = tuples(Bounce.select(Bounce.email_key, Bounce.disabled_at)
                  .where(Bounce.email_key.in_(list(confirmed)) & Bounce.disabled_at.is_null(False)))
    return sum(scoring.clear(key, how="confirmed", now=now) for key, disabled_at in rows
               if confirmed[key] >= disabled_at)
