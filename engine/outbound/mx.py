"""MX hosts of recipient domains, so that a domain hosted by a large provider follows its rule.

Looked up in the background (a small thread pool) through the engine's one resolver
(``engine.resolver.current()``, which tests replace) and cached for a day (a failed lookup for an
hour); until a domain's MX is known its copies follow the default rule. On only with
``PALANQUEE_THROTTLE_MX_LOOKUP`` (the demo and the tests have no DNS).
An internationalised domain is looked up by its A-label (``idn``, RFC 5891).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from engine import resolver
from engine.outbound import idn

log = logging.getLogger("palanquee.delivery")
LIFETIME = 86_400.0
FAILED_LIFETIME = 3_600.0


def resolve(domain: str) -> str | None:
    """The MX host of ``domain`` with the best preference (RFC 5321 §5.1), None when it has none, publishes a
    null MX (RFC 7505: ``0 .``) or is a name IDNA2008 refuses; raises ``resolver.TemporaryDnsError``. Asked by
    the domain's A-label (``idn``): an internationalised domain is looked up as DNS knows it."""
    try:
        name = idn.ascii_domain(domain.rstrip("."))
    except idn.InvalidDomain:
        return None
    best: tuple[int, str] | None = None
    for record in resolver.current().lookup(name, "MX").records:
        preference, _, host = record.strip().partition(" ")
        host = host.strip().rstrip(".").lower()
        if not preference.isdigit() or not host:
            continue
        if best is None or int(preference) < best[0]:
            best = (int(preference), host)
    return best[1] if best else None


class MxCache:
    """MX hosts by domain; ``host()`` never waits on DNS. ``monotonic`` is replaceable for tests."""

    def __init__(self, workers: int = 2, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.known: dict[str, tuple[str | None, float]] = {}
        self.asked: set[str] = set()
        self.monotonic = monotonic
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="palanquee-mx")

    def host(self, domain: str) -> str | None:
        """The cached MX host of ``domain``; when unknown, a lookup starts and None is returned now."""
        found = self.known.get(domain)
        if found is not None and found[1] > self.monotonic():
            return found[0]
        if domain not in self.asked:
            self.asked.add(domain)
            self.pool.submit(self._lookup, domain)
        return found[0] if found is not None else None

    def _lookup(self, domain: str) -> None:
        try:
            host = resolve(domain)
        except resolver.TemporaryDnsError as exc:  # the default rule for an hour, then asked again
            log.warning("MX lookup of %s failed: %s", domain, exc)
            host = None
        except Exception:
            log.warning("MX lookup of %s failed", domain, exc_info=True)
            host = None
        self.known[domain] = (host, self.monotonic() + (LIFETIME if host else FAILED_LIFETIME))
        self.asked.discard(domain)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
