"""Delivery statistics per message and per list: the figures, their rates, settled counts, and query counts that
do not grow with the number of lists, messages or deliveries."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from engine import clock
from engine.bounces import stats
from engine.bounces.models import BounceEvent, MessageStats
from engine.db import database
from engine.lists.models import OptOut
from engine.lists.optouts import leave
from engine.outbound.models import Delivery
from engine.posting.models import Message, MessageState
from tests import factories
from tests.engine.conftest import Federation

T0 = datetime(2026, 11, 2, 9, 0)


def message(ml, received: datetime, states: dict[str, int], state: str = MessageState.DONE) -> Message:  # type: ignore[no-untyped-def]
    total = sum(states.values())
    msg = Message.create(mailing_list=ml, content=b"Subject: x\r\n\r\nx\r\n", size=10, state=state, received_at=received,
                         recipient_count=total, subject="x", sent_count=states.get("sent", 0),
                         failed_count=states.get("failed", 0))  # the counters outbox.record keeps
    n = 0
    rows = []
    for delivery_state, count in states.items():
        for _ in range(count):
            n += 1
            rows.append({"message": msg, "address": f"r{n}@example.org", "state": delivery_state,
                         "next_attempt_at": received, "updated_at": received})
    for batch in [rows[i:i + 500] for i in range(0, len(rows), 500)]:
        Delivery.insert_many(batch).execute()
    return msg


def bounced(msg: Message, kind: str, count: int, source: str = "dsn", skip: int = 0) -> None:
    ids = [d.id for d in Delivery.select(Delivery.id).where(Delivery.message == msg).order_by(Delivery.id)
           .offset(skip).limit(count)]
    for delivery_id in ids:
        for _ in range(2):  # the same copy bounced twice counts once
            BounceEvent.create(at=msg.received_at, email_key="x", mailing_list=msg.mailing_list_id, message=msg,
                               delivery_id=delivery_id, source=source, kind=kind)


class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.original = database.obj.execute_sql

    def __enter__(self) -> Counter:
        def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.count += 1
            return self.original(*args, **kwargs)
        database.obj.execute_sql = counting
        return self

    def __exit__(self, *exc: object) -> None:
        database.obj.execute_sql = self.original


@pytest.fixture
def history(federation: Federation):  # type: ignore[no-untyped-def]
    ml = federation.board_list
    with clock.frozen(T0):
        first = message(ml, T0, {"sent": 90, "failed": 6, "deferred": 4})
        second = message(ml, T0 + timedelta(days=2), {"sent": 50, "queued": 30, "deferred": 20},
                         state=MessageState.SENDING)
    bounced(first, "hard", 3)
    bounced(first, "policy", 1, skip=3)
    bounced(first, "auto-reply", 2, skip=4)  # not a bounce
    bounced(first, "hard", 1, source="smtp", skip=6)  # a synchronous failure is "failed", not "bounced"
    members = federation.board
    with clock.frozen(T0 + timedelta(hours=3)):
        leave(ml, member=members[0], source="one-click")
        leave(ml, member=members[1], source="staff")  # not counted: staff removed them
    with clock.frozen(T0 + timedelta(days=2, hours=1)):
        leave(ml, member=members[2], source="footer")  # after the second message: its unsubscribe
    return ml, first, second


def test_message_figures(history) -> None:  # type: ignore[no-untyped-def]
    _ml, first, second = history
    found = stats.message_figures([first, second])
    one, two = found[first.id], found[second.id]
    assert (one.recipients, one.sent, one.failed, one.deferred, one.bounced, one.unsubscribed) == (100, 90, 6, 4, 4, 1)
    assert one.sent_rate == 0.9 and one.bounced_rate == pytest.approx(4 / 90)
    assert (two.recipients, two.sent, two.queued, two.deferred, two.unsubscribed) == (100, 50, 30, 20, 1)
    assert two.bounced == 0 and two.bounced_rate == 0.0


def test_settled_counts_give_the_same_figures(history) -> None:  # type: ignore[no-untyped-def]
    _ml, first, second = history
    before = stats.message_figures([first, second])
    assert stats.settle() == 1 and stats.settle() == 0  # only the finished message, once
    assert MessageStats.get().message_id == first.id
    Delivery.delete().where(Delivery.message == first).execute()  # settled: deliveries are not read again
    after = stats.message_figures([Message.get_by_id(first.id), second])
    assert after[first.id].sent == 90 and after[first.id].failed == 6
    assert after[second.id] == before[second.id]


def test_list_figures_sum_the_recent_messages(history, federation: Federation) -> None:  # type: ignore[no-untyped-def]
    ml, first, second = history
    stats.settle()
    other = factories.mailing_list("vide", federation.domain, structure=federation.region)
    with clock.frozen(T0 + timedelta(days=3)):
        found = stats.list_figures([ml.id, other.id])
    figures = found[ml.id]
    assert (figures.recipients, figures.sent, figures.deferred, figures.failed, figures.queued) == (200, 140, 20, 6, 30)
    assert (figures.bounced, figures.unsubscribed) == (4, 2)
    assert found[other.id] == stats.Figures() and found[other.id].sent_rate is None
    with clock.frozen(T0 + timedelta(days=40)):  # older than the window
        assert stats.list_figures([ml.id])[ml.id] == stats.Figures()


def test_list_figures_is_one_query_whatever_the_number_of_lists(history, federation: Federation) -> None:  # type: ignore[no-untyped-def]
    ml, *_ = history
    lists = [ml.id] + [factories.mailing_list(f"l{i}", federation.domain, structure=federation.region).id
                       for i in range(30)]
    with Counter() as one, clock.frozen(T0 + timedelta(days=3)):
        stats.list_figures([ml.id])
    with Counter() as many, clock.frozen(T0 + timedelta(days=3)):
        stats.list_figures(lists)
    assert one.count == many.count == 1


def test_message_figures_queries_do_not_grow_with_messages(federation: Federation) -> None:
    ml = federation.board_list
    few = [message(ml, T0 + timedelta(hours=i), {"sent": 3}) for i in range(2)]
    more = few + [message(ml, T0 + timedelta(days=1, hours=i), {"sent": 3}) for i in range(20)]
    with Counter() as small:
        stats.message_figures(few)
    with Counter() as large:
        stats.message_figures(more)
    assert small.count == large.count <= 4


def test_settling_a_large_message_reads_it_once(federation: Federation) -> None:
    big = message(federation.board_list, T0, {"sent": 4000, "failed": 25})
    assert stats.settle() == 1
    row = MessageStats.get(MessageStats.message == big.id)
    assert (row.sent, row.failed) == (4000, 25)
    assert stats.message_figures([big])[big.id].sent == 4000
    assert OptOut.select().count() == 0
