"""Login sessions kept server-side (issue 11, finding 8): logging out ends a session for good, everywhere its
cookie was copied, and a "rester connecté(e)" login ends after ``PALANQUEE_REMEMBER_MAX_AGE`` whatever the
cookie says.

The portal's cookie holds a random key; the database holds its SHA-256 (``AuthSession.key_hash``), so that a
copy of the database gives no usable session. A session also dies when the member's ``auth_version`` moves
(a password set by a reset link, "this was not me").
"""

from __future__ import annotations

import hashlib
import secrets

import peewee as pw

from engine import clock
from engine.config import Settings
from engine.directory.models import AuthSession, Member, StaffScope
from engine.prepared import Prepared, slot


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def open_session(settings: Settings, member: Member, *, remember: bool, ip: str | None = None) -> str:
    """Start a session for ``member``; returns the key the cookie carries (never stored as such)."""
    now = clock.now()
    key = secrets.token_urlsafe(32)
    lifetime = settings.remember_max_age if remember else settings.session_max_age
    AuthSession.create(key_hash=_hash(key), member=member, auth_version=member.auth_version, remember=remember,
                       created_at=now, expires_at=now + lifetime, ip=ip)
    AuthSession.delete().where(AuthSession.expires_at < now).execute()  # what expired is of no use
    return key


def _member_of_session() -> pw.SelectQuery:
    holds_scope = pw.fn.EXISTS(StaffScope.select(StaffScope.id).where(StaffScope.member == Member.id))
    return (Member.select(Member, holds_scope.alias("holds_staff_scope"))
            .join(AuthSession, on=(AuthSession.member == Member.id))
            .where((AuthSession.key_hash == slot("key")) & AuthSession.ended_at.is_null()
                   & (AuthSession.expires_at > slot("now", AuthSession.expires_at))
                   & (AuthSession.auth_version == Member.auth_version)))  # a moved auth_version ends it


# Every logged-in request runs it: compiled once (engine/prepared.py), and it says whether the member holds a
# staff scope (``holds_staff_scope``), which every page's navigation asks (engine/directory/staff.py).
_MEMBER_OF_SESSION: Prepared[Member] = Prepared(_member_of_session)


def member_for(key: str) -> Member | None:
    """The member a session key names, while the session lasts; None otherwise (anonymous)."""
    if not key or len(key) > 100:
        return None
    return _MEMBER_OF_SESSION.first(key=_hash(key), now=clock.now())


def end_session(key: str | None) -> bool:
    """Log out: the session ends now, for every copy of its cookie."""
    if not key:
        return False
    return bool(AuthSession.update(ended_at=clock.now())
                .where((AuthSession.key_hash == _hash(key)) & AuthSession.ended_at.is_null()).execute())


def end_every_session(member: Member) -> int:
    """End every session of ``member`` (the portal does it through ``auth_version``; this is for staff tools)."""
    return int(AuthSession.update(ended_at=clock.now())
               .where((AuthSession.member == member.id) & AuthSession.ended_at.is_null()).execute())
