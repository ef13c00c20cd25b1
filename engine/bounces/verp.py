"""VERP return paths: ``LIST-bounces+TOKEN@domain``, the token naming one delivery.

The token is ``<delivery id in base32>.<8 base32 characters of HMAC-SHA256>``, all lower case,
because some MTAs lowercase local parts; it is short (RFC 5321 §4.5.3.1.1 caps a local part at 64
octets) and signed, so a forged bounce cannot disable a chosen member.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from engine.config import Settings

_SALT = b"palanquee.verp:"


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _mac(key: bytes, delivery_id: int) -> str:
    return _b32(hmac.new(key, _SALT + str(delivery_id).encode(), hashlib.sha256).digest()[:5])


def signing_key(settings: Settings) -> bytes:
    return hashlib.sha256(_SALT + settings.secret_key.encode()).digest()


def make_token(key: bytes, delivery_id: int) -> str:
    """Token for ``delivery_id`` (``key`` from ``signing_key``, computed once per process)."""
    ident = delivery_id.to_bytes(8, "big").lstrip(b"\0") or b"\0"
    return f"{_b32(ident)}.{_mac(key, delivery_id)}"


def read_token(key: bytes, token: str) -> int | None:
    """The delivery id a token names, or None when it is malformed or its signature is wrong."""
    ident, dot, mac = token.lower().partition(".")
    if not dot or not ident or len(mac) != 8:
        return None
    try:
        raw = base64.b32decode(ident.upper() + "=" * (-len(ident) % 8))
    except ValueError:
        return None
    delivery_id = int.from_bytes(raw, "big")
    if not hmac.compare_digest(mac, _mac(key, delivery_id)):
        return None
    return delivery_id


def return_path(local_part: str, domain: str, token: str) -> str:
    """The envelope sender of one copy."""
    return f"{local_part}-bounces+{token}@{domain}"
