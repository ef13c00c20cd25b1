"""Backoff and quiet logs for an engine loop whose database work keeps failing (a PostgreSQL restart)."""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("palanquee.engine")


class Outage:
    """Backoff and quiet logs while a loop's database work keeps failing (a PostgreSQL restart):
    the first failure is logged with its traceback, the next ones in one line, the recovery once."""

    def __init__(self, what: str) -> None:
        self.what, self.failures = what, 0

    def ok(self) -> None:
        if self.failures:
            log.info("%s works again after %s failure(s)", self.what, self.failures)
        self.failures = 0

    def failed(self) -> float:
        """Log the failure being handled; returns the seconds to wait before trying again."""
        self.failures += 1
        if self.failures == 1:
            log.exception("%s failed; retrying with backoff", self.what)
        else:
            log.warning("%s failed again (%s times): %s", self.what, self.failures, _last_error())
        return float(min(0.25 * 2 ** (self.failures - 1), 10.0))


def _last_error() -> str:
    error = sys.exc_info()[1]
    return " ".join(f"{type(error).__name__}: {error}".split())[:300] if error else ""
