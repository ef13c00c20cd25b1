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

from engine import clock
from engine.config import Settings
from engine.directory.models import AuthSession, Member


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


def member_for(key: str) -> Member | None:
    """The member a session key names, while the session lasts; None otherwise (anonymous)."""
    if not key or len(key) > 100:
        return None
    found = (AuthSession.select(AuthSession, Member).join(Member)
             .where((AuthSession.key_hash == _hash(key)) & AuthSession.ended_at.is_null()
                    & (AuthSession.expires_at > clock.now()))
             .first())
    if found is None or found.member.auth_version != found.auth_version:
        return None
    return found.member  # type: ignore[no-any-return]


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
