"""ARC sealing of list copies (RFC 8617): ARC-Authentication-Results, ARC-Message-Signature, ARC-Seal.

A list is an intermediary: it records what it found when the post came in (the inbound DKIM, SPF and
DMARC results, stored with the message at intake) and seals its own changes, so that a receiver that
trusts the list can see the author authenticated before the list rewrote From and added a footer.
Signed with the list domain's RSA key through OpenSSL, as DKIM is (dkim.py): two RSA operations a copy.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from engine.posting.dkim import canonical_field, header_names, select, sign_field
from engine.posting.keys import SigningKey

ARC_NAMES = (b"arc-authentication-results", b"arc-message-signature", b"arc-seal")
INSTANCE_LIMIT = 50  # RFC 8617 §4.2.1
_INSTANCE = re.compile(rb"(?:^|;)\s*i\s*=\s*(\d+)")


@dataclass(frozen=True)
class Chain:
    """The ARC sets a post arrived with: their canonical fields by instance, and our verdict on them."""

    sets: dict[int, dict[bytes, bytes]]
    validation: str  # none (no chain), pass or fail (RFC 8617 §4.4)

    @property
    def next_instance(self) -> int:
        return max(self.sets, default=0) + 1


def existing_chain(fields: Sequence[tuple[bytes, bytes]], inbound_arc: str) -> Chain:
    """The ARC sets among ``fields`` (canonical); ``inbound_arc`` is the intake's ``arc=`` result."""
    sets: dict[int, dict[bytes, bytes]] = {}
    for name, canonical in fields:
        if name in ARC_NAMES:
            match = _INSTANCE.search(canonical.partition(b":")[2])
            if match:
                sets.setdefault(int(match.group(1)), {})[name] = canonical
    if not sets:
        return Chain({}, "none")
    complete = all(len(found) == 3 for found in sets.values()) and sorted(sets) == list(range(1, len(sets) + 1))
    return Chain(sets, "pass" if complete and inbound_arc == "pass" else "fail")


@dataclass(frozen=True)
class Sealer:
    key: SigningKey
    results: str  # "authserv-id; dkim=pass header.d=…; spf=…; dmarc=…" (the inbound A-R value)
    chain: Chain

    @property
    def usable(self) -> bool:
        return self.chain.next_instance <= INSTANCE_LIMIT

    def seal(self, fields: Sequence[tuple[bytes, bytes]], body_hash: bytes, *, now: int | None = None) -> bytes:
        """The new ARC set (ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results, top to bottom)
        for a copy whose canonical header ``fields`` (DKIM-Signature included) are given top to bottom."""
        instance = self.chain.next_instance
        stamp = str(now if now is not None else int(time.time()))
        aar = f"ARC-Authentication-Results: i={instance}; {self.results}\r\n".encode()
        names = header_names(fields) + ["dkim-signature"] * sum(name == b"dkim-signature" for name, _ in fields)
        ams = sign_field("ARC-Message-Signature", (
            ("i", str(instance)), ("a", "rsa-sha256"), ("c", "relaxed/relaxed"), ("d", self.key.domain),
            ("s", self.key.selector), ("h", ":".join(names))),
            [("t", stamp), ("bh", body_hash.decode("ascii"))], select(fields, names), self.key.key)
        previous = b"" if self.chain.validation == "fail" else b"".join(
            found[name] for _, found in sorted(self.chain.sets.items()) for name in ARC_NAMES)
        sealed = previous + canonical_field(aar)[1] + canonical_field(ams)[1]
        seal = sign_field("ARC-Seal", (
            ("i", str(instance)), ("cv", self.chain.validation), ("a", "rsa-sha256"), ("d", self.key.domain),
            ("s", self.key.selector)), [("t", stamp)], sealed, self.key.key)
        return seal + ams + aar
