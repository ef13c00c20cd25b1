"""VERP return paths: ``LIST-bounces+TOKEN@domain`` (``bounces+TOKEN@domain`` for long list addresses), the
token naming one delivery.

The token is ``<delivery id in hex>.<10 hex digits of HMAC-SHA256>``, all lower case,
because some MTAs lowercase local parts; it is short (RFC 5321 §4.5.3.1.1 caps a local part at 64
octets) and signed, so a forged bounce cannot disable a chosen member.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from typing import Any

from engine import tokens
from engine.config import Settings

_SALT = b"palanquee.verp:"


@functools.lru_cache(maxsize=8)
def _mac_base(key: bytes) -> Any:
    return tokens.c_hmac(key, hashlib.sha256, _SALT)  # OpenSSL's object: copied once a copy


def _mac(key: bytes, delivery_id: int) -> str:
    mac = _mac_base(key).copy()
    mac.update(str(delivery_id).encode("ascii"))
    hexdigest: str = mac.hexdigest()
    return hexdigest[:10]


def signing_key(settings: Settings) -> bytes:
    return hashlib.sha256(_SALT + settings.secret_key.encode()).digest()


def make_token(key: bytes, delivery_id: int) -> str:
    """Token for ``delivery_id`` (``key`` from ``signing_key``, computed once per process)."""
    return f"{delivery_id:x}.{_mac(key, delivery_id)}"


def read_token(key: bytes, token: str) -> int | None:
    """The delivery id a token names, or None when it is malformed or its signature is wrong."""
    ident, dot, mac = token.lower().partition(".")
    if not dot or not ident or len(mac) != 10 or len(ident) > 16:
        return None
    try:
        delivery_id = int(ident, 16)
    except ValueError:
        return None
    if not hmac.compare_digest(mac, _mac(key, delivery_id)):
        return None
    return delivery_id


MAX_LOCAL_PART = 64  # octets, RFC 5321 §4.5.3.1.1
SHARED_LOCAL_PART = "bounces"  # cannot be a list's own return path: those end with "-bounces"


def return_path(local_part: str, domain: str, token: str) -> str:
    """The envelope sender of one copy: ``LIST-bounces+TOKEN@domain``, or ``bounces+TOKEN@domain`` when the
    list's own would pass 64 octets (a long list address: the token names the delivery, hence the list)."""
    own = f"{local_part}-bounces+{token}"
    if len(own.encode()) <= MAX_LOCAL_PART:
        return f"{own}@{domain}"
    return f"{SHARED_LOCAL_PART}+{token}@{domain}"
