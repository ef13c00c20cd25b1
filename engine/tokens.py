"""Signed tokens for links in mail: one itsdangerous salt per purpose, ``max_age`` on every timed load.

Unsubscribe tokens never expire (a list message may be read weeks later, and a dead link makes
people press "spam" instead); they name the list and the member(s), not the address, so they keep
working after an address change. Every other token is timed by its caller.

Format of an unsubscribe token: itsdangerous ``URLSafeSerializer`` (HMAC-SHA1 over the compact JSON
payload, salt ``palanquee.unsubscribe``) of ``[list_id, [member_id, …]]`` or, for an address that is
no member's, ``[list_id, "address-key"]``. An address shared by more than ``MAX_MEMBERS_NAMED`` members
is named by its key too: a token naming each of 150 members made a List-Unsubscribe line of more than
998 octets (RFC 5322 §2.1.1); leaving by it records an opt-out of the address, which excludes every
member using it. Tokens of either form made before stay valid.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any

from itsdangerous import BadData, SignatureExpired, Signer, TimestampSigner, URLSafeSerializer, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode

from engine import clock
from engine.config import Settings


class Purpose:
    """Salts, one per purpose: a token made for one purpose never loads for another."""

    EMAIL_CONFIRM = "palanquee.email-confirm"
    EMAIL_CANCEL = "palanquee.email-cancel"
    PASSWORD_RESET = "palanquee.password-reset"
    MODERATION = "palanquee.moderation"
    POST_CONFIRM = "palanquee.post-confirm"  # an author confirms a post whose From was not authenticated
    UNSUBSCRIBE = "palanquee.unsubscribe"
    BOUNCE_PROBE = "palanquee.bounce-probe"  # "my address works again", mailed to a disabled address
    UNSUBSCRIBE_FORM = "palanquee.unsubscribe-form"


class BadToken(Exception):
    """The token is malformed, tampered with, or signed with another key or purpose."""


class ExpiredToken(BadToken):
    """The token was genuine but is older than its ``max_age``."""


@dataclass(frozen=True)
class UnsubscribeTarget:
    list_id: int
    member_ids: tuple[int, ...]
    email_key: str | None


class _ClockSigner(TimestampSigner):
    """Timestamps from ``engine.clock`` (the one ``now()`` that tests replace), not ``time.time()``."""

    def get_timestamp(self) -> int:
        return int(clock.now().replace(tzinfo=UTC).timestamp())


class _TimedSerializer(URLSafeTimedSerializer):
    default_signer = _ClockSigner


def dumps(settings: Settings, purpose: str, payload: Any) -> str:
    """A timed, signed token (load it with ``loads`` and a ``max_age``)."""
    return str(_TimedSerializer(settings.secret_key, salt=purpose).dumps(payload))


def loads(settings: Settings, purpose: str, token: str, max_age: timedelta | None) -> Any:
    """The payload of a token made by ``dumps`` for ``purpose``; refuses one older than ``max_age``."""
    serializer = _TimedSerializer(settings.secret_key, salt=purpose)
    seconds = int(max_age.total_seconds()) if max_age is not None else None
    try:
        return serializer.loads(token, max_age=seconds)
    except SignatureExpired as exc:
        raise ExpiredToken(str(exc)) from exc
    except BadData as exc:
        raise BadToken(str(exc)) from exc


class LinkError(Exception):
    """A link mailed to someone that cannot act; ``reason`` says why, for the page shown (invalid, expired…)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def load_link(settings: Settings, purpose: str, token: str, max_age: timedelta, error: type[LinkError],
              ints: tuple[str, ...]) -> dict[str, Any]:
    """The payload of a mailed link's token: a dict whose ``ints`` keys hold integers. Raises
    ``error("expired")`` for a genuine token past ``max_age``, ``error("invalid")`` for anything else."""
    try:
        payload = loads(settings, purpose, token, max_age)
    except ExpiredToken as exc:
        raise error("expired") from exc
    except BadToken as exc:
        raise error("invalid") from exc
    if not isinstance(payload, dict) or not all(type(payload.get(key)) is int for key in ints):
        raise error("invalid")
    return payload


_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def url_base64(data: bytes) -> bytes:
    """itsdangerous' ``base64_encode`` (URL-safe alphabet, no padding) in three C calls instead of seven
    Python-level ones: two of these a list copy (a test compares both)."""
    return binascii.b2a_base64(data, newline=False).translate(_URL_SAFE).rstrip(b"=")


def c_hmac(key: bytes, digestmod: Any, message: bytes = b"") -> Any:
    """A keyed HMAC whose ``copy``, ``update`` and ``digest`` are OpenSSL's own methods (``hmac.HMAC``
    wraps each in Python): the object ``hmac.new`` keeps inside, or that wrapper where there is none."""
    made = hmac.new(key, message, digestmod)
    return getattr(made, "_hmac", None) or made


class _CachedKeySigner(Signer):
    """Derives its key once instead of at every signature (two hashes saved per list copy)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._derived = super().derive_key()

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        return self._derived if secret_key is None else super().derive_key(secret_key)


class _PlainURLSafeSerializer(URLSafeSerializer):
    """The unsubscribe serializer on the delivery hot path: one signer, reused; no zlib.

    Compressing a short payload gains nothing and costs ~26 µs a copy. Tokens stay in
    itsdangerous' URL-safe format and load with a plain ``URLSafeSerializer`` (a test checks it).
    """

    default_signer = _CachedKeySigner

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._signer = super().make_signer(self.salt)
        self._mac: Any = None

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        return self._signer if salt is None or salt == self.salt else super().make_signer(salt)

    def dump_payload(self, obj: Any) -> bytes:
        return base64_encode(json.dumps(obj, separators=(",", ":")).encode("utf-8"))

    def fast_dumps(self, obj: Any) -> str:
        """``dumps`` without its generic layers: the same bytes, about a third of the time."""
        return self.sign_payload(self.dump_payload(obj))

    def sign_payload(self, payload: bytes) -> str:
        """``payload.signature`` as itsdangerous' default HMAC-SHA1 signer makes it (a test compares)."""
        if self._mac is None:
            self._mac = c_hmac(self._signer.derive_key(), hashlib.sha1)
        mac = self._mac.copy()
        mac.update(payload)
        return (payload + b"." + url_base64(mac.digest())).decode("ascii")


@functools.lru_cache(maxsize=8)
def _serializer_for(secret_key: str) -> _PlainURLSafeSerializer:
    return _PlainURLSafeSerializer(secret_key, salt=Purpose.UNSUBSCRIBE)


def _unsubscribe_serializer(settings: Settings) -> _PlainURLSafeSerializer:
    return _serializer_for(settings.secret_key)


MAX_MEMBERS_NAMED = 10  # past it, a shared address is named by its key: the token stays under ~400 characters


def make_unsubscribe_token(settings: Settings, list_id: int, member_ids: tuple[int, ...] | list[int] = (),
                           email_key: str | None = None) -> str:
    """Token naming a list and who leaves it: the member(s) sharing one copy, or a bare address.

    Given both, the members are named, unless there are more than ``MAX_MEMBERS_NAMED`` of them: then the
    address ``email_key`` they share is (a bounded token, for a header line within 998 octets).
    """
    many = len(member_ids) > MAX_MEMBERS_NAMED and bool(email_key)
    who: Any = sorted(member_ids) if member_ids and not many else email_key
    if not who:
        raise ValueError("an unsubscribe token names at least one member or an address")
    serializer = _serializer_for(settings.secret_key)
    if isinstance(who, list):  # the hot path (a member's copy): JSON written by hand, as json.dumps would
        return serializer.sign_payload(url_base64(f"[{list_id},[{','.join(map(str, who))}]]".encode()))
    return serializer.fast_dumps([list_id, who])


def load_unsubscribe_token(settings: Settings, token: str) -> UnsubscribeTarget:
    try:
        list_id, who = _unsubscribe_serializer(settings).loads(token)
    except (BadData, ValueError, TypeError) as exc:
        raise BadToken(str(exc)) from exc
    if not isinstance(list_id, int):
        raise BadToken("malformed unsubscribe token")
    if isinstance(who, list) and who and all(isinstance(i, int) for i in who):
        return UnsubscribeTarget(list_id, tuple(who), None)
    if isinstance(who, str) and "@" in who:
        return UnsubscribeTarget(list_id, (), who)
    raise BadToken("malformed unsubscribe token")


def unsubscribe_url(settings: Settings, list_id: int, member_ids: tuple[int, ...] | list[int] = (),
                    email_key: str | None = None) -> str:
    """The personal one-click link (``GET`` shows a confirm page, ``POST`` unsubscribes)."""
    return f"{settings.base_url}/u/{make_unsubscribe_token(settings, list_id, member_ids, email_key)}"


# --- the buttons of the public unsubscribe page (no session, no cookie) ---

UNSUBSCRIBE_FORM_MAX_AGE = timedelta(days=1)


def _link_digest(link_token: str) -> str:
    return hashlib.sha256(link_token.encode("utf-8")).hexdigest()[:24]


def make_unsubscribe_form_token(settings: Settings, action: str, link_token: str) -> str:
    """The hidden field of the unsubscribe page's buttons: ties a button (``leave``, ``rejoin``) to the page
    just shown for this link, without a session cookie (the link's own token is the proof of who leaves)."""
    return dumps(settings, Purpose.UNSUBSCRIBE_FORM, [action, _link_digest(link_token)])


def unsubscribe_form_token_ok(settings: Settings, action: str, link_token: str, value: str | None) -> bool:
    """Whether ``value`` was made for this action on this link less than a day ago."""
    if not value:
        return False
    try:
        payload = loads(settings, Purpose.UNSUBSCRIBE_FORM, value, UNSUBSCRIBE_FORM_MAX_AGE)
    except BadToken:
        return False
    return bool(payload == [action, _link_digest(link_token)])
