"""Scheduled work of the engine, each a plain function run in the database thread.

``run_periodic`` is called about once a second by the engine; each job keeps its own interval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from engine.outbound import outbox
from engine.posting.expand import accepted_messages, expand

log = logging.getLogger("palanquee.jobs")


def expand_accepted() -> int:
    """Expand every accepted post (new ones, approved ones, and those a crash interrupted)."""
    done = 0
    for message_id in accepted_messages():
        count = expand(message_id)
        if count is not None:
            log.info("message %s expanded to %s recipients", message_id, count)
            done += 1
    return done


def propagate_addresses() -> int:
    """Apply confirmed address changes whose time has come (Mon espace)."""
    try:
        from engine.directory.email_change import apply_due_changes
    except ImportError:  # the member space is not installed in this build
        return 0
    return int(apply_due_changes())


# (name, interval in seconds, job). Reclaiming runs at least twice per lease (see Scheduler).
SCHEDULE: tuple[tuple[str, float, Callable[[], int]], ...] = (
    ("finish-messages", 1.0, outbox.finish_messages),
    ("reclaim-stale-claims", 15.0, outbox.reclaim_stale),
    ("propagate-addresses", 60.0, propagate_addresses),
)


class Scheduler:
    """Runs each job of ``SCHEDULE`` at its interval; one per engine."""

    def __init__(self, lease_seconds: float = 300.0) -> None:
        self.intervals = {name: interval for name, interval, _ in SCHEDULE}
        self.intervals["reclaim-stale-claims"] = max(0.5, min(15.0, lease_seconds / 2))
        self.last_run: dict[str, float] = {}

    def run_due(self, now: float | None = None) -> int:
        """Run the jobs that are due; returns how many stale claims came back (0 when none)."""
        now = time.monotonic() if now is None else now
        woke = 0
        for name, _, job in SCHEDULE:
            if now - self.last_run.get(name, float("-inf")) < self.intervals[name]:
                continue
            self.last_run[name] = now
            result = job()
            if name == "reclaim-stale-claims":
                woke += result
        return woke
