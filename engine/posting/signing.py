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

from engine.config import Settings
from engine.posting import arc, keys
from engine.posting.dkim import BodyHash, Signature, canonical_field, header_names, rsa_first, split_fields
from engine.posting.models import Message
from engine.posting.render import Personal, Prepared

log = logging.getLogger("palanquee.signing")


class CopySigner:
    """Finishes the copies of one prepared message (unsigned when it has no signature and no sealer)."""

    def __init__(self, prepared: Prepared, signatures: list[Signature], sealer: arc.Sealer | None = None) -> None:
        self.prepared = prepared
        self.signatures = signatures
        self.sealer = sealer if sealer is not None and sealer.usable else None
        self.static_fields = [canonical_field(field) for field in split_fields(prepared.segments[0])]
        separator = prepared.segments[1][:2]
        assert separator == b"\r\n", "the first personal piece is the header slot, before the blank line"
        self.body = BodyHash([prepared.segments[1][2:], *prepared.segments[2:]])

    @property
    def signs(self) -> bool:
        return bool(self.signatures or self.sealer)

    def copy(self, personal: Personal, *, stuffed: bool = False) -> bytes:
        """One recipient's copy, signed; ``stuffed`` for SMTP DATA (the added fields never start with a dot)."""
        pieces = self.prepared.pieces(personal)
        added = self.signature_fields(pieces) if self.signs else b""
        return added + self.prepared.join(pieces, stuffed=stuffed)

    def signature_fields(self, pieces: list[bytes], *, now: int | None = None) -> bytes:
        now = int(time.time()) if now is None else now
        fields = self.static_fields + [canonical_field(field) for field in split_fields(pieces[0])]
        body_hash = self.body.of(pieces[1:])
        names = header_names(fields)
        added = b""
        for signature in self.signatures:
            added = signature.sign(fields, names, body_hash, now=now) + added
        if self.sealer is not None:
            fields = [canonical_field(field) for field in split_fields(added)] + fields
            added = self.sealer.seal(fields, body_hash, now=now) + added
        return added


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
