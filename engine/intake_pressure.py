"""The intake's priority across processes: intake workers tell their engine when they are busy and when they stored a post.

Within one process the database thread serves the intake before fan-out (``engine/dbthread.py``). With intake
workers (``engine/prefork.py``) the intake runs in other processes, so the engine's fan-out would run at full speed
beside them on the same cores. One datagram socket pair, made by the engine before it starts its workers, carries
two hints from every worker to the engine (each datagram whole, from any process; ``SOCK_DGRAM`` over ``AF_UNIX``):

- ``b"b"`` (*busy*): the worker made an intake call (RCPT, DATA) — at most one every ``BEAT`` seconds;
- ``b"s"`` (*stored*): the worker committed a post ready to expand; the engine's expansion is woken at once,
  through the event loop's reader on the socket, not at its next poll.

While a worker was busy within the last ``HOLD`` seconds the engine's fan-out is *held*: its expansion and its
delivery wait before each step (one post expanded, one batch claimed). Held is not starved: while held, fan-out
still takes one step every ``MAX_PAUSE`` seconds at least, so under an endless stream of posts the queue keeps
moving (about a quarter of a core's worth at worst); the moment the workers are quiet for ``HOLD``, fan-out runs
at full speed. The hints are only hints: a datagram lost (the engine's buffer full) costs at most a poll's delay,
a worker that never says anything leaves fan-out as it was without workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import time
from collections.abc import Callable

BUSY, STORED = b"b", b"s"
BEAT = 0.02  # seconds: a busy worker says so at most this often
HOLD = 0.1  # seconds: fan-out stays held this long after the last busy beat
MAX_PAUSE = 0.25  # seconds: while held, fan-out still takes a step at least this often (never starved)

Clock = Callable[[], float]


def channel() -> tuple[socket.socket, socket.socket]:
    """The engine's end (it reads) and the end its workers inherit (they write), both non-blocking."""
    receiver, sender = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.setblocking(False)
    sender.setblocking(False)
    return receiver, sender


class Reporter:
    """A worker's side: ``busy()`` at each intake call, ``stored()`` once a post ready to expand is committed."""

    def __init__(self, sock: socket.socket, clock: Clock = time.monotonic) -> None:
        self.sock, self.clock = sock, clock
        self._last = -math.inf

    def busy(self) -> None:
        now = self.clock()
        if now - self._last >= BEAT:
            self._last = now
            self._send(BUSY)

    def stored(self) -> None:
        self._last = self.clock()
        self._send(STORED)

    def _send(self, what: bytes) -> None:
        # a full buffer (the engine is behind) or an engine gone: a hint lost, nothing else
        with contextlib.suppress(OSError):
            self.sock.send(what)


class Pressure:
    """The engine's side: reads its workers' hints, and makes fan-out wait its ``turn()`` while they are busy."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.last_busy = -math.inf
        self.last_turn = -math.inf
        self.stored = 0  # posts the workers said they stored (tests read it)
        self.held = 0  # turns that had to wait (benchmarks read it)

    def busy(self) -> bool:
        return self.clock() - self.last_busy < HOLD

    def delay(self, now: float) -> float:
        """Seconds fan-out must still wait at ``now``: none when the workers are quiet or when its last step is
        ``MAX_PAUSE`` old (held, never starved); else until the first of the two."""
        if now - self.last_busy >= HOLD or now - self.last_turn >= MAX_PAUSE:
            return 0.0
        return min(self.last_busy + HOLD, self.last_turn + MAX_PAUSE) - now

    async def turn(self) -> None:
        """Wait until fan-out may take its next step (at once when the workers are quiet)."""
        delay = self.delay(self.clock())
        if delay > 0:
            self.held += 1
        while delay > 0:
            await asyncio.sleep(delay)
            delay = self.delay(self.clock())
        self.last_turn = self.clock()

    def listen(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, on_stored: Callable[[], None]) -> None:
        """Read the workers' hints on ``loop`` as they arrive; ``on_stored()`` wakes the expansion."""
        loop.add_reader(sock.fileno(), self._read, sock, on_stored)

    def _read(self, sock: socket.socket, on_stored: Callable[[], None]) -> None:
        stored = False
        while True:
            try:
                hint = sock.recv(16)
            except (BlockingIOError, InterruptedError):
                break
            self.last_busy = self.clock()
            if hint == STORED:
                self.stored += 1
                stored = True
        if stored:
            on_stored()
