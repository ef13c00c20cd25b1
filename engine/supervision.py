"""Child processes of one engine, supervised: started again when one exits, the engine stopped when they keep dying.

An engine's intake workers (``engine/prefork.py``) and its delivery helpers (``PALANQUEE_DELIVERY_PROCESSES``) are
groups of fresh interpreters (fork and exec) it starts once it listens. A child that exits while the engine runs is
started again after ``RESTART_PAUSE``; when the children of one group exit ``GIVE_UP`` times within ``WINDOW`` seconds
the engine stops and exits with status 1, so that its own supervisor (systemd) sees the failure rather than an
engine running with fewer processes than configured. SIGTERM to the engine sends SIGTERM to every child (each stops
cleanly, as an engine does) and the engine waits for them, SIGKILL after a timeout; a child whose engine dies, even by
SIGKILL, gets SIGTERM from the kernel (``die_with_parent``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable

log = logging.getLogger("palanquee.engine")
RESTART_PAUSE = 0.5  # seconds before a dead child is started again
GIVE_UP, WINDOW = 5, 60.0  # that many exits within that many seconds: the engine stops, exit status 1
POLL = 0.2  # seconds between two looks at the children


def die_with_parent() -> None:
    """Linux: a child gets SIGTERM when its engine dies, even by SIGKILL (its claims then expire)."""
    import ctypes

    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Children:
    """``count`` children running ``arguments`` after ``palanquee engine``; ``environment(n)`` is child n's (from
    1); ``kind`` names one in the logs ("intake worker"). ``pass_fds`` are inherited by each."""

    kind = "child"

    def __init__(self, count: int, environment: Callable[[int], dict[str, str]],
                 preexec: Callable[[], None] | None = die_with_parent) -> None:
        self.count, self.environment, self.preexec = count, environment, preexec
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.exits: list[float] = []  # when children exited on their own (monotonic)
        self.failed = False  # they kept dying: the engine must exit non-zero
        self.stopping = False
        self.restarts = 0

    def arguments(self) -> list[str]:
        return []

    def pass_fds(self) -> list[int]:
        return []

    def command(self) -> list[str]:
        return [sys.executable, "-m", "portal.cli", "engine", *self.arguments()]

    def start(self) -> None:
        if self.stopping:  # SIGTERM came while the engine started
            return
        for number in range(1, self.count + 1):
            self._spawn(number)

    def _spawn(self, number: int) -> None:
        self.processes[number] = subprocess.Popen(self.command(), env=self.environment(number),
                                                  preexec_fn=self.preexec, pass_fds=self.pass_fds())

    async def supervise(self, stop_engine: Callable[[], None]) -> None:
        """Start again each child that exits while the engine runs; stop the engine if they keep dying."""
        while not self.stopping:
            for number, process in list(self.processes.items()):
                if process.poll() is None or self.stopping:
                    continue
                if self._gave_up(number, process):
                    stop_engine()
                    return
                await asyncio.sleep(RESTART_PAUSE)
                if not self.stopping:
                    self._spawn(number)
                    self.restarts += 1
                    log.info("%s %s started again (pid %s)", self.kind, number, self.processes[number].pid)
            await asyncio.sleep(POLL)

    def _gave_up(self, number: int, process: subprocess.Popen[bytes]) -> bool:
        """Count the exit of child ``number``; true when this group kept dying (``failed``)."""
        now = time.monotonic()
        self.exits = [moment for moment in self.exits if now - moment < WINDOW] + [now]
        log.error("%s %s (pid %s) exited with status %s", self.kind, number, process.pid, process.returncode)
        if len(self.exits) >= GIVE_UP:
            log.critical("%ss exited %s times within %s s: the engine stops", self.kind, len(self.exits), int(WINDOW))
            self.failed = True
        return self.failed

    def terminate(self) -> None:
        """Ask every child to stop (SIGTERM: each finishes cleanly); they are not started again."""
        self.stopping = True
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30.0) -> None:
        """Wait for the children to exit (SIGKILL for one still running after ``timeout``)."""
        self.terminate()
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s pid %s did not stop in %s s: killed", self.kind, process.pid, timeout)
                process.kill()
                process.wait()


class DeliveryHelpers(Children):
    """``PALANQUEE_DELIVERY_PROCESSES`` − 1 processes that only deliver (claims are shared through the database)."""

    kind = "delivery helper"

    def arguments(self) -> list[str]:
        return ["--delivery-only"]
