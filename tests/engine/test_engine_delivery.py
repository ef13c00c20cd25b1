"""Delivery under trouble: temporary and permanent refusals, and an engine killed in the middle."""

from __future__ import annotations

import dataclasses

from peewee import fn

from engine.config import Settings
from engine.outbound.models import Delivery, DeliveryState
from engine.posting.models import Message, MessageState
from tests import factories
from tests.engine.conftest import Federation, wait_until
from tests.engine.test_engine_e2e import post, send
from tests.support import engines
from tests.support.sink import Sink, SinkHandler, reserve


def test_451_then_250_is_retried_and_550_is_failed(start_engine, federation: Federation, sink: Sink) -> None:
    def script(address: str, attempt: int) -> str:
        if address.startswith("Famille"):
            return "451 4.7.1 Greylisted, try again later" if attempt == 1 else "250 OK"
        return "550 5.1.1 No such user"

    sink.handler.script = script
    engine = start_engine()
    send(engine, post())
    wait_until(lambda: Message.get().state == MessageState.DONE, what="message done", timeout=30)
    family = Delivery.get(Delivery.address == "Famille.Martin@example.fr")
    assert (family.state, family.attempts) == (DeliveryState.SENT, 2)
    assert sink.handler.attempts["Famille.Martin@example.fr"] == 2
    failed = Delivery.get(Delivery.address == "elodie.dupre@example.fr")
    assert failed.state == DeliveryState.FAILED and failed.attempts == 1
    assert failed.last_reply.startswith("550 5.1.1 No such user")
    assert list(sink.handler.by_recipient()) == ["Famille.Martin@example.fr"]


def test_connection_refused_defers_and_nothing_is_lost(start_engine, federation: Federation,
                                                       engine_settings: Settings) -> None:
    down = reserve()  # bound, not listening: the smarthost refuses connections, and nobody can take its port
    settings = dataclasses.replace(engine_settings, smarthost=f"smtp://127.0.0.1:{down.getsockname()[1]}")
    engine = start_engine(settings)
    send(engine, post())
    wait_until(lambda: Delivery.select().where(Delivery.state == DeliveryState.DEFERRED).count() == 2,
               what="deferred copies")
    assert all("4.4.2" in d.last_reply for d in Delivery.select())
    sink = Sink(SinkHandler(), sock=down)  # the smarthost comes back on the same port
    sink.start()
    try:
        wait_until(lambda: len(sink.handler.received) == 2, what="copies after the smarthost came back", timeout=30)
    finally:
        sink.stop()


def test_killed_engine_resumes_without_losing_a_delivery(federation: Federation,
                                                         engine_settings: Settings) -> None:
    expected = _board(federation, 60)
    sink = Sink(SinkHandler(delay=0.03))
    sink.start()
    env = engines.environment(dataclasses.replace(engine_settings, smarthost=sink.url), DELIVERY_LEASE="2s",
                              DELIVERY_BATCH="500", DELIVERY_CONNECTIONS="2", DELIVERY_PROCESSES="1")
    folder = engine_settings.instance.parent

    first = engines.start(env, folder / "engine-1.log")
    try:
        send(first, post())
        wait_until(lambda: len(sink.handler.received) >= 15, what="a few copies")
        first.kill()
        before = len(sink.handler.received)
        assert before < expected
        second = engines.start(env, folder / "engine-2.log")
        try:
            wait_until(lambda: len(set(sink.handler.by_recipient())) == expected, timeout=60,
                       what="every recipient after restart")
            wait_until(lambda: Message.get().state == MessageState.DONE, timeout=30, what="message done")
        finally:
            second.terminate(10)
    finally:
        first.kill()
        sink.stop()
    duplicates = len(sink.handler.received) - expected
    # Results are recorded as replies arrive: only copies on the wire at the kill can go twice (two
    # connections, each with one copy awaiting its reply and one just answered), not the claimed batch.
    assert 0 <= duplicates <= 2 * 2
    assert Delivery.select().where(Delivery.state != DeliveryState.SENT).count() == 0
    counted = Delivery.select(fn.SUM(Delivery.attempts)).scalar()
    assert counted >= expected + duplicates  # every copy sent twice shows two attempts



def _board(federation: Federation, members: int) -> int:
    """``members`` more board members of the region, ``m<n>@example.net``; the list's recipients then."""
    role = factories.role("membre_cd")
    for n in range(members):
        person = factories.member("Membre", f"N{n}", email=f"m{n}@example.net", club=federation.club)
        factories.mandate(person, role, federation.region)
    return members + 2


def test_a_post_accepted_before_a_crash_is_expanded_after_restart(start_engine, federation: Federation,
                                                                  sink: Sink, engine_settings: Settings) -> None:
    """What the intake committed before answering 250 is all the engine needs after a restart."""
    from engine.bounces import verp
    from engine.intake import routes, service

    route = routes.route("comite_directeur.comite@listes.example.fr", verp.signing_key(engine_settings))
    outcome = service.receive(engine_settings, route, "elodie.dupre@example.fr", post().as_bytes())
    assert outcome.reply.startswith("250") and outcome.accepted
    assert Message.get().state == MessageState.ACCEPTED and Delivery.select().count() == 0  # then the crash
    start_engine()
    wait_until(lambda: len(sink.handler.received) == 2, what="copies after restart")
    wait_until(lambda: Message.get().state == MessageState.DONE, what="message done")


def test_issue_16_sigterm_mid_send_records_and_gives_back_then_a_restart_finishes_once(
        federation: Federation, engine_settings: Settings) -> None:
    """A deploy: SIGTERM stops claiming, lets the copies on the wire get their replies, records them and
    gives the untried claims back at once (the 5-minute lease would outlast this test)."""
    from engine import clock

    expected = _board(federation, 80)
    sink = Sink(SinkHandler(delay=0.02))
    sink.start()
    env = engines.environment(dataclasses.replace(engine_settings, smarthost=sink.url), DELIVERY_LEASE="5m",
                              DELIVERY_BATCH="10", DELIVERY_CONNECTIONS="2", DELIVERY_PROCESSES="2")
    folder = engine_settings.instance.parent

    first = engines.start(env, folder / "engine-1.log")
    try:
        send(first, post())
        wait_until(lambda: len(sink.handler.received) >= 15, what="a few copies")
        assert first.terminate(30) == 0
        received = sink.handler.by_recipient()
        assert 15 <= len(received) < expected
        rows = list(Delivery.select())
        assert all(d.claimed_by is None for d in rows), "claims left behind"
        assert all(d.next_attempt_at <= clock.now() for d in rows if d.state != DeliveryState.SENT)
        assert {d.address for d in rows if d.state == DeliveryState.SENT} == set(received)  # every reply recorded
        assert {(d.state, d.attempts) for d in rows} <= {(DeliveryState.SENT, 1), (DeliveryState.QUEUED, 0)}
        second = engines.start(env, folder / "engine-2.log")
        try:
            wait_until(lambda: Message.get().state == MessageState.DONE, timeout=60, what="message done")
        finally:
            second.terminate(30)
    finally:
        first.kill()
        sink.stop()
    assert len(sink.handler.received) == expected  # no duplicate
    assert len(sink.handler.by_recipient()) == expected
    assert {(d.state, d.attempts) for d in Delivery.select()} == {(DeliveryState.SENT, 1)}
