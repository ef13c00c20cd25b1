"""Copies made for the dispatch: one alone, or several of one message at once, their signatures back to back.

The Python work of a copy (its tokens, pieces, SMTP replies, recording) costs about half again as much
right after an RSA operation as after other Python work: the operation evicts the interpreter's code and
data from the core's caches. Building ``together`` copies in a row, signed back to back
(``CopySigner.copies``), then sending them, pays that once per group instead of once per copy
(docs/benchmarks.md, "DKIM and ARC per copy"). Built copies wait in the dispatch's ``ready`` queue; those
never sent are given back like any untried claim, so nothing changes for retries or crash recovery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from engine.outbound.outbox import Claimed, Result
from engine.outbound.smtp import Item

if TYPE_CHECKING:
    from engine.outbound.delivery import PreparedMessage

log = logging.getLogger("palanquee.delivery")
MAX_TOGETHER = 32  # copies built at once
TOGETHER_BYTES = 1 << 20  # within this much of built copies waiting for a connection (a large post: one at a time)


class Builder:
    """Makes the copies of a batch for the dispatch: one alone, or several of a message at once (their
    signatures back to back). A copy that cannot be built gets its result at once (deferred, failed when
    its lifetime ends); a built one is in flight until its reply comes or it is given back."""

    def __init__(self, prepared: dict[int, PreparedMessage], verp_key: bytes, stuffed: bool,
                 add: Callable[[Result], None], in_flight: set[int]) -> None:
        self.prepared, self.verp_key, self.stuffed, self.add, self.in_flight = prepared, verp_key, stuffed, add, in_flight

    def build(self, item: Claimed) -> Item | None:
        try:
            sender, data = self.prepared[item.message_id].envelope_and_copy(item, self.verp_key, stuffed=self.stuffed)
        except Exception as exc:  # this copy only; deferred, failed when its lifetime ends
            log.exception("cannot build the copy of delivery %s", item.id,
                          extra={"delivery_id": item.id, "message_id": item.message_id})
            self.add(Result(item.id, 0, internal("building the copy", exc), local=True))
            return None
        self.in_flight.add(item.id)
        return item.id, sender, item.address, data

    def build_many(self, items: list[Claimed]) -> list[Item | None]:
        """Copies of one message together; each alone when they are of several messages or one fails."""
        message = self.prepared[items[0].message_id]
        if len(items) < 2 or not message.signer.signs or any(i.message_id != items[0].message_id for i in items):
            return [self.build(item) for item in items]
        try:
            made = message.envelopes_and_copies(items, self.verp_key, stuffed=self.stuffed)
        except Exception:  # one of them cannot be built: each alone, so that only that one is deferred
            return [self.build(item) for item in items]
        self.in_flight.update(item.id for item in items)
        return [(item.id, sender, item.address, data) for item, (sender, data) in zip(items, made, strict=True)]


def together(sizes: Iterable[int]) -> int:
    """How many copies to build at once: ``MAX_TOGETHER`` within ``TOGETHER_BYTES`` of the largest copy (``sizes``)."""
    largest = max(sizes, default=0)
    return max(1, min(MAX_TOGETHER, TOGETHER_BYTES // max(1, largest)))


def internal(doing: str, error: BaseException) -> str:
    """A temporary failure of the engine itself (RFC 3463 X.3.0: other or undefined mail system status)."""
    return f"451 4.3.0 Internal error {doing}: {type(error).__name__}: {' '.join(str(error).split())}"[:500]
