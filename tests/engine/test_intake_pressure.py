"""The intake's priority across processes (``engine/intake_pressure.py``): a worker's hints over a real socket pair.

The wake of the expansion is event-driven (nothing in the channel polls), fan-out is held while workers are busy
yet takes a step every ``MAX_PAUSE`` at worst (a simulated endless stream of posts), and a hint that cannot be sent
(the engine's buffer full, the engine gone) costs the worker nothing.
"""

from __future__ import annotations

import asyncio
import socket

from engine import intake_pressure
from engine.intake_pressure import HOLD, MAX_PAUSE, Pressure, Reporter
from tests.support import aio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_post_stored_by_a_worker_wakes_the_expansion_through_the_loop_at_once() -> None:
    async def scenario() -> tuple[int, bool]:
        receiver, sender = intake_pressure.channel()
        woken = asyncio.Event()
        pressure = Pressure()
        pressure.listen(asyncio.get_running_loop(), receiver, woken.set)
        try:
            Reporter(sender).busy()  # a busy beat alone does not wake the expansion
            await asyncio.sleep(0)
            early = woken.is_set()
            Reporter(sender).stored()
            await asyncio.wait_for(woken.wait(), 30)  # no timer in the channel: only the datagram can set it
            return pressure.stored, early
        finally:
            asyncio.get_running_loop().remove_reader(receiver.fileno())
            receiver.close()
            sender.close()

    stored, early = aio.run(scenario())
    assert (stored, early) == (1, False)


def test_fan_out_is_held_while_workers_are_busy_but_never_longer_than_max_pause() -> None:
    clock = Clock()
    pressure = Pressure(clock)
    start, steps = clock.now, [clock.now]
    pressure.last_turn = clock.now
    while clock.now - start < 10.0:  # a worker beating every 10 ms for 10 s: an endless burst
        clock.now += 0.01
        pressure.last_busy = clock.now
        if pressure.delay(clock.now) == 0:
            pressure.last_turn = clock.now
            steps.append(clock.now)
    gaps = [later - earlier for earlier, later in zip(steps, steps[1:], strict=False)]
    assert len(steps) >= 10 / MAX_PAUSE - 1  # fan-out kept moving
    assert max(gaps) <= MAX_PAUSE + 0.011  # held: no step closer than the pause, none further apart
    assert min(gaps) >= MAX_PAUSE - 1e-9


def test_fan_out_runs_at_once_when_the_workers_are_quiet() -> None:
    clock = Clock()
    pressure = Pressure(clock)
    assert pressure.delay(clock.now) == 0 and not pressure.busy()  # no worker ever spoke
    pressure.last_busy = pressure.last_turn = clock.now
    assert pressure.busy() and 0 < pressure.delay(clock.now) <= HOLD + 1e-9
    clock.now += HOLD * 1.001
    assert pressure.delay(clock.now) == 0 and not pressure.busy()


def test_turn_waits_for_the_workers_to_be_quiet_then_lets_fan_out_go() -> None:
    async def scenario() -> int:
        pressure = Pressure()
        pressure.last_busy = pressure.last_turn = pressure.clock()
        await asyncio.wait_for(pressure.turn(), 30)
        assert pressure.clock() - pressure.last_busy >= HOLD or pressure.clock() - pressure.last_turn < 1
        return pressure.held

    assert aio.run(scenario()) == 1


def test_a_hint_that_cannot_be_sent_costs_the_worker_nothing() -> None:
    receiver, sender = intake_pressure.channel()
    try:
        filled = 0
        while True:  # nobody reads: the buffer fills up
            try:
                sender.send(b"b")
                filled += 1
            except BlockingIOError:
                break
        Reporter(sender).stored()  # neither blocks nor raises
        receiver.close()
        Reporter(sender).stored()  # the engine gone
        assert filled > 0
    finally:
        sender.close()


def test_stray_datagrams_only_count_as_busy() -> None:
    async def scenario() -> tuple[int, bool]:
        receiver, sender = intake_pressure.channel()
        pressure, woken = Pressure(), asyncio.Event()
        pressure.listen(asyncio.get_running_loop(), receiver, woken.set)
        try:
            for junk in (b"x" * 64, b"\x00", b"ss"):
                sender.send(junk)
            sender.send(intake_pressure.BUSY)
            deadline = asyncio.get_running_loop().time() + 30
            while not pressure.busy():  # the reader runs on the loop's next turns
                assert asyncio.get_running_loop().time() < deadline, "the busy hint was never read"
                await asyncio.sleep(0.001)
            return pressure.stored, woken.is_set()
        finally:
            asyncio.get_running_loop().remove_reader(receiver.fileno())
            receiver.close()
            sender.close()

    assert aio.run(scenario()) == (0, False)


def test_the_channel_is_a_datagram_pair() -> None:
    receiver, sender = intake_pressure.channel()
    try:
        assert receiver.type == socket.SOCK_DGRAM and not receiver.getblocking() and not sender.getblocking()
    finally:
        receiver.close()
        sender.close()
