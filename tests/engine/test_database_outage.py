"""Issue 16: PostgreSQL restarted under a running engine. The engine reconnects with backoff, finishes
the send with duplicates bounded by what was on the wire, and its intake answers 451 only while the
database is really down (an engine that was idle during the restart answers 250 at once)."""

from __future__ import annotations

import dataclasses
import smtplib
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import pytest

from engine import db as engine_db
from engine.config import Settings
from engine.outbound.models import Delivery, DeliveryState
from engine.posting.models import Message, MessageState
from tests import factories
from tests.engine.conftest import Federation, wait_until
from tests.engine.test_engine_e2e import post, send
from tests.support.sink import Sink, SinkHandler

T = TypeVar("T")


@pytest.fixture(autouse=True)
def _postgresql_only(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("a database server to restart: PostgreSQL only (run with --db=postgresql)")


def _query(function: Callable[[], T]) -> T | None:
    """Run a query from the test's thread, reconnecting after the restart (None while it fails)."""
    database = engine_db.database.obj
    for _ in range(2):  # the first try may meet the connection the restart killed
        try:
            database.connect(reuse_if_open=True)
            return function()
        except Exception:
            engine_db.discard_connection(database)
    return None


def test_issue_16_postgresql_restart_mid_send_the_engine_reconnects_and_finishes(
        start_engine, federation: Federation, engine_settings: Settings, pg_cluster) -> None:  # type: ignore[no-untyped-def]
    role = factories.role("membre_cd")
    for n in range(60):
        factories.mandate(factories.member("Membre", f"N{n}", email=f"m{n}@example.net", club=federation.club),
                          role, federation.region)
    expected = 62
    sink = Sink(SinkHandler(delay=0.02))
    sink.start()
    try:
        settings = dataclasses.replace(engine_settings, smarthost=sink.url, delivery_batch=10, delivery_connections=2,
                                       delivery_lease=timedelta(minutes=5))
        engine = start_engine(settings)
        send(engine, post())
        wait_until(lambda: len(sink.handler.received) >= 15, what="a few copies")
        pg_cluster.stop_server()
        pg_cluster.start_server()
        wait_until(lambda: _query(lambda: Message.get().state) == MessageState.DONE, timeout=60,
                   what="the send finished after the restart")
        duplicates = len(sink.handler.received) - expected
        assert len(sink.handler.by_recipient()) == expected
        assert 0 <= duplicates <= 2 * 2  # two connections, each at most two copies deep
        assert {d.state for d in Delivery.select()} == {DeliveryState.SENT}
    finally:
        sink.stop()


def test_issue_16_the_intake_answers_451_only_while_postgresql_is_down(
        start_engine, federation: Federation, sink: Sink, pg_cluster) -> None:  # type: ignore[no-untyped-def]
    engine = start_engine()
    send(engine, post(subject="Avant"))
    wait_until(lambda: len(sink.handler.received) == 2, what="first post delivered")
    pg_cluster.stop_server()
    try:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            send(engine, post(subject="Pendant"))
        [(code, _text)] = refused.value.recipients.values()
        assert code == 451
    finally:
        pg_cluster.start_server()
    # The engine sat idle through the restart: its old connection is dead, yet the next post is taken.
    assert send(engine, post(subject="Après")) == {}
    wait_until(lambda: len(sink.handler.received) == 4, what="the post after the restart")
    assert _query(lambda: sorted(m.subject for m in Message.select())) == ["Après", "Avant"]
