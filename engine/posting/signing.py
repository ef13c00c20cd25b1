"""The last step of every copy: its personal pieces, then DKIM signatures and the ARC set over the result.

``for_message`` runs once per prepared message (in the database thread: it reads the list domain's keys
and the list's ARC setting); ``CopySigner.copy`` runs per copy and is the only call delivery makes. Nothing
edits a copy after it: the signatures are the last thing added, so a field added later (by anyone) to a
signed name breaks them, as over-signing intends.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from engine.config import Settings
from engine.posting import arc, keys
from engine.posting.dkim import (
    BodyHash,
    Signature,
    canonical_field,
    canonical_fields,
    chosen_indexes,
    fixed_part,
    fold_b64,
    header_names,
    rsa_first,
    sign_bytes,
    split_fields,
)
from engine.posting.keys import PrivateKey
from engine.posting.models import Message
from engine.posting.render import Personal, Prepared

log = logging.getLogger("palanquee.signing")


class CopySigner:
    """Finishes the copies of one prepared message (unsigned when it has no signature and no sealer).

    Every copy of a message has the same header field names: which fields each signature covers, in
    which order, and the folded tags that do not change are worked out once (``Plan``), so that a
    copy costs its personal fields' canonical form, the body hash of its footers, and the RSA operation.
    """

    def __init__(self, prepared: Prepared, signatures: list[Signature], sealer: arc.Sealer | None = None) -> None:
        self.prepared = prepared
        self.signatures = signatures
        self.sealer = sealer if sealer is not None and sealer.usable else None
        self.static_fields = [canonical_field(field) for field in split_fields(prepared.segments[0])]
        separator = prepared.segments[1][:2]
        assert separator == b"\r\n", "the first personal piece is the header slot, before the blank line"
        self.body = BodyHash([prepared.segments[1][2:], *prepared.segments[2:]])
        self._plans: dict[tuple[bytes, ...], list[Plan]] = {}

    @property
    def signs(self) -> bool:
        return bool(self.signatures or self.sealer)

    def copy(self, personal: Personal, *, stuffed: bool = False) -> bytes:
        """One recipient's copy, signed; ``stuffed`` for SMTP DATA (the added fields never start with a dot)."""
        pieces = self.prepared.pieces(personal)
        added = self.signature_fields(pieces) if self.signs else b""
        return self.prepared.join(pieces, stuffed=stuffed, head=added)

    def copies(self, personals: Sequence[Personal], *, stuffed: bool = False) -> list[bytes]:
        """Several recipients' copies, the same bytes as ``copy`` gives each, their RSA operations run back to
        back: the Python work of a copy costs about half again as much right after an RSA operation as after
        other Python work (the operation evicts the interpreter's caches; docs/benchmarks.md), so the
        operations are grouped and the copies' other work done together before and after them."""
        if not self.signatures or self.sealer is not None or len(personals) < 2:
            return [self.copy(personal, stuffed=stuffed) for personal in personals]
        stamp = b"%d" % int(time.time())
        made = [self._draft(self.prepared.pieces(personal), stamp) for personal in personals]
        signed = [[sign_bytes(plan.key, data) for plan, _, data in unsigned] for _, unsigned in made]  # RSA only
        join = self.prepared.join
        return [join(pieces, stuffed=stuffed, head=_added(unsigned, signatures))
                for (pieces, unsigned), signatures in zip(made, signed, strict=True)]

    def _draft(self, pieces: list[bytes], stamp: bytes) -> tuple[list[bytes], list[tuple[Plan, bytes, bytes]]]:
        """A copy's pieces and, for each DKIM signature, its plan, varying tags and the bytes to sign."""
        personal = canonical_fields(pieces[0])
        plans = self._plans.get(tuple([name for name, _ in personal])) or self._plan(personal)
        body_hash = self.body.of(pieces[1:])
        return pieces, [(plan, *plan.unsigned(personal, body_hash, stamp)) for plan in plans]

    def fields(self, header_piece: bytes) -> list[tuple[bytes, bytes]]:
        """A copy's header fields in canonical form, top to bottom, given its personal header piece."""
        return self.static_fields + [canonical_field(field) for field in split_fields(header_piece)]

    def signature_fields(self, pieces: list[bytes], *, now: int | None = None) -> bytes:
        stamp = b"%d" % (int(time.time()) if now is None else now)
        personal = canonical_fields(pieces[0])
        plans = self._plans.get(tuple([name for name, _ in personal])) or self._plan(personal)
        body_hash = self.body.of(pieces[1:])
        added = b""
        for plan in plans:
            added = plan.sign(personal, body_hash, stamp) + added
        if self.sealer is not None:
            fields = [canonical_field(field) for field in split_fields(added)] + self.static_fields + personal
            added = self.sealer.seal(fields, body_hash, now=int(stamp)) + added
        return added

    def _plan(self, personal: list[tuple[bytes, bytes]]) -> list[Plan]:
        fields = self.static_fields + personal
        plans = self._plans[tuple([name for name, _ in personal])] = [
            Plan.of(signature, fields, len(self.static_fields)) for signature in self.signatures]
        return plans


def _added(unsigned: list[tuple[Plan, bytes, bytes]], signatures: list[bytes]) -> bytes:
    """The DKIM-Signature fields of one copy, the first signature's on top (as ``signature_fields`` adds them)."""
    if len(unsigned) == 1:
        plan, tail, _ = unsigned[0]
        return plan.field(tail, signatures[0])
    return b"".join([plan.field(tail, signature) for (plan, tail, _), signature
                     in reversed(list(zip(unsigned, signatures, strict=True)))])


@dataclass(frozen=True)
class Plan:
    """What one signature covers in every copy of a message: canonical static fields as they are, and
    the index of each personal field between them; its tags that never change, folded once."""

    key: PrivateKey
    parts: tuple[bytes | int, ...]
    raw: bytes  # "DKIM-Signature: v=1; a=…; h=…;" folded
    canonical: bytes  # its relaxed form (RFC 6376 §3.4.2)

    @classmethod
    def of(cls, signature: Signature, fields: list[tuple[bytes, bytes]], static: int) -> Plan:
        names = header_names(fields)
        parts: list[bytes | int] = []
        for index in chosen_indexes(tuple(name for name, _ in fields), tuple(names)):
            if index >= static:
                parts.append(index - static)
            elif parts and isinstance(parts[-1], bytes):
                parts[-1] += fields[index][1]
            else:
                parts.append(fields[index][1])
        raw, canonical = fixed_part("DKIM-Signature", signature.fixed_tags(names))
        return cls(signature.key.key, tuple(parts), raw, canonical)

    def sign(self, personal: list[tuple[bytes, bytes]], body_hash: bytes, stamp: bytes) -> bytes:
        """The ``DKIM-Signature`` field of one copy (what ``Signature.sign`` makes, with the work planned)."""
        tail, data = self.unsigned(personal, body_hash, stamp)
        return self.field(tail, sign_bytes(self.key, data))

    def unsigned(self, personal: list[tuple[bytes, bytes]], body_hash: bytes, stamp: bytes) -> tuple[bytes, bytes]:
        """The copy's varying tags and the bytes its signature covers (RFC 6376 §3.7): the covered fields, then
        this field's relaxed form with ``b=`` empty."""
        tail = b"".join((b"t=", stamp, b"; bh=", body_hash, b";"))
        signed = [part if isinstance(part, bytes) else personal[part][1] for part in self.parts]
        signed += (self.canonical, b" ", tail, b" b=")
        return tail, b"".join(signed)

    def field(self, tail: bytes, signature: bytes) -> bytes:
        return b"".join((self.raw, b"\r\n ", tail, b"\r\n b=", fold_b64(signature), b"\r\n"))


_ARC_RESULT = re.compile(r";\s*arc=([a-z]+)", re.I)


def for_message(settings: Settings, message: Message, prepared: Prepared,
                signing_keys: list[keys.SigningKey] | None = None) -> CopySigner:
    """The signer of ``message``'s copies: the list domain's active keys (``signing_keys`` when the caller
    read them already, in its database thread), and ARC when the list seals."""
    if settings.dkim_signing != "engine":
        return CopySigner(prepared, [])
    mailing_list = message.mailing_list
    domain = prepared.info.domain
    found = keys.signing_keys(domain) if signing_keys is None else signing_keys
    if not found:
        log.warning("no DKIM key for %s: copies go out unsigned (palanquee dkim generate %s)", domain, domain)
        return CopySigner(prepared, [])
    sealer = None
    rsa = [key for key in found if key.algorithm == keys.Algorithm.RSA]
    if getattr(mailing_list, "arc_seal", False) and rsa:
        results = message.authentication or f"{settings.authserv_id or domain}; none"
        inbound = _ARC_RESULT.search(results)
        static = [canonical_field(field) for field in split_fields(prepared.segments[0])]
        sealer = arc.Sealer(rsa[0], results, arc.existing_chain(static, inbound.group(1).lower() if inbound else "none"))
    return CopySigner(prepared, rsa_first(found), sealer)
