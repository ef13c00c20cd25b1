"""The SMTP/LMTP intake served by several processes of one engine (``PALANQUEE_INTAKE_PROCESSES``), pre-fork style.

One engine is one core for Python (the GIL): to accept more posts a second, ``palanquee engine`` binds its
listening sockets once, then starts intake workers that accept on the very same sockets. Each worker is a fresh
interpreter (``palanquee engine --intake-only --smtp-fd N``, fork and exec), handed only the sockets' descriptors:
its own event loop, database thread and connection, nothing inherited from the engine (no database connection
crosses a fork). The kernel gives each new connection to one of the processes waiting in ``accept()``; a worker
that dies takes only its own sessions with it, the sockets stay open in the engine. The engine itself keeps
serving the intake too, and alone runs expansion, the scheduled jobs, the socketmap and its delivery.

Every guarantee of the intake holds in each worker (the same code: commit before 250, checks before 250, 554 for
poison, 452 for a full disk). On SQLite the processes share one file: each group of posts is stored in a
``BEGIN IMMEDIATE`` transaction that waits for the writer's lock (busy timeout); a lock still held after that
wait fails the store, which the intake answers 451, as any storage failure.

Supervision: a worker that exits while the engine runs is started again after a short pause; one that keeps
dying (``GIVE_UP`` exits within ``WINDOW`` seconds) stops the engine, which then exits with status 1 so that its
own supervisor (systemd) sees the failure. SIGTERM to the engine stops every worker (each stops cleanly); a
worker whose engine dies, even by SIGKILL, gets SIGTERM from the kernel (``die_with_parent``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

from engine.config import Settings

log = logging.getLogger("palanquee.engine")
RESTART_PAUSE = 0.5  # seconds before a dead worker is started again
GIVE_UP, WINDOW = 5, 60.0  # that many exits within that many seconds: the engine stops, exit status 1
POLL = 0.2  # seconds between two looks at the workers
BACKLOG = 1024  # connections waiting for an accept(), shared by every process


def bind(address: tuple[str, int]) -> socket.socket:
    """A listening TCP socket on ``address`` (port 0: one the system chooses), non-blocking, as asyncio binds."""
    family, kind, proto, _, where = socket.getaddrinfo(address[0], address[1], type=socket.SOCK_STREAM,
                                                       flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(where)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_listeners(settings: Settings) -> dict[str, socket.socket]:
    """The intake's listening sockets (``smtp``, and ``lmtp`` when it is on), bound once for every process."""
    sockets = {"smtp": bind(settings.smtp_listen)}
    if settings.lmtp_listen is not None:
        sockets["lmtp"] = bind(settings.lmtp_listen)
    return sockets


class IntakeWorkers:
    """``count`` intake worker processes accepting on ``sockets``; ``environment(n)`` is worker n's (from 1)."""

    def __init__(self, sockets: dict[str, socket.socket], count: int,
                 environment: Callable[[int], dict[str, str]], preexec: Callable[[], None] | None = None,
                 signal_socket: socket.socket | None = None) -> None:
        self.sockets, self.count, self.environment, self.preexec = sockets, count, environment, preexec
        self.signal_socket = signal_socket  # the workers' end of engine/intake_pressure.py's channel
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.exits: list[float] = []  # when workers exited on their own (monotonic)
        self.failed = False  # they kept dying: the engine must exit non-zero
        self.stopping = False
        self.restarts = 0

    def command(self) -> list[str]:
        fds = [arg for kind, sock in self.sockets.items() for arg in (f"--{kind}-fd", str(sock.fileno()))]
        if self.signal_socket is not None:
            fds += ["--signal-fd", str(self.signal_socket.fileno())]
        return [sys.executable, "-m", "portal.cli", "engine", "--intake-only", *fds]

    def start(self) -> None:
        if self.stopping:  # SIGTERM came while the engine started
            return
        for number in range(1, self.count + 1):
            self._spawn(number)

    def _spawn(self, number: int) -> None:
        self.processes[number] = subprocess.Popen(
            self.command(), env=self.environment(number), preexec_fn=self.preexec,
            pass_fds=[sock.fileno() for sock in self._inherited()])

    def _inherited(self) -> list[socket.socket]:
        return [*self.sockets.values(), *([self.signal_socket] if self.signal_socket is not None else [])]

    async def supervise(self, stop_engine: Callable[[], None]) -> None:
        """Start again each worker that exits while the engine runs; stop the engine if they keep dying."""
        while not self.stopping:
            for number, process in list(self.processes.items()):
                if process.poll() is None or self.stopping:
                    continue
                now = time.monotonic()
                self.exits = [moment for moment in self.exits if now - moment < WINDOW] + [now]
                log.error("intake worker %s (pid %s) exited with status %s", number, process.pid, process.returncode)
                if len(self.exits) >= GIVE_UP:
                    log.critical("intake workers exited %s times within %s s: the engine stops", len(self.exits),
                                 int(WINDOW))
                    self.failed = True
                    stop_engine()
                    return
                await asyncio.sleep(RESTART_PAUSE)
                if not self.stopping:
                    self._spawn(number)
                    self.restarts += 1
                    log.info("intake worker %s started again (pid %s)", number, self.processes[number].pid)
            await asyncio.sleep(POLL)

    def terminate(self) -> None:
        """Ask every worker to stop (SIGTERM: each finishes cleanly); they are not started again."""
        self.stopping = True
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30.0) -> None:
        """Wait for the workers to exit (SIGKILL for one still running after ``timeout``)."""
        self.terminate()
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("intake worker pid %s did not stop in %s s: killed", process.pid, timeout)
                process.kill()
                process.wait()
        for sock in self._inherited():
            sock.close()
