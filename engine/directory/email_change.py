"""The path of an address change: request (the pencil), confirmation by the new address, cancellation, and the
scheduled job that makes a confirmed address effective at ``confirmation + PALANQUEE_PROPAGATION_DELAY``.

Until ``apply_due_changes`` swaps it, ``Member.email`` (the only address the list engine uses) is unchanged.
Links are itsdangerous tokens naming the change and the member; a change's state makes them single-use.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from email_validator import EmailNotValidError, validate_email

from engine import audit, clock, notices, tokens
from engine.config import Settings
from engine.db import database
from engine.directory import throttle
from engine.directory.models import EmailChange, Member, email_key
from engine.directory.wording import duration_words
from engine.lists.models import Subscription
from engine.prepared import Prepared, slot


class InvalidAddress(ValueError):
    """Not a valid e-mail address."""


class SameAddress(ValueError):
    """The new address is the one already in use."""


class TooManyRequests(Exception):
    """A limit on confirmation mails is reached (per member, per new address, per client address, per day)."""


class ChangeLinkError(tokens.LinkError):
    """A confirmation or cancel link that cannot act; ``reason`` says why for the page shown."""

    REASONS = ("invalid", "expired", "used", "cancelled", "applied", "other_member")

    def __init__(self, reason: str, change: EmailChange | None = None) -> None:
        super().__init__(reason)
        self.change = change


def normalise_address(raw: str) -> str:
    """Syntax check and normalisation (email-validator); no DNS: the confirmation mail is the real test."""
    try:
        result = validate_email((raw or "").strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from exc
    if len(result.normalized) > 254:
        raise InvalidAddress("longer than 254 characters")
    return str(result.normalized)


def _is_live(change: EmailChange, settings: Settings, now: datetime) -> bool:
    if change.cancelled_at is not None or change.applied_at is not None:
        return False
    return change.verified_at is not None or change.requested_at + settings.email_change_max_age >= now


_OPEN_CHANGES: Prepared[EmailChange] = Prepared(lambda: (
    EmailChange.select().where((EmailChange.member == slot("member")) & EmailChange.cancelled_at.is_null()
                               & EmailChange.applied_at.is_null())
    .order_by(EmailChange.requested_at.desc(), EmailChange.id.desc())))


def pending_change(settings: Settings, member: Member) -> EmailChange | None:
    """The member's change in progress: awaiting confirmation (link still valid) or confirmed, not yet applied."""
    now = clock.now()
    return next((c for c in _OPEN_CHANGES.execute(member=member.id) if _is_live(c, settings, now)), None)


def confirm_url(settings: Settings, change: EmailChange) -> str:
    token = tokens.dumps(settings, tokens.Purpose.EMAIL_CONFIRM, {"c": change.id, "m": change.member_id})
    return f"{settings.base_url}/espace/adresse/confirmer/{token}"


def cancel_url(settings: Settings, change: EmailChange) -> str:
    token = tokens.dumps(settings, tokens.Purpose.EMAIL_CANCEL, {"c": change.id, "m": change.member_id})
    return f"{settings.base_url}/espace/adresse/annuler/{token}"


def request_change(settings: Settings, member: Member, raw_address: str, *, ip: str | None = None,
                   language: str | None = None) -> EmailChange:
    """Record a requested address and mail the confirmation link (new address) and the notice (old address).

    Nothing changes for the lists until the link is confirmed. A new request replaces one in progress.
    ``TooManyRequests`` past a limit: the pencil must not become a way to mail anyone, at will (issue 11,
    finding 11; DELIVERABILITY.md §9.4).
    """
    new = normalise_address(raw_address)
    if email_key(new) == member.email_key:
        raise SameAddress(new)
    if not throttle.attempt([
            (throttle.ADDRESS_CHANGE_MEMBER, throttle.ADDRESS_CHANGE_MEMBER.key(member.id)),
            (throttle.ADDRESS_CHANGE_TARGET, throttle.ADDRESS_CHANGE_TARGET.key(email_key(new))),
            (throttle.ADDRESS_CHANGE_ADDRESS, throttle.ADDRESS_CHANGE_ADDRESS.key(throttle.source(ip)))]).allowed:
        raise TooManyRequests(new)
    now = clock.now()
    with database.atomic():
        previous = pending_change(settings, member)
        if previous is not None:
            _cancel(previous, now, actor=member, how="superseded", ip=ip)
        change = EmailChange.create(member=member, old_email=member.email, new_email=new, requested_at=now,
                                    requested_ip=ip)
        audit.record("email_change.requested", change, actor=member, ip=ip, old=member.email, new=new)
    language = member.language or language or settings.default_language
    delay = duration_words(settings.propagation_delay, language)
    validity = duration_words(settings.email_change_max_age, language)
    notices.send_notice(settings, "email_confirm", new, language=language, member=member, new_email=new,
                        link=confirm_url(settings, change), delay=delay, validity=validity,
                        immediate=settings.propagation_delay.total_seconds() <= 0)
    if member.email:
        notices.send_notice(settings, "email_change_notice", member.email, language=language, member=member,
                            new_email=new, link=cancel_url(settings, change), delay=delay,
                            immediate=settings.propagation_delay.total_seconds() <= 0)
    return change


def _load(settings: Settings, purpose: str, token: str, max_age: timedelta) -> EmailChange:
    payload = tokens.load_link(settings, purpose, token, max_age, ChangeLinkError, ints=("c", "m"))
    change = EmailChange.get_or_none((EmailChange.id == payload["c"]) & (EmailChange.member == payload.get("m")))
    if change is None:
        raise ChangeLinkError("invalid")
    return change


def _check_open(change: EmailChange, member: Member | None) -> None:
    if member is not None and member.id != change.member_id:
        raise ChangeLinkError("other_member", change)  # logged in as someone else: act for nobody
    if change.cancelled_at is not None:
        raise ChangeLinkError("cancelled", change)
    if change.applied_at is not None and change.source == "member":
        raise ChangeLinkError("applied", change)  # an imposed change is applied at once: its link restores


def change_to_confirm(settings: Settings, token: str, member: Member | None = None) -> EmailChange:
    """The change a confirmation link names, if it can still be confirmed (for the page; changes nothing)."""
    change = _load(settings, tokens.Purpose.EMAIL_CONFIRM, token, settings.email_change_max_age)
    _check_open(change, member)
    if change.verified_at is not None:
        raise ChangeLinkError("used", change)
    if change.requested_at + settings.email_change_max_age < clock.now():
        raise ChangeLinkError("expired", change)
    return change


def confirm(settings: Settings, token: str, *, member: Member | None = None, ip: str | None = None) -> EmailChange:
    """Confirm the new address: effective at now + the propagation delay (applied at once when it is zero)."""
    change = change_to_confirm(settings, token, member)
    now = clock.now()
    effective = now + settings.propagation_delay
    done = (EmailChange.update(verified_at=now, effective_at=effective)
            .where((EmailChange.id == change.id) & EmailChange.verified_at.is_null()
                   & EmailChange.cancelled_at.is_null()).execute())
    if not done:
        raise ChangeLinkError("used", change)
    audit.record("email_change.confirmed", change, actor=change.member, ip=ip, effective_at=effective)
    if effective <= now:
        apply_due_changes(now)
    return EmailChange.get_by_id(change.id)


def change_to_cancel(settings: Settings, token: str, member: Member | None = None) -> EmailChange:
    """The change a cancel link names, if it can still be cancelled (for the page; changes nothing)."""
    # The cancel link lives as long as a change can stay pending: unconfirmed, then the delay.
    max_age = settings.email_change_max_age + settings.propagation_delay
    change = _load(settings, tokens.Purpose.EMAIL_CANCEL, token, max_age)
    _check_open(change, member)
    return change


def cancel_with_token(settings: Settings, token: str, *, member: Member | None = None,
                      ip: str | None = None) -> EmailChange:
    """"This was not me": cancel the change from the old address, and sign the member out everywhere.

    A change imposed by staff or the import (already applied) is undone: the old address is restored.
    """
    change = change_to_cancel(settings, token, member)
    undone = _restore(change, clock.now(), ip) if change.source != "member" else \
        _cancel(change, clock.now(), actor=None, how="old-address", ip=ip)
    if not undone:
        raise ChangeLinkError("applied", change)
    Member.update(auth_version=Member.auth_version + 1).where(Member.id == change.member_id).execute()
    return EmailChange.get_by_id(change.id)


def cancel_pending(settings: Settings, member: Member, *, ip: str | None = None) -> EmailChange | None:
    """Cancel the member's own change in progress from Mon espace; None when there is none."""
    change = pending_change(settings, member)
    if change is None or not _cancel(change, clock.now(), actor=member, how="espace", ip=ip):
        return None
    return EmailChange.get_by_id(change.id)


def _cancel(change: EmailChange, now: datetime, *, actor: Member | None, how: str, ip: str | None) -> bool:
    done = (EmailChange.update(cancelled_at=now)
            .where((EmailChange.id == change.id) & EmailChange.cancelled_at.is_null()
                   & EmailChange.applied_at.is_null()).execute())
    if done:
        audit.record("email_change.cancelled", change, actor=actor, actor_label="" if actor else how, ip=ip,
                     how=how, new=change.new_email)
    return bool(done)


def _restore(change: EmailChange, now: datetime, ip: str | None) -> bool:
    """Undo an imposed change while the member still has its address; the restored address counts as set by
    the member, so that the next import keeps it (docs/import.md)."""
    with database.atomic():
        member = Member.get_by_id(change.member_id)
        if member.email_key != email_key(change.new_email or None):
            return False  # changed again since: nothing to restore
        done = (EmailChange.update(cancelled_at=now)
                .where((EmailChange.id == change.id) & EmailChange.cancelled_at.is_null()).execute())
        if not done:
            return False
        member.set_email(change.old_email)
        member.email_set_by_member_at = now
        member.save(only=[Member.email, Member.email_key, Member.email_set_by_member_at])
        audit.record("email_change.restored", change, actor_label="old-address", ip=ip, how=change.source,
                     restored=change.old_email, removed=change.new_email)
    return True


def apply_due_changes(now: datetime | None = None) -> int:
    """Make every confirmed, uncancelled change whose ``effective_at`` has come the member's address.

    Returns how many were applied. Idempotent and safe with several engine processes: each change is
    claimed by one conditional UPDATE inside its own transaction.
    """
    now = now or clock.now()
    due = (EmailChange.select(EmailChange.id)
           .where(EmailChange.verified_at.is_null(False) & EmailChange.cancelled_at.is_null()
                  & EmailChange.applied_at.is_null() & (EmailChange.effective_at <= now))
           .order_by(EmailChange.effective_at, EmailChange.id))
    return sum(1 for (change_id,) in list(due.tuples().iterator()) if _apply(change_id, now))


def _apply(change_id: int, now: datetime) -> bool:
    with database.atomic():
        claimed = (EmailChange.update(applied_at=now)
                   .where((EmailChange.id == change_id) & EmailChange.applied_at.is_null()
                          & EmailChange.cancelled_at.is_null()).execute())
        if not claimed:
            return False
        change = EmailChange.get_by_id(change_id)
        member = Member.get_by_id(change.member_id)
        old_key = member.email_key
        member.set_email(change.new_email)
        member.email_set_by_member_at = now
        member.save(only=[Member.email, Member.email_key, Member.email_set_by_member_at])
        moved = _move_subscriptions(member, old_key)
        audit.record("email_change.applied", change, actor_label="system", old=change.old_email,
                     new=change.new_email, subscriptions_moved=moved)
    return True


def _move_subscriptions(member: Member, old_key: str | None) -> int:
    """Static subscriptions linked to the member follow their address (where the list lacks the new one)."""
    if old_key is None or member.email is None or member.email_key is None:
        return 0
    moved = 0
    linked = Subscription.select().where((Subscription.member == member.id) & (Subscription.email_key == old_key))
    for subscription in list(linked):
        taken = Subscription.select().where((Subscription.mailing_list == subscription.mailing_list_id)
                                            & (Subscription.email_key == member.email_key)).exists()
        if taken:
            continue  # the list already has the new address; the old row stays for staff to review
        subscription.email, subscription.email_key = member.email, member.email_key
        subscription.save(only=[Subscription.email, Subscription.email_key])
        moved += 1
    return moved

