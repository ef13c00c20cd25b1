"""A post is expanded once: expanding it again does nothing, two workers racing for it get it once between
them, and two engines on one database send every recipient one copy of every post."""

from __future__ import annotations

import threading

from engine import db as engine_db
from engine.bounces import verp
from engine.config import Settings
from engine.intake import routes, service
from engine.jobs import expand_accepted
from engine.outbound.models import Delivery
from engine.posting.expand import expand
from engine.posting.models import Message, MessageState
from tests.engine.conftest import Federation, wait_until
from tests.engine.test_engine_e2e import post, send
from tests.support.sink import Sink


def accepted_post(settings: Settings) -> int:
    route = routes.route("comite_directeur.comite@listes.example.fr", verp.signing_key(settings))
    assert service.receive(settings, route, "elodie.dupre@example.fr", post().as_bytes()).accepted
    return int(Message.select(Message.id).order_by(Message.id.desc()).scalar())


def test_expanding_again_or_polling_again_adds_nothing(federation: Federation, engine_settings: Settings) -> None:
    message_id = accepted_post(engine_settings)
    assert expand(message_id) == 2
    assert expand(message_id) is None and expand_accepted() == 0  # a second call, a second poll
    assert Delivery.select().count() == 2
    assert Message.get_by_id(message_id).state == MessageState.SENDING


def test_two_workers_racing_for_one_post_expand_it_once(federation: Federation, engine_settings: Settings,
                                                        db_url: str) -> None:
    message_id = accepted_post(engine_settings)
    database = engine_db.shared(db_url)
    start = threading.Barrier(2)
    results: list[int | None] = []

    def worker() -> None:
        database.connect(reuse_if_open=True)
        try:
            start.wait(10)
            results.append(expand(message_id))
        finally:
            database.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results, key=str) == [2, None]
    assert Delivery.select().count() == 2


def test_two_engines_on_one_database_send_each_post_once(start_engine, federation: Federation, sink: Sink) -> None:
    first, second = start_engine(), start_engine()
    for number in range(6):  # to both engines in turn: each one polls for every accepted post
        send(first if number % 2 else second, post(subject=f"Message {number}"))
    done = Message.select().where(Message.state == MessageState.DONE)
    wait_until(lambda: done.count() == 6, what="six posts done", timeout=60)
    assert Delivery.select().count() == 12
    subjects = sorted((r.rcpt_tos[0], str(r.message["Subject"]).rsplit(" ", 1)[1]) for r in sink.handler.received)
    assert subjects == sorted((address, str(n)) for n in range(6)
                              for address in ("Famille.Martin@example.fr", "elodie.dupre@example.fr"))
