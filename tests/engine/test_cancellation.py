"""A stop cancels the engine's loops: no wait may swallow the cancellation.

A CI run on PostgreSQL had two engines that "did not stop within 60 s": their expansion loop ran on after the
stop (logging for minutes against a database already dropped), so the stop, which waits for every loop, never
ended. Python 3.11's ``asyncio.wait_for`` returns normally when the cancellation arrives while the awaited
event has just been set, or turns it into a ``TimeoutError`` when it arrives as the time runs out; the loops'
``_wait`` suppressed that ``TimeoutError``. These tests make the first case happen deterministically.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from engine.runtime import Engine
from tests.support import aio

ENGINE = Path(__file__).resolve().parents[2] / "engine"


async def outcomes(wait: Callable[[asyncio.Event, float], Awaitable[None]]) -> list[str]:
    """Cancel a wait 0, 1, 2, 3 loop turns after its event is set: what each cancelled wait did."""
    seen = []
    for turns in range(4):
        event = asyncio.Event()
        task = asyncio.create_task(wait(event, 30.0))
        await asyncio.sleep(0)  # the wait is under way
        await asyncio.sleep(0)
        event.set()
        for _ in range(turns):
            await asyncio.sleep(0)
        asked = task.cancel()  # False once the wait has returned: nothing to cancel any more
        try:
            await task
        except asyncio.CancelledError:
            seen.append("cancelled")
        else:
            seen.append("swallowed" if asked else "returned before")
    return seen


def test_a_wait_cancelled_as_its_event_is_set_is_cancelled() -> None:
    seen = aio.run(outcomes(Engine._wait))
    assert "swallowed" not in seen, seen
    assert seen[0] == "cancelled"  # the case the test is for did happen


def test_a_wait_ends_when_its_time_runs_out_or_its_event_is_set_and_clears_the_event() -> None:
    async def both() -> list[bool]:
        quiet, woken = asyncio.Event(), asyncio.Event()
        await Engine._wait(quiet, 0.01)  # the time runs out
        asyncio.get_running_loop().call_soon(woken.set)
        waiting = asyncio.create_task(Engine._wait(woken, 30.0))
        done, _ = await asyncio.wait([waiting], timeout=20.0)  # the event ends it, long before its 30 s
        return [waiting in done, woken.is_set()]

    assert aio.run(both()) == [True, False]  # ended, and the event cleared for the next round


def test_the_engine_does_not_use_wait_for() -> None:
    # Each use of Python 3.11's wait_for is a stop that may hang (or a connection leaked at a stop):
    # asyncio.timeout() passes a cancellation on.
    uses = [f"{path.relative_to(ENGINE.parent)}:{number}" for path in sorted(ENGINE.rglob("*.py"))
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if re.search(r"\bwait_for\(", line) and not line.lstrip().startswith("#")]
    assert uses == []
