"""MX hosts of recipient domains, so that a domain hosted by a large provider follows its rule.

Looked up in the background (a small thread pool, dnspython) and cached with a day's lifetime; until
a domain's MX is known its copies follow the default rule. On only with
``PALANQUEE_THROTTLE_MX_LOOKUP`` (the demo and the tests have no DNS). Tests replace ``resolve`` or the
engine's resolver.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from engine import resolver
from engine.outbound import idn

log = logging.getLogger("palanquee.delivery")
LIFETIME = 86_400.0
FAILED_LIFETIME = 3_600.0


def resolve(domain: str) -> str | None:
    """The MX host of ``domain`` with the best preference (RFC 5321 §5.1), None when it has none.

    Asked through the engine's resolver (``engine.resolver``) by the domain's A-label (``idn``, RFC 5891):
    an internationalised domain is looked up as DNS knows it; one IDNA2008 refuses has no MX."""
    try:
        name = idn.ascii_domain(domain.rstrip("."))
        records = resolver.current().lookup(name, "MX").records
    except (idn.InvalidDomain, resolver.TemporaryDnsError):
        return None
    best: tuple[int, str] | None = None
    for record in records:
        preference, _, host = record.partition(" ")
        if preference.isdigit() and host and (best is None or int(preference) < best[0]):
            best = (int(preference), host.rstrip(".").lower())
    return best[1] if best is not None else None


class MxCache:
    def __init__(self, workers: int = 2) -> None:
        self.known: dict[str, tuple[str | None, float]] = {}
        self.asked: set[str] = set()
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="palanquee-mx")

    def host(self, domain: str) -> str | None:
        """The cached MX host of ``domain``; when unknown, a lookup starts and None is returned now."""
        found = self.known.get(domain)
        if found is not None and found[1] > time.monotonic():
            return found[0]
        if domain not in self.asked:
            self.asked.add(domain)
            self.pool.submit(self._lookup, domain)
        return found[0] if found is not None else None

    def _lookup(self, domain: str) -> None:
        try:
            host = resolve(domain)
        except Exception:
            log.warning("MX lookup of %s failed", domain, exc_info=True)
            host = None
        self.known[domain] = (host, time.monotonic() + (LIFETIME if host else FAILED_LIFETIME))
        self.asked.discard(domain)
