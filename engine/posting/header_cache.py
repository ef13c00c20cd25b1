"""The email policy rendering parses with: each distinct header value parsed once, and folded once per output policy.

The standard library's ``EmailMessage`` parses a header again at every read (``get_content_type()``,
``get_param()``, ``get_content_charset()``… each parse the Content-Type anew: about 14 parses of it per post at the
intake's render check) and folds every header object again at every ``as_bytes``. Header objects are immutable (a
``str`` with its parse results), so the same ``(name, value)`` gives the same object: ``PARSE_POLICY``'s header
factory keeps the last ``CACHED`` of them, and each remembers its folded text per output policy. Same inputs, same
objects, same bytes (``tests/engine/test_header_cache.py``); a value seen once costs what it cost before.
"""

from __future__ import annotations

from collections import OrderedDict
from email import policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.policy import Policy
from threading import Lock
from typing import Any

CACHED = 4096  # distinct (name, value) pairs kept


class FoldedOnce(BaseHeader):
    """A header object that folds once per policy (``fold`` is a pure function of the header and the policy)."""

    def fold(self, *, policy: Policy) -> str:
        folds: dict[int, tuple[Policy, str]] = self.__dict__.setdefault("_folds", {})
        found = folds.get(id(policy))
        if found is None or found[0] is not policy:
            found = (policy, super().fold(policy=policy))
            folds[id(policy)] = found
        return found[1]


class CachedRegistry(HeaderRegistry):
    """``HeaderRegistry`` whose objects are kept by ``(name, value)`` (rendering runs in several threads: locked)."""

    def __init__(self) -> None:
        super().__init__(base_class=FoldedOnce)
        self._made: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = Lock()

    def __call__(self, name: str, value: str) -> Any:
        key = (name, value)
        with self._lock:
            found = self._made.get(key)
            if found is not None:
                self._made.move_to_end(key)
                return found
        made = super().__call__(name, value)
        with self._lock:
            self._made[key] = made
            if len(self._made) > CACHED:
                self._made.popitem(last=False)
        return made


PARSE_POLICY = policy.default.clone(header_factory=CachedRegistry())
