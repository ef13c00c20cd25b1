"""Issue 16's outbound protocol faults, against a real SMTP server (aiosmtpd) through a running engine:
idle connections the relay closed, connections that die before any reply."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta

import pytest

from engine.config import Settings
from engine.outbound.models import Delivery, DeliveryState
from engine.posting.models import Message, MessageState
from tests.engine.conftest import Federation, wait_until
from tests.engine.test_engine_e2e import post, send
from tests.support.sink import Sink, SinkHandler


@pytest.fixture
def closing_sink() -> Iterator[Sink]:
    """A relay that closes sessions left silent for half a second (a short ``smtpd_timeout``)."""
    server = Sink(SinkHandler(), idle_timeout=0.5)
    server.start()
    yield server
    server.stop()


def _all_sent_at_first_attempt() -> bool:
    rows = list(Delivery.select())
    return bool(rows) and all(d.state == DeliveryState.SENT and d.attempts == 1 for d in rows)


def _done(count: int) -> bool:
    return Message.select().where(Message.state == MessageState.DONE).count() == count


def test_issue_16_a_connection_the_relay_closed_while_idle_is_replaced_not_deferred(
        start_engine, federation: Federation, closing_sink: Sink, engine_settings: Settings) -> None:
    engine = start_engine(dataclasses.replace(engine_settings, smarthost=closing_sink.url))
    send(engine, post(subject="Premier"))
    wait_until(lambda: _done(1), what="first post done")
    wait_until(lambda: closing_sink.handler.sessions == 0, what="the relay closing the idle sessions")
    send(engine, post(subject="Second"))
    wait_until(lambda: _done(2), what="second post done")
    assert _all_sent_at_first_attempt(), [(d.address, d.attempts, d.last_reply) for d in Delivery.select()]
    assert all(len(copies) == 2 for copies in closing_sink.handler.by_recipient().values())


def test_issue_16_copies_on_a_connection_that_died_before_any_reply_go_at_once_on_a_new_one(
        start_engine, federation: Federation, sink: Sink) -> None:
    engine = start_engine()
    send(engine, post(subject="Premier"))
    wait_until(lambda: _done(1), what="first post done")
    sink.handler.drop_at_mail = 1  # the reused connection dies at the next MAIL, before any reply
    send(engine, post(subject="Second"))
    wait_until(lambda: _done(2), what="second post done")
    assert sink.handler.drop_at_mail == 0
    assert _all_sent_at_first_attempt(), [(d.address, d.attempts, d.last_reply) for d in Delivery.select()]
    assert all(len(copies) == 2 for copies in sink.handler.by_recipient().values())  # none lost, none twice


def test_issue_16_a_connection_left_idle_is_checked_with_noop_before_reuse(
        start_engine, federation: Federation, sink: Sink, engine_settings: Settings) -> None:
    engine = start_engine(dataclasses.replace(engine_settings, delivery_idle_check=timedelta(0)))
    send(engine, post(subject="Premier"))
    wait_until(lambda: _done(1), what="first post done")
    assert sink.handler.noops == 0
    send(engine, post(subject="Second"))
    wait_until(lambda: _done(2), what="second post done")
    assert sink.handler.noops >= 1 and _all_sent_at_first_attempt()
