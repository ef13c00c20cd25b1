"""Issue 16: several ``palanquee engine`` processes on one PostgreSQL database share one send.

Each engine is its own process (one delivery process each, port 0 for its listeners, no DNS) and serves
its metrics, from which the test reads how many copies each one sent. A fault-free send reaches every
recipient exactly once with the work shared; a killed engine's claims are taken over by the others
once its lease ends; a PostgreSQL restart in the middle of a send is survived by every engine, with
duplicates bounded by what was on the wire. Sizes stay small enough for CI (the benchmark runs 100,000).
"""

from __future__ import annotations

import smtplib
import socket
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from engine import db as engine_db
from engine.config import Settings
from engine.heartbeat import EngineHeartbeat
from engine.outbound.models import Delivery, DeliveryState
from engine.posting.models import Message, MessageState
from tests.engine.conftest import wait_until
from tests.production.test_operations import samples, value
from tests.support import crowd, engines
from tests.support.engines import EngineProcess
from tests.support.sink import Sink

pytestmark = [pytest.mark.postgresql_only, pytest.mark.production]
SIZE = 5000
CONNECTIONS = 4
T = TypeVar("T")


def sent_by(engine: EngineProcess) -> int:
    return int(value(samples(engine.metrics()), "palanquee_copies_total", group="default", outcome="sent") or 0)


def received(sink: Sink) -> Counter[str]:
    with sink.handler.lock:
        return Counter(rcpt for item in sink.handler.received for rcpt in item.rcpt_tos)


def fresh(query: Callable[[], T]) -> T | None:
    """Run a query from the test's thread, reconnecting after a server restart (None while it fails)."""
    database = engine_db.database.obj
    for _ in range(2):
        try:
            database.connect(reuse_if_open=True)
            return query()
        except Exception:
            engine_db.discard_connection(database)
    return None


def done() -> bool:
    return fresh(lambda: Message.get().state) == MessageState.DONE


@pytest.fixture
def fleet(engine_settings: Settings, tmp_path: Path, db):  # type: ignore[no-untyped-def]
    """Start N engines on the test's database (``fleet(3, DELIVERY_LEASE="5s")``); stopped after the test."""
    started: list[EngineProcess] = []

    def start(count: int, **overrides: str) -> list[EngineProcess]:
        env = engines.environment(engine_settings, METRICS_LISTEN="127.0.0.1:0",
                                  DELIVERY_CONNECTIONS=str(CONNECTIONS), DELIVERY_BATCH="200", **overrides)
        started.extend(engines.start_many(count, env, tmp_path))
        return started

    yield start
    for engine in started:
        engine.terminate()


def test_two_engines_share_a_send_and_every_recipient_gets_one_copy(fleet, sink: Sink) -> None:  # type: ignore[no-untyped-def]
    audience = crowd.seed(SIZE)
    first, second = fleet(2)
    wait_until(lambda: EngineHeartbeat.select().count() == 2, what="two heartbeats")
    crowd.send(first.bound["smtp"][1], crowd.post(audience))
    wait_until(done, timeout=180, what="the send done")
    copies = received(sink)
    assert set(copies) == audience.recipients() and set(copies.values()) == {1}  # each once, none twice
    shares = [sent_by(first), sent_by(second)]
    assert sum(shares) == SIZE and min(shares) > 0, shares  # the second engine joined at once (NOTIFY)
    assert {(d.state, d.attempts) for d in Delivery.select()} == {(DeliveryState.SENT, 1)}


def test_three_engines_take_over_the_claims_of_one_killed_mid_send(fleet, sink: Sink) -> None:  # type: ignore[no-untyped-def]
    audience = crowd.seed(SIZE)
    engines_ = fleet(3, DELIVERY_LEASE="8s")
    crowd.send(engines_[0].bound["smtp"][1], crowd.post(audience))
    victim = engines_[1]
    wait_until(lambda: sum(received(sink).values()) >= SIZE // 3 and sent_by(victim) > 0, timeout=120,
               what="a third of the copies, some by the victim")
    victim.kill()
    name = f"{socket.gethostname()}:{victim.pid}"
    orphaned = {d.id for d in Delivery.select().where(Delivery.claimed_by == name)}
    assert orphaned, "the killed engine held claims"
    wait_until(done, timeout=180, what="the send done by the two others")
    copies = received(sink)
    assert set(copies) == audience.recipients()
    duplicates = sum(copies.values()) - SIZE
    print(f"three engines, one killed: {duplicates} duplicate(s) of {SIZE}")
    assert 0 <= duplicates <= 2 * CONNECTIONS, duplicates  # only what was on the victim's wire
    survivors = [sent_by(engine) for engine in (engines_[0], engines_[2])]
    assert min(survivors) > 0, survivors
    taken_over = Delivery.select().where(Delivery.id.in_(orphaned))
    assert {d.state for d in taken_over} == {DeliveryState.SENT}
    assert all(d.attempts >= 2 for d in taken_over)  # the victim's attempt stays counted


def test_a_postgresql_restart_mid_send_every_engine_reconnects_and_finishes(fleet, sink: Sink, pg_cluster) -> None:  # type: ignore[no-untyped-def]
    audience = crowd.seed(SIZE)
    pair = fleet(2)
    crowd.send(pair[0].bound["smtp"][1], crowd.post(audience))
    wait_until(lambda: sum(received(sink).values()) >= SIZE // 3, timeout=120, what="a third of the copies")
    before = [sent_by(engine) for engine in pair]
    replies: list[int] = []

    def while_down() -> None:  # the intake answers 451 while the database is really unreachable
        replies.extend(rcpt(engine, audience.address) for engine in pair)

    pg_cluster.restart(while_down)
    assert replies == [451, 451]
    assert [rcpt(engine, audience.address) for engine in pair] == [250, 250]  # at once after the restart
    wait_until(done, timeout=180, what="the send done after the restart")
    copies = received(sink)
    assert set(copies) == audience.recipients()
    duplicates = sum(copies.values()) - SIZE
    print(f"PostgreSQL restarted under two engines: {duplicates} duplicate(s) of {SIZE}")
    assert 0 <= duplicates <= len(pair) * CONNECTIONS * 2, duplicates
    after = [sent_by(engine) for engine in pair]
    assert all(later > earlier for earlier, later in zip(before, after, strict=True)), (before, after)
    assert fresh(lambda: {d.state for d in Delivery.select()}) == {DeliveryState.SENT}


def rcpt(engine: EngineProcess, address: str) -> int:
    """The intake's reply to one RCPT (the transaction is then abandoned)."""
    with smtplib.SMTP(*engine.bound["smtp"], timeout=60) as client:
        client.ehlo()
        client.mail(crowd.AUTHOR)
        code, _text = client.rcpt(address)
        client.rset()
    return int(code)
