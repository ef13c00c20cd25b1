"""Prometheus metrics of one engine process, served at ``/metrics`` on ``PALANQUEE_METRICS_LISTEN``.

Two kinds. Counters of what this process did (copies recorded by destination group and outcome,
the intake's replies), kept in memory: Prometheus sums them over processes. Figures of the shared
queue, read from the database when Prometheus scrapes (so every engine shows the same): open copies
by state and how long the earliest has been due, the progress of each message being sent, live
engines, and the bounce and opt-out totals. Each is one cheap query on an index (delivery
``(state, next_attempt_at)`` and ``(message_id, state)``, message ``(state, received_at)``, primary
keys); the scrape runs them on a connection of its own, never on the engine's database thread.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import peewee as pw
from prometheus_client import CollectorRegistry, Counter, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine import clock, heartbeat
from engine.bounces.models import BounceEvent, tuples
from engine.lists.models import Domain, MailingList, OptOut
from engine.outbound.models import Delivery, DeliveryState
from engine.posting.models import Message, MessageState

log = logging.getLogger("palanquee.metrics")
OPEN_STATES = (DeliveryState.QUEUED, DeliveryState.DEFERRED)
PROGRESS_LIMIT = 50  # messages shown with their progress (the oldest being sent)


def reply_class(reply: str) -> str:
    """``accepted`` (2xx), ``deferred`` (4xx: the client tries again) or ``refused`` (5xx)."""
    return {"2": "accepted", "4": "deferred"}.get(reply[:1], "refused")


class Metrics:
    """The counters of one engine process and the registry its ``/metrics`` serves."""

    def __init__(self, database: pw.Database, heartbeat_max_age: timedelta) -> None:
        self.registry = CollectorRegistry()
        self.copies = Counter("palanquee_copies", "Copies whose result this process recorded, by destination "
                              "(throttle) group and outcome (sent, deferred, failed)", ["group", "outcome"],
                              registry=self.registry)
        self.intake_messages = Counter("palanquee_intake_messages", "Replies of this process's intake at the end "
                                       "of DATA, one per list and transaction (accepted, deferred, refused)",
                                       ["result"], registry=self.registry)
        self.intake_recipients = Counter("palanquee_intake_recipients", "Replies of this process's intake to "
                                         "RCPT (accepted, deferred, refused)", ["result"], registry=self.registry)
        self.registry.register(QueueCollector(database, heartbeat_max_age))
        ProcessCollector(registry=self.registry)
        self._copy_counters: dict[tuple[str, str], Any] = {}  # (group, outcome) -> its child counter

    def copy_recorded(self, group: str, outcome: str) -> None:
        """Count one recorded copy (once a copy: its labelled child is looked up once per group and outcome)."""
        counter = self._copy_counters.get((group, outcome))
        if counter is None:
            counter = self._copy_counters[group, outcome] = self.copies.labels(group or "none", outcome)
        counter.inc()

    def intake_reply(self, stage: str, reply: str) -> None:
        """Count one reply of the intake: ``stage`` is ``rcpt`` or ``data``."""
        counter = self.intake_recipients if stage == "rcpt" else self.intake_messages
        counter.labels(reply_class(reply)).inc()

    def serve(self, address: tuple[str, int]) -> Any:
        """Serve ``/metrics`` in a thread of its own; returns the server (``shutdown()`` stops it)."""
        server, _thread = start_http_server(address[1], address[0], registry=self.registry)
        return server


class QueueCollector(Collector):
    """Figures read from the shared database at each scrape (a connection of the scrape's own thread)."""

    def __init__(self, database: pw.Database, heartbeat_max_age: timedelta) -> None:
        self.database, self.heartbeat_max_age = database, heartbeat_max_age

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("palanquee_database_up", "1 when the scrape could read the database")
        try:
            with self.database.connection_context():
                figures = list(self._figures(clock.now()))
        except Exception as exc:  # noqa: BLE001 - the scrape must answer; the gauge says what happened
            log.warning("metrics: cannot read the database: %s", " ".join(str(exc).split())[:200])
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from figures

    def _figures(self, now: datetime) -> Iterator[Metric]:
        yield from _queue(now)
        yield from _progress()
        alive = heartbeat.liveness(self.heartbeat_max_age, now)
        engines = GaugeMetricFamily("palanquee_engines_alive", "Engine processes whose heartbeat is recent")
        engines.add_metric([], alive.alive)
        yield engines
        for name, model, text in (
                ("palanquee_bounce_events", BounceEvent, "Returned messages and final delivery failures recorded "
                 "by every engine (the table's highest id)"),
                ("palanquee_optouts", OptOut, "Opt-outs recorded from every source: footer, one-click, mailto, "
                 "Mon espace, staff, bounces (the table's highest id)")):
            family = CounterMetricFamily(name, text)
            family.add_metric([], float(model.select(pw.fn.MAX(model.id)).scalar() or 0))
            yield family


def _as_datetime(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else value  # SQLite: aggregates are text


def _queue(now: datetime) -> Iterator[Metric]:
    """Open copies by state, and how long the earliest due one of each state has waited (0: none is due)."""
    depth = GaugeMetricFamily("palanquee_queue_copies", "Copies not yet sent or failed, by state", labels=["state"])
    age = GaugeMetricFamily("palanquee_queue_oldest_age_seconds", "How long the earliest due copy of each "
                            "state has been due: a queued copy since its expansion, a deferred one since its "
                            "retry time (0 when none is due)", labels=["state"])
    rows = {state: (count, _as_datetime(oldest)) for state, count, oldest in tuples(Delivery.select(
        Delivery.state, pw.fn.COUNT(pw.SQL("*")), pw.fn.MIN(Delivery.next_attempt_at))
        .where(Delivery.state.in_(OPEN_STATES)).group_by(Delivery.state))}
    for state in OPEN_STATES:
        count, oldest = rows.get(state, (0, None))
        depth.add_metric([state], count)
        age.add_metric([state], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
    yield depth
    yield age


def _progress() -> Iterator[Metric]:
    """Recipients and copies still open of each message being sent (the oldest ``PROGRESS_LIMIT``)."""
    total = GaugeMetricFamily("palanquee_send_recipients", "Recipients of each message being sent",
                              labels=["message_id", "list"])
    remaining = GaugeMetricFamily("palanquee_send_remaining_copies", "Copies of each message being sent that "
                                  "are not yet sent or failed", labels=["message_id", "list"])
    sending = tuples(Message.select(Message.id, Message.recipient_count, MailingList.local_part, Domain.name)
                     .join(MailingList).join(Domain)
                     .where(Message.state == MessageState.SENDING).order_by(Message.received_at)
                     .limit(PROGRESS_LIMIT))
    if sending:
        open_counts: dict[int, int] = {row[0]: row[1] for row in tuples(
            Delivery.select(Delivery.message, pw.fn.COUNT(pw.SQL("*")))
            .where(Delivery.message.in_([row[0] for row in sending]) & Delivery.state.in_(OPEN_STATES))
            .group_by(Delivery.message))}
        for message_id, recipients, local_part, domain in sending:
            labels = [str(message_id), f"{local_part}@{domain}"]
            total.add_metric(labels, recipients)
            remaining.add_metric(labels, open_counts.get(message_id, 0))
    yield total
    yield remaining
