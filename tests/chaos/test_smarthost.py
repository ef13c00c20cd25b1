"""Issue 16: the smarthost refuses connections, then answers 451, then 421 and hangs up, then recovers.
Every copy is delivered once, and no copy is tried again sooner than the retry schedule allows
(short retry settings: first after 1 s, at most 2 s; the pause after a "slow down" shortened to 1 s)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from engine.config import Settings
from engine.outbound import throttle
from engine.outbound.models import Delivery, DeliveryState
from engine.posting.models import Message, MessageState
from tests.engine.conftest import wait_until
from tests.support import crowd
from tests.support.sink import Sink, SinkHandler, reserve

SIZE = 60
FIRST = 1.0  # seconds: PALANQUEE_RETRY_FIRST of this test


@dataclass
class Moody(SinkHandler):
    """A relay whose mood the test sets: ``451``, ``421`` (then it hangs up) or ``ok``; it notes when
    each address was tried and what it was told."""

    mood: str = "451"
    tries: dict[str, list[tuple[float, str]]] = field(default_factory=lambda: defaultdict(list))

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        mood = self.mood
        reply = {"451": "451 4.3.0 Temporary local problem, try again later",
                 "421": "421 4.3.2 Service shutting down, closing transmission channel"}.get(mood, "")
        self.tries[address].append((time.monotonic(), mood))
        if not reply:
            return await super().handle_RCPT(server, session, envelope, address, rcpt_options)
        if mood == "421":  # RFC 5321 §3.8: the server closes the session after its 421
            transport = server.transport
            assert transport is not None
            asyncio.get_running_loop().call_soon(transport.close)
        return reply


def told(handler: Moody, mood: str) -> set[str]:
    return {address for address, tries in list(handler.tries.items()) if any(m == mood for _, m in tries)}


def test_refused_then_451_then_421_then_recovered_delivers_everything_once_on_schedule(
        start_engine, engine_settings: Settings, db, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(throttle, "COOLDOWN", timedelta(seconds=0.5))  # a 421 puts a group off 2 × this
    audience = crowd.seed(SIZE)
    everyone = audience.recipients()
    down = reserve()  # bound, not listening: the relay refuses connections
    settings = dataclasses.replace(engine_settings, smarthost=f"smtp://127.0.0.1:{down.getsockname()[1]}",
                                   retry_first=timedelta(seconds=FIRST), retry_max=timedelta(seconds=2),
                                   delivery_connections=2)
    engine = start_engine(settings)
    crowd.send(engine.bound["smtp"][1], crowd.post(audience))
    wait_until(lambda: Delivery.select().where(Delivery.state == DeliveryState.DEFERRED).count() == SIZE,
               timeout=60, what="every copy deferred: connection refused")
    assert all("4.4.2" in d.last_reply for d in Delivery.select())
    handler = Moody()
    relay = Sink(handler, sock=down)  # the relay comes up on its port, answering 451
    relay.start()
    try:
        phase(handler, "451", lambda: told(handler, "451") == everyone, "every address told 451")
        phase(handler, "421", lambda: len(told(handler, "421")) >= 3, "three sessions ended by a 421")
        phase(handler, "ok", lambda: Message.get().state == MessageState.DONE, "the send done")
    finally:
        relay.stop()
    assert sorted(handler.by_recipient()) == sorted(everyone)
    assert all(len(copies) == 1 for copies in handler.by_recipient().values())  # once each
    rows = list(Delivery.select())
    assert {d.state for d in rows} == {DeliveryState.SENT}
    for row in rows:
        tries = handler.tries[row.address]
        assert row.attempts >= len(tries) + 1  # the refused connection counts too
        gaps = [later - earlier for (earlier, mood), (later, _) in zip(tries, tries[1:], strict=False)
                if mood == "451"]
        assert all(gap >= FIRST * 0.95 for gap in gaps), (row.address, gaps)  # never sooner than the schedule


def phase(handler: Moody, mood: str, until: Callable[[], object], what: str) -> None:
    handler.mood = mood
    wait_until(until, timeout=90, what=what)


def test_a_slow_down_puts_an_unpaced_groups_copies_off_together_not_a_minute_apart() -> None:
    """The default rule has no rate to halve: a 421 puts its leftover copies off once (2 × COOLDOWN),
    where it used to space them a minute apart (a thousand copies left: sixteen hours)."""
    from datetime import datetime

    from engine.outbound.models import ThrottleState

    now = datetime(2026, 11, 30, 12, 0)
    state = ThrottleState(key="default", tat=now, horizon=now, hour_start=now, day_start=now, factor_at=now)
    times = throttle.slow_one(state, throttle.Group("default", "default"), 1000, now)
    assert set(times) == {now + 2 * throttle.COOLDOWN}
