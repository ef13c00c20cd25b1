"""Temporary failures over time, on a frozen clock: retries at PALANQUEE_RETRY_FIRST doubling up to
PALANQUEE_RETRY_MAX, a copy given up (failed) past PALANQUEE_RETRY_LIFETIME, and a 421 that closes the
connection and leaves the copies it had not sent for later, never lost and never failed."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from engine import clock
from engine.config import Settings
from engine.outbound import outbox
from engine.outbound.models import Delivery, DeliveryState
from tests import factories
from tests.engine.conftest import Federation, wait_until
from tests.engine.test_engine_e2e import post, send
from tests.support.sink import Sink, SinkHandler

# After the real date (nothing falls due when the clock is given back) and before the licences end.
T0 = datetime(2027, 6, 1, 8, 0)
FIRST, LONGEST, LIFETIME = timedelta(minutes=5), timedelta(minutes=20), timedelta(hours=1)


@pytest.fixture
def frozen() -> Iterator[object]:
    with clock.frozen(T0) as advance:
        yield advance


@pytest.fixture
def retrying(engine_settings: Settings) -> Settings:
    return dataclasses.replace(engine_settings, retry_first=FIRST, retry_max=LONGEST, retry_lifetime=LIFETIME)


def attempts_reach(number: int) -> bool:
    rows = list(Delivery.select())
    return bool(rows) and all(d.attempts >= number and d.claimed_by is None for d in rows)


def test_retries_double_from_the_first_wait_to_the_longest_then_give_up(
        frozen, start_engine, federation: Federation, sink: Sink, retrying: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Waits are lengthened at random by up to a quarter in production (retries of one list do not all come
    # at once); without that spread the schedule is exact (test_throttle covers the spread itself).
    monkeypatch.setattr(outbox, "RETRY_SPREAD", 0.0)
    sink.handler.script = lambda address, attempt: "451 4.7.1 Greylisted, try again later"
    engine = start_engine(retrying)
    send(engine, post())
    now = T0
    # attempt n at `now`, next one after FIRST * 2**(n-1), at most LONGEST: 5, 10, 20, 20 minutes
    for attempt, wait in ((1, FIRST), (2, 2 * FIRST), (3, LONGEST), (4, LONGEST)):
        wait_until(lambda attempt=attempt: attempts_reach(attempt), what=f"attempt {attempt}")
        for delivery in Delivery.select():
            assert (delivery.state, delivery.attempts) == (DeliveryState.DEFERRED, attempt)
            assert delivery.next_attempt_at == now + wait, f"attempt {attempt}"
            assert delivery.last_reply.startswith("451 4.7.1")
        frozen(wait)  # type: ignore[operator]
        now += wait
    # attempt 5 at T0 + 55 min: the next one (T0 + 75 min) would be past the lifetime (T0 + 1 h)
    wait_until(lambda: attempts_reach(5), what="attempt 5")
    for delivery in Delivery.select():
        assert (delivery.state, delivery.attempts) == (DeliveryState.FAILED, 5)
        assert delivery.last_reply.startswith("451 4.7.1") and "gave up after 1:00:00" in delivery.last_reply
    assert sorted(sink.handler.attempts.values()) == [5, 5] and sink.handler.received == []


@dataclass
class ShuttingDown(SinkHandler):
    """Accepts the first copy, then answers 421 to every recipient (a relay going down) until ``back``.

    It keeps reading after a 421, as a lenient server may: a client that goes on with another
    transaction on that connection is recorded in ``reused``.
    """

    accepted_before: int = 1
    back: bool = False
    closing: set[int] = field(default_factory=set)
    reused: list[str] = field(default_factory=list)
    connections: int = 0  # sessions that started a transaction

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        if not getattr(session, "counted", False):
            session.counted = True  # type: ignore[attr-defined]
            self.connections += 1
        if id(session) in self.closing:
            self.reused.append(f"MAIL FROM:<{address}>")
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if id(session) in self.closing:
            self.reused.append("RSET")
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        with self.lock:
            self.attempts[address] = self.attempts.get(address, 0) + 1
            down = not self.back and sum(self.attempts.values()) > self.accepted_before
            if down:
                self.closing.add(id(session))
        if down:
            return "421 4.3.2 Service shutting down, closing transmission channel"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_a_421_closes_the_connection_and_what_was_not_sent_waits_for_later(
        frozen, start_engine, federation: Federation, retrying: Settings) -> None:
    board = factories.role("membre_cd")
    for n in range(4):
        factories.mandate(factories.member("Membre", f"N{n}", email=f"m{n}@example.net", club=federation.club),
                          board, federation.region)
    handler = ShuttingDown()
    relay = Sink(handler)
    relay.start()
    try:
        # one connection: the copies go one after another, the 421 comes on the second
        engine = start_engine(dataclasses.replace(retrying, smarthost=relay.url, delivery_connections=1))
        send(engine, post())

        def settled() -> bool:  # each copy sent, deferred by a reply, or put off untried to a later slot
            rows = list(Delivery.select())
            return len(rows) == 6 and all(d.claimed_by is None and (d.attempts >= 1 or d.next_attempt_at > T0)
                                          for d in rows)

        wait_until(settled, what="every copy sent, deferred or put off")
        rows = list(Delivery.select())
        assert sorted(d.state for d in rows).count(DeliveryState.SENT) == 1, [(d.state, d.attempts) for d in rows]
        assert not [d for d in rows if d.state == DeliveryState.FAILED], "a 421 is temporary: nothing fails"
        assert handler.reused == [], "a connection was used again after its 421"
        assert len(handler.received) == 1
        assert handler.connections <= 2, "at most one new connection after the 421, then the rest waits"
        refused = [d for d in rows if "421" in d.last_reply]
        assert refused and all(d.state == DeliveryState.DEFERRED and d.next_attempt_at > T0 for d in refused)
        waiting = [d for d in rows if d.state != DeliveryState.SENT]
        assert all(d.next_attempt_at > T0 for d in waiting)  # nothing tried again at once against a closing relay
        handler.back = True
        frozen(max(d.next_attempt_at for d in waiting) - T0)  # type: ignore[operator]
        wait_until(lambda: Delivery.select().where(Delivery.state == DeliveryState.SENT).count() == 6,
                   what="every copy sent once the relay is back")
        assert sorted(len(copies) for copies in handler.by_recipient().values()) == [1] * 6
    finally:
        relay.stop()
