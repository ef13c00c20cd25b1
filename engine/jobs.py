"""Scheduled work of the engine, each a plain function run in the database thread.

A ``Scheduler``'s ``run_due`` is called about once a second by the engine; each job keeps its own interval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import peewee

from engine import clock, heartbeat
from engine.bounces import member as bounce_member
from engine.bounces import stats as delivery_stats
from engine.directory.email_change import apply_due_changes
from engine.lists import counts
from engine.outbound import outbox, wakeup
from engine.posting.expand import accepted_messages, expand
from engine.posting.models import Message, MessageState

log = logging.getLogger("palanquee.jobs")


def expand_accepted(yield_to: Callable[[], bool] | None = None) -> int:
    """Expand every accepted post (new ones, approved ones, and those a crash interrupted); other
    engines are told at once that copies are queued. ``yield_to()`` true after a post: stop there and
    give the database thread back (the intake waits; the engine calls again for the rest)."""
    done = 0
    for message_id in accepted_messages():
        if done and yield_to is not None and yield_to():
            break
        try:
            count = expand(message_id)
        except (peewee.OperationalError, peewee.InterfaceError):
            raise  # the database itself (unreachable, full): the engine backs off and tries again
        except Exception as exc:  # this post only (a value the schema refuses, a bug): never the next ones
            _unexpandable(message_id, exc)
            continue
        if count is not None:
            log.info("message %s expanded to %s recipients", message_id, count,
                     extra={"message_id": message_id, "recipients": count})
            done += 1
            if count:
                wakeup.announce()
    return done


def _unexpandable(message_id: int, error: Exception) -> None:
    """Mark a post whose expansion raised as failed, with the error, so that it stops holding up the posts
    accepted after it (it was retried first, forever, before them) and staff see why on the messages page."""
    reason = " ".join(f"expansion failed: {type(error).__name__}: {error}".split())[:500]
    log.exception("message %s could not be expanded", message_id, extra={"message_id": message_id})
    (Message.update(state=MessageState.FAILED, reason=reason, finished_at=clock.now())
     .where((Message.id == message_id) & (Message.state == MessageState.ACCEPTED)).execute())


def propagate_addresses() -> int:
    """Apply confirmed address changes whose time has come (Mon espace)."""
    return apply_due_changes()


# (name, interval in seconds, job). Expired delivery claims need no job: such rows are due again by
# themselves (see ``outbox.claim_due``).
SCHEDULE: tuple[tuple[str, float, Callable[[], int]], ...] = (
    ("finish-messages", 1.0, outbox.finish_messages),
    ("propagate-addresses", 60.0, propagate_addresses),
    ("recount-lists", 5.0, counts.recount_due),  # the lists page's counts (engine/lists/counts.py)
    ("bounce-confirmations", 60.0, bounce_member.clear_confirmed_addresses),
    ("delivery-stats", 60.0, delivery_stats.settle),
    ("heartbeats", 3600.0, heartbeat.prune),
)


class Scheduler:
    """Runs each job of ``SCHEDULE`` at its interval; one per engine."""

    def __init__(self) -> None:
        self.last_run: dict[str, float] = {}

    def run_due(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for name, interval, job in SCHEDULE:
            if now - self.last_run.get(name, float("-inf")) >= interval:
                self.last_run[name] = now
                job()
