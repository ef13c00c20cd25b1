"""A lease that runs out while its copies are still on the wire (a slow relay, a loaded machine): the
engine claims them again but sends each copy once, and its recording never stalls."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import timedelta

from engine.config import Settings
from engine.outbound.models import Delivery, DeliveryState
from engine.posting.models import Message, MessageState
from tests.engine.conftest import wait_until
from tests.support import crowd
from tests.support.sink import Sink, SinkHandler


def test_copies_claimed_again_while_in_flight_are_sent_once(start_engine, engine_settings: Settings, db) -> None:  # type: ignore[no-untyped-def]
    audience = crowd.seed(120)
    sink = Sink(SinkHandler(delay=0.04))  # two connections: a 60-copy batch takes over a second
    sink.start()
    try:
        # The second batch is claimed while the first is on the wire, and waits for it longer than its
        # 1 s lease: the next claim takes its copies again while they are being sent.
        settings = dataclasses.replace(engine_settings, smarthost=sink.url, delivery_batch=60,
                                       delivery_connections=2, delivery_lease=timedelta(seconds=1))
        engine = start_engine(settings)
        crowd.send(engine.bound["smtp"][1], crowd.post(audience))
        wait_until(lambda: Message.get().state == MessageState.DONE, timeout=60, what="the send done")
        copies = Counter(rcpt for item in sink.handler.received for rcpt in item.rcpt_tos)
        assert set(copies) == audience.recipients()
        assert set(copies.values()) == {1}, sorted(copies.items(), key=lambda kv: -kv[1])[:5]
        assert {d.state for d in Delivery.select()} == {DeliveryState.SENT}
    finally:
        sink.stop()
