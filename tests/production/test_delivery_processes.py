"""The delivery helpers of one engine (``PALANQUEE_DELIVERY_PROCESSES``), supervised as its intake workers are.

Real ``palanquee engine`` processes on loopback (``engine/supervision.py``): a killed helper is started again and
the copies still get delivered, helpers that keep dying make the engine exit with status 1, SIGTERM stops them all.
"""

from __future__ import annotations

from pathlib import Path

import psutil

from engine.config import Settings
from engine.heartbeat import EngineHeartbeat
from engine.posting.models import Message, MessageState
from tests.engine.conftest import Federation, wait_until
from tests.engine.test_engine_e2e import post
from tests.production.test_intake_processes import reply_to
from tests.support import engines
from tests.support.sink import Sink


def helpers_of(engine: engines.EngineProcess) -> list[psutil.Process]:
    return engines.children_of(engine, "--delivery-only")


def started(env: dict[str, str], log: Path, helpers: int) -> engines.EngineProcess:
    """The engine, once its ``helpers`` delivery helpers beat (their loop and connection are up)."""
    engine = engines.start(env, log)
    wait_until(lambda: EngineHeartbeat.select().where(EngineHeartbeat.role == "delivery").count() == helpers,
               timeout=60, what=f"{helpers} delivery helpers beating")
    return engine


def test_a_killed_delivery_helper_is_started_again_and_sigterm_stops_every_helper(
        federation: Federation, sink: Sink, engine_settings: Settings, tmp_path: Path) -> None:
    env = engines.environment(engine_settings, DELIVERY_PROCESSES="3")
    engine = started(env, tmp_path / "engine.log", helpers=2)
    try:
        first = helpers_of(engine)
        assert len(first) == 2
        first[0].kill()  # a crash: its claims wait out their lease, the others deliver meanwhile
        wait_until(lambda: len(helpers_of(engine)) == 2 and first[0].pid not in {h.pid for h in helpers_of(engine)},
                   timeout=30, what="a new delivery helper")
        assert "delivery helper 1 started again" in engine.text()
        assert reply_to(engine, post(subject="Après")) == 250
        wait_until(lambda: Message.select().where(Message.state == MessageState.DONE).count() == 1, timeout=120,
                   what="the post delivered")
        helpers = helpers_of(engine)
    finally:
        assert engine.terminate() == 0
    assert psutil.wait_procs(helpers, timeout=30)[1] == []
    assert "did not stop" not in engine.text()  # each stopped on its SIGTERM, none had to be killed
    # every process said goodbye (each ran its graceful stop), but the killed one, which could not
    assert [row.name.rpartition(":")[2] for row in EngineHeartbeat.select()] == [str(first[0].pid)]


def test_delivery_helpers_that_keep_dying_make_the_engine_exit_with_status_1(
        federation: Federation, sink: Sink, engine_settings: Settings, tmp_path: Path) -> None:
    env = engines.environment(engine_settings, DELIVERY_PROCESSES="2")
    engine = started(env, tmp_path / "engine.log", helpers=1)
    try:
        killed = engines.kill_children_until_it_exits(engine, "--delivery-only")
        assert engine.wait(30) == 1
    finally:
        engine.kill()
    assert len(killed) == 5
    assert "delivery helpers exited 5 times" in engine.text()
