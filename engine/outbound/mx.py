"""MX hosts of recipient domains, so that a domain hosted by a large provider follows its rule.

Looked up in the background (a small thread pool, dnspython) and cached with a day's lifetime; until
a domain's MX is known its copies follow the default rule. On only with
``PALANQUEE_THROTTLE_MX_LOOKUP`` (the demo and the tests have no DNS). Tests replace ``resolve``.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("palanquee.delivery")
LIFETIME = 86_400.0
FAILED_LIFETIME = 3_600.0


def resolve(domain: str) -> str | None:
    """The MX host of ``domain`` with the best preference (RFC 5321 §5.1), None when it has none."""
    import dns.resolver

    try:
        answer = dns.resolver.resolve(domain, "MX", lifetime=5.0)
    except Exception:
        return None
    records = sorted(answer, key=lambda record: record.preference)
    return str(records[0].exchange).rstrip(".").lower() if records else None


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
