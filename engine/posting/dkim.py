"""DKIM signing of rendered copies through OpenSSL (``cryptography``): RFC 6376, relaxed/relaxed, no ``l=``.

A copy is the prepared message's static segments joined with its personal pieces (render.py). What
can be done once per message is done once: the header fields of the static part are split and
canonicalised, the static body segments canonicalised and the body hash run over everything before
the first footer; per copy only the personal pieces are canonicalised, the hash state copied and fed
the rest, and the RSA operation (the real cost: about 0.8 ms) made. dkimpy verifies in the tests.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from engine.posting.keys import Algorithm, PrivateKey, SigningKey

# RFC 6376 §5.4.1 (dkimpy's SHOULD) plus List-Unsubscribe-Post, which RFC 8058 §4 wants covered.
SIGNED = (
    "from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc", "mime-version", "content-type",
    "content-transfer-encoding", "content-id", "content-description", "in-reply-to", "references",
    "list-id", "list-help", "list-unsubscribe", "list-unsubscribe-post", "list-subscribe", "list-post",
    "list-owner", "list-archive", "x-original-from",
)
# RFC 6376 §5.4.2 / §8.15: named once more than they occur, so that a field added later breaks the signature.
OVERSIGNED = (
    "from", "to", "cc", "subject", "date", "message-id", "reply-to", "sender", "mime-version", "content-type",
    "content-transfer-encoding", "list-id", "list-unsubscribe", "list-unsubscribe-post", "list-post",
    "list-help", "list-owner",
)

_WSP_RUN = re.compile(rb"[ \t]+")
_WSP_EOL = re.compile(rb" \r\n")
_FIELD_START = re.compile(rb"\r\n(?![ \t])")


def split_fields(block: bytes) -> list[bytes]:
    """Header fields of a header block (each with its CRLF, continuation lines included)."""
    block = block.rstrip(b"\r\n")
    if not block:
        return []
    return [field + b"\r\n" for field in _FIELD_START.split(block)]


def canonical_fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """``canonical_field`` of each field of a header block, in one pass (a copy's personal fields)."""
    block = block.rstrip(b"\r\n")
    if not block:
        return []
    found: list[tuple[bytes, bytes]] = []
    for field in _FIELD_START.split(block):
        name, _, value = field.partition(b":")
        value = value.replace(b"\r\n", b"")
        if b"\t" in value or b"  " in value:
            value = _WSP_RUN.sub(b" ", value)
        lower = name.strip(b" \t").lower()
        found.append((lower, b"".join((lower, b":", value.strip(b" "), b"\r\n"))))
    return found


def canonical_field(field: bytes) -> tuple[bytes, bytes]:
    """(lower-case name, relaxed form ``name:value\\r\\n``), RFC 6376 §3.4.2."""
    name, _, value = field.partition(b":")
    value = value.replace(b"\r\n", b"")
    if b"\t" in value or b"  " in value:  # a scan in C; the regex only when there is a run to compress
        value = _WSP_RUN.sub(b" ", value)
    value = value.strip(b" ")
    lower = name.strip(b" \t").lower()
    return lower, lower + b":" + value + b"\r\n"


def canonical_lines(data: bytes) -> bytes:
    """Relaxed body canonicalisation of whole lines (RFC 6376 §3.4.4 a), trailing empty lines kept.
    Per copy it runs on the footers only, which mostly have nothing to change: scans in C decide that."""
    if b"\t" in data or b"  " in data:
        data = _WSP_RUN.sub(b" ", data)
    return _WSP_EOL.sub(b"\r\n", data) if b" \r\n" in data else data


def finish_body(canonical: bytes) -> bytes:
    """RFC 6376 §3.4.4 b: no empty lines at the end; a non-empty body ends with CRLF."""
    stripped = canonical.rstrip(b"\r\n")
    return stripped + b"\r\n" if stripped else b""


class BodyHash:
    """The body hash of every copy of one prepared message, with the static work done once.

    ``segments`` are the body's static segments (the first one starting at the body) between which
    the personal pieces go. Each piece starts and ends at a line boundary (render.py writes footers
    as whole quoted-printable lines), so each canonicalises alone; otherwise every copy's body is
    canonicalised whole (correct, slower).
    """

    def __init__(self, segments: Sequence[bytes]) -> None:
        self.segments = list(segments)
        aligned = all(segment.endswith(b"\r\n") or not segment for segment in self.segments[:-1])
        last = canonical_lines(self.segments[-1])
        self.incremental = aligned and bool(finish_body(last))
        self.static = [canonical_lines(segment) for segment in self.segments[1:-1]] + [finish_body(last)]
        self.prefix = hashlib.sha256(canonical_lines(self.segments[0]))
        self.shared: bytes | None = None
        if len(self.segments) == 1:  # no personal piece in the body: one hash for every copy
            self.shared = base64.b64encode(hashlib.sha256(finish_body(last)).digest())

    def of(self, pieces: Sequence[bytes]) -> bytes:
        """``bh=`` (base64) of the body made of the segments with ``pieces`` between them."""
        if self.shared is not None:
            return self.shared
        if self.incremental:
            digest = self.prefix.copy()
            update = digest.update
            for piece, static in zip(pieces, self.static, strict=True):
                if piece[-2:] != b"\r\n":  # not at a line boundary: the whole body, below
                    break
                update(canonical_lines(piece))
                update(static)
            else:
                return binascii.b2a_base64(digest.digest(), newline=False)
        whole = b"".join(part for pair in zip(self.segments, [*pieces, b""], strict=True) for part in pair)
        return base64.b64encode(hashlib.sha256(finish_body(canonical_lines(whole))).digest())


_PKCS1, _SHA256 = padding.PKCS1v15(), hashes.SHA256()  # immutable: made once, not at every signature
_KINDS: dict[type, bool] = {}  # key class -> RSA (else Ed25519): an isinstance against the ABCs costs ~3 µs a call


def sign_bytes(key: PrivateKey, data: bytes) -> bytes:
    """The signature over canonical ``data``: RSASSA-PKCS1-v1_5 SHA-256, or Ed25519 over SHA-256 (RFC 8463 §3)."""
    is_rsa = _KINDS.get(type(key))
    if is_rsa is None:
        is_rsa = _KINDS[type(key)] = _is_rsa(key)
    if is_rsa:
        return cast(rsa.RSAPrivateKey, key).sign(data, _PKCS1, _SHA256)
    return cast(ed25519.Ed25519PrivateKey, key).sign(hashlib.sha256(data).digest())


def _is_rsa(key: PrivateKey) -> bool:
    if isinstance(key, rsa.RSAPrivateKey):
        return True
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return False
    raise TypeError("unsupported key")


def fold_tags(name: str, tags: Sequence[tuple[str, str]]) -> bytes:
    """``Name: t=v; …;`` folded below 78 columns (between tags and after the colons of ``h=``)."""
    tokens: list[tuple[str, str]] = []
    for tag, value in tags:
        if tag == "h":  # RFC 6376 §3.5: FWS is allowed around the colons of h=
            names = value.split(":")
            tokens += [(" " if i == 0 else "", ("h=" if i == 0 else "") + n + (":" if i < len(names) - 1 else ";"))
                       for i, n in enumerate(names)]
        else:
            tokens.append((" ", f"{tag}={value};"))
    lines = [f"{name}:"]
    for separator, token in tokens:
        if len(lines[-1]) + len(separator) + len(token) > 76 and lines[-1].strip(" ") != f"{name}:":
            lines.append(" " + token)
        else:
            lines[-1] += separator + token
    return "\r\n".join(lines).encode("ascii")


@functools.lru_cache(maxsize=256)
def fixed_part(name: str, fixed: tuple[tuple[str, str], ...]) -> tuple[bytes, bytes]:
    """The folded tags that are the same for every copy of a message, and their relaxed form."""
    raw = fold_tags(name, fixed)
    return raw, canonical_field(raw)[1][:-2]


def fold_b64(signature: bytes) -> bytes:
    """``b=`` in lines of 72 characters (a 2048-bit signature: 344 characters, five lines)."""
    text = binascii.b2a_base64(signature, newline=False)
    return b"\r\n ".join([text[i:i + 72] for i in range(0, len(text), 72)])


def header_names(fields: Sequence[tuple[bytes, bytes]], signed: Sequence[str] = SIGNED,
                 oversigned: Sequence[str] = OVERSIGNED) -> list[str]:
    """The ``h=`` list: each signed field present, then each over-signed name once more (RFC 6376 §5.4.2:
    a name listed more often than it occurs stands for an absent field, which must stay absent)."""
    return list(_names(tuple(name for name, _ in fields), tuple(signed), tuple(oversigned)))


@functools.lru_cache(maxsize=256)
def _names(present: tuple[bytes, ...], signed: tuple[str, ...], oversigned: tuple[str, ...]) -> tuple[str, ...]:
    names = [name.decode("ascii", "replace") for name in present]
    return tuple([name for name in names if name in signed] + list(oversigned))


def select(fields: Sequence[tuple[bytes, bytes]], names: Sequence[str]) -> bytes:
    """The canonical fields named in ``h=``, each the last not yet used (RFC 6376 §5.4.2)."""
    return b"".join(fields[index][1] for index in chosen_indexes(tuple(name for name, _ in fields), tuple(names)))


@functools.lru_cache(maxsize=256)
def chosen_indexes(present: tuple[bytes, ...], names: tuple[str, ...]) -> tuple[int, ...]:
    """Which fields ``names`` select: every copy of a message has the same field names, so this runs once."""
    used: dict[str, int] = {}
    chosen: list[int] = []
    for name in names:
        index = used.get(name, len(present))
        key = name.encode("ascii")
        while index > 0:
            index -= 1
            if present[index] == key:
                chosen.append(index)
                break
        used[name] = index
    return tuple(chosen)


@dataclass(frozen=True)
class Signature:
    """One signing identity: a key of the list domain."""

    key: SigningKey

    def fixed_tags(self, names: Sequence[str]) -> tuple[tuple[str, str], ...]:
        """The tags that are the same for every copy of a message."""
        return (("v", "1"), ("a", self.key.algorithm), ("c", "relaxed/relaxed"), ("d", self.key.domain),
                ("s", self.key.selector), ("h", ":".join(names)))

    def sign(self, fields: Sequence[tuple[bytes, bytes]], names: Sequence[str], body_hash: bytes,
             *, now: int | None = None) -> bytes:
        """A complete ``DKIM-Signature`` field (CRLF-terminated) over ``fields`` (canonical, top to bottom)."""
        fixed = self.fixed_tags(names)
        stamp = str(now if now is not None else int(time.time()))
        return sign_field("DKIM-Signature", fixed, [("t", stamp), ("bh", body_hash.decode("ascii"))],
                          select(fields, names), self.key.key)


def sign_field(name: str, fixed: tuple[tuple[str, str], ...], varying: Sequence[tuple[str, str]], signed: bytes,
               key: PrivateKey) -> bytes:
    """A signature header field: ``fixed`` tags (folded once per message), then ``varying`` ones and ``b=``.
    The signature covers ``signed`` (canonical fields) then the field itself with ``b=`` empty and without
    its CRLF (RFC 6376 §3.7): the relaxed form of the raw text, which is built beside it."""
    raw, canonical = fixed_part(name, fixed)
    tail = " ".join(f"{tag}={value};" for tag, value in varying).encode("ascii")
    unsigned = raw + b"\r\n " + tail + b"\r\n b=" if tail else raw + b"\r\n b="
    own = canonical + b" " + tail + b" b=" if tail else canonical + b" b="
    return unsigned + fold_b64(sign_bytes(key, signed + own)) + b"\r\n"


def rsa_first(keys: Sequence[SigningKey]) -> list[Signature]:
    return [Signature(key) for key in sorted(keys, key=lambda k: k.algorithm != Algorithm.RSA)]
