"""A message's progress from counters kept as results are recorded, never a count of every delivery row;
exact again when the message is done."""

from __future__ import annotations

import logging
from datetime import timedelta

from engine import clock
from engine.outbound import outbox
from engine.outbound.models import Delivery, DeliveryState
from engine.posting import queries
from engine.posting.models import Message, MessageState
from tests.engine.conftest import Federation, wait_until
from tests.engine.test_engine_e2e import post, send
from tests.support.sink import Sink

RETRY = dict(first=timedelta(minutes=5), longest=timedelta(hours=1), lifetime=timedelta(days=5))


def sending(federation: Federation, recipients: int) -> Message:
    now = clock.now()
    message = Message.create(mailing_list=federation.board_list, content=b"x", size=1, state=MessageState.SENDING,
                             received_at=now, recipient_count=recipients)
    for i in range(recipients):
        Delivery.create(message=message, address=f"r{i}@example.net", next_attempt_at=now, updated_at=now)
    return message


def record(message: Message, codes: list[int]) -> None:
    claimed = {c.id: c for c in outbox.claim_due("w", len(codes), timedelta(minutes=5))}
    results = [outbox.Result(i, code, f"{code} reply") for i, code in zip(sorted(claimed), codes, strict=True)]
    outbox.record(results, claimed, received={message.id: message.received_at}, **RETRY)


def test_counters_follow_each_batch_and_the_done_message_is_counted_exactly(federation: Federation) -> None:
    message = sending(federation, 10)
    record(message, [250, 250, 550, 451])
    got = queries.progress(Message.get_by_id(message.id))
    assert (got.sent, got.failed, got.deferred, got.queued, got.recipients) == (2, 1, 1, 6, 10)
    assert queries.progress_of_many([Message.get_by_id(message.id)])[message.id] == {
        "sent": 2, "failed": 1, "deferred": 1, "queued": 6}
    Message.update(sent_count=99).where(Message.id == message.id).execute()  # a drift, as a double record would
    with clock.frozen(clock.now() + timedelta(hours=2)):
        record(message, [250] * 7)  # the six queued and the deferred one
        assert outbox.finish_messages() == 1
    done = Message.get_by_id(message.id)
    assert (done.state, done.sent_count, done.failed_count) == (MessageState.DONE, 9, 1)  # recounted at the end


def test_progress_reads_only_the_deferred_rows(federation: Federation, caplog) -> None:
    message = sending(federation, 30)
    record(message, [250] * 20 + [451] * 2)
    caplog.set_level(logging.DEBUG, logger="peewee")
    got = queries.progress(Message.get_by_id(message.id))
    assert (got.sent, got.deferred, got.queued) == (20, 2, 8)
    statements = [r.msg for r in caplog.records if isinstance(r.msg, tuple) and '"delivery"' in r.msg[0]]
    assert statements and all(DeliveryState.DEFERRED in params for _sql, params in statements)


def test_an_engine_run_leaves_counters_equal_to_the_rows(start_engine, federation: Federation, sink: Sink) -> None:
    sink.handler.script = lambda address, attempt: "550 5.1.1 No such user" if "dupre" in address else "250 OK"
    engine = start_engine()
    send(engine, post())
    wait_until(lambda: Message.get().state == MessageState.DONE, what="message done", timeout=30)
    message = Message.get()
    states = [d.state for d in Delivery.select().where(Delivery.message == message)]
    assert (message.sent_count, message.failed_count) == (states.count("sent"), states.count("failed")) == (1, 1)
