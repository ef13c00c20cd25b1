"""Issue 16: ``kill -9`` of the engine at 20 random points of a 10,000-recipient send, then a restart each
time: during intake, expansion, rendering, delivery and retries. Every recipient gets the post, and only
copies on the wire at a kill can arrive twice (at most two per connection per kill); the test prints how
many did. The random points come from a seed printed with the result (``PALANQUEE_CHAOS_SEED`` replays one).

Engines are forked from a zygote that imported the engine once (``tests/support/zygote.py``): twenty
restarts then cost twenty forks, not twenty seconds of imports.
"""

from __future__ import annotations

import os
import random
import smtplib
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import peewee as pw

from engine.config import Settings
from engine.outbound.models import Delivery, DeliveryState
from engine.posting.models import Message, MessageState
from tests.engine.conftest import wait_until
from tests.support import crowd, engines
from tests.support.engines import EngineProcess
from tests.support.sink import Sink, SinkHandler
from tests.support.zygote import Zygote

SIZE = int(os.environ.get("PALANQUEE_CHAOS_SIZE", "10000"))  # bench/chaos.py runs longer variants
KILLS = max(8, int(os.environ.get("PALANQUEE_CHAOS_KILLS", "20")))
CONNECTIONS = 4
GREYLISTED = frozenset(crowd.recipient(n) for n in range(37, SIZE, max(1, SIZE // 40)))  # 40, spread over the list


@dataclass
class Greylist:
    """451 to the greylisted addresses while ``on``; everything else is accepted."""

    on: bool = True

    def __call__(self, address: str, attempt: int) -> str:
        return "451 4.7.1 Greylisted, try again later" if self.on and address in GREYLISTED else "250 OK"


@dataclass
class Run:
    zygote: Zygote
    env: dict[str, str]
    log: Path
    sink: Sink
    engine: EngineProcess | None = None
    kills: list[tuple[str, str]] = field(default_factory=list)

    def start(self) -> EngineProcess:
        self.engine = engines.fork(self.zygote, self.env, self.log)
        return self.engine

    def kill(self, phase: str) -> None:
        assert self.engine is not None
        self.engine.kill()
        state = Message.select(Message.state).scalar() or "-"
        self.kills.append((phase, f"post {state}, {len(self.copies())} recipients reached"))

    def copies(self) -> Counter[str]:
        with self.sink.handler.lock:
            return Counter(rcpt for item in self.sink.handler.received for rcpt in item.rcpt_tos)


def plan(rng: random.Random) -> tuple[int, list[int]]:
    """How many kills fall in expansion (1–3), and the recipient counts at which delivery kills fall."""
    expansion = rng.randint(1, 3)
    deliveries = KILLS - 1 - expansion - 1 - 3  # intake, expansion, rendering, deliveries, three in retries
    return expansion, sorted(rng.sample(range(300, SIZE - 1000), deliveries))


def test_kill_9_at_20_points_of_a_10000_recipient_send(zygote: Zygote, engine_settings: Settings, db,
                                                     tmp_path: Path) -> None:
    seed = int(os.environ.get("PALANQUEE_CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    rng = random.Random(seed)
    audience = crowd.seed(SIZE)
    greylist = Greylist()
    sink = Sink(SinkHandler(script=greylist))
    sink.start()
    env = engines.environment(engine_settings, SMARTHOST=sink.url, DELIVERY_CONNECTIONS=str(CONNECTIONS),
                              DELIVERY_BATCH="100", DELIVERY_LEASE="3s", RETRY_FIRST="1s", RETRY_MAX="2s")
    run = Run(zygote, env, tmp_path / "engine.log", sink)
    try:
        expansions, thresholds = plan(rng)
        _intake(run, audience)
        _expansion(run, rng, expansions)
        _rendering(run)
        for threshold in thresholds:
            run.start()
            wait_until(lambda at=threshold: len(run.copies()) >= at, timeout=120, what=f"{threshold} recipients")
            run.kill("delivery")
        greylist.on = False  # the greylisted addresses are now taken at their next retry
        for quarter in (1, 2, 3):
            run.start()
            wait_until(lambda q=quarter: len(GREYLISTED & set(run.copies())) >= len(GREYLISTED) * q // 4,
                       timeout=120, what=f"{quarter}/4 of the retried copies")
            run.kill("retry")
        final = run.start()
        wait_until(lambda: Message.get().state == MessageState.DONE, timeout=180, what="the send done")
        final.terminate()
    finally:
        if run.engine is not None:
            run.engine.kill()
        sink.stop()
    _check(run, audience, seed)


def _intake(run: Run, audience: crowd.Crowd) -> None:
    """Killed in the middle of DATA: nothing is stored, the client's retry is the only post."""
    engine = run.start()
    data = crowd.post(audience).as_bytes()
    client = smtplib.SMTP(*engine.bound["smtp"], timeout=60)
    client.ehlo()
    client.mail(crowd.AUTHOR)
    client.rcpt(audience.address)
    assert client.docmd("DATA")[0] == 354
    client.send(data[: len(data) // 2])
    run.kill("intake (mid-DATA)")
    client.close()
    assert Message.select().count() == 0
    engine = run.start()
    crowd.send(engine.bound["smtp"][1], crowd.post(audience))  # the client tries again: 250


def _expansion(run: Run, rng: random.Random, count: int) -> None:
    """Killed a random moment after the post is accepted, or after a restart: while it is expanded (one
    transaction: a kill leaves it accepted, to be expanded again from the start) or just after."""
    time.sleep(rng.uniform(0.0, 0.5))
    run.kill("expansion")
    for _ in range(count - 1):
        run.start()
        time.sleep(rng.uniform(0.0, 0.6))
        run.kill("expansion")


def _rendering(run: Run) -> None:
    """Killed as soon as this engine has claimed copies: while it renders the post, before most copies leave."""
    engine = run.start()
    name = f"{socket.gethostname()}:{engine.pid}"
    wait_until(lambda: Delivery.select().where(Delivery.claimed_by == name).exists(), timeout=120,
               what="the first claim")
    run.kill("rendering")


def _check(run: Run, audience: crowd.Crowd, seed: int) -> None:
    copies = run.copies()
    duplicates = sum(copies.values()) - SIZE
    report = "\n".join(f"  kill {n:2}: {phase:18} {state}" for n, (phase, state) in enumerate(run.kills, 1))
    print(f"\nchaos seed {seed}: {len(run.kills)} kills, {duplicates} duplicate copies of {SIZE}\n{report}")
    assert len(run.kills) == KILLS
    assert set(copies) == audience.recipients(), "a recipient got nothing"
    delivering = sum(1 for phase, _ in run.kills if phase in ("rendering", "delivery", "retry"))
    assert 0 <= duplicates <= delivering * 2 * CONNECTIONS, (seed, duplicates)  # only copies on the wire
    assert Message.select().count() == 1 and Delivery.select().count() == SIZE  # stored once, expanded once
    assert {d.state for d in Delivery.select()} == {DeliveryState.SENT}
    attempts = dict(Delivery.select(Delivery.address, Delivery.attempts).tuples())
    tried = run.sink.handler.attempts
    assert all(attempts[address] >= tries for address, tries in tried.items()), "an attempt left no trace"
    assert Delivery.select(pw.fn.SUM(Delivery.attempts)).scalar() >= sum(tried.values())
