"""Issue 16: on PostgreSQL, an idle engine is woken at once (LISTEN/NOTIFY) when copies are queued,
instead of at its next poll."""

from __future__ import annotations

import pytest

from engine import jobs
from engine.bounces import verp
from engine.config import Settings
from engine.intake import routes, service
from tests.engine.conftest import Federation, wait_until
from tests.engine.test_engine_e2e import post
from tests.support.sink import Sink


def test_issue_16_an_idle_engine_is_woken_at_once_when_copies_are_queued(
        start_engine, federation: Federation, sink: Sink, engine_settings: Settings, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("LISTEN/NOTIFY: PostgreSQL only; SQLite engines poll")
    engine = start_engine(delivery_only=True, poll_seconds=120.0)  # its next poll would be two minutes away
    wait_until(lambda: engine.wakeups >= 1, what="listening")
    wait_until(lambda: engine.idle and not engine._wake_delivery.is_set(), what="idle")
    route = routes.route("comite_directeur.comite@listes.example.fr", verp.signing_key(engine_settings))
    assert service.receive(engine_settings, route, "elodie.dupre@example.fr", post().as_bytes()).accepted
    assert jobs.expand_accepted() == 1  # as another engine's expansion: it commits, then notifies
    wait_until(lambda: len(sink.handler.received) == 2, timeout=30, what="copies sent by the idle engine")
