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

Supervision (``engine/supervision.py``, as for the delivery helpers): a worker that exits while the engine runs is
started again after a short pause; workers that keep dying stop the engine, which then exits with status 1.
SIGTERM to the engine stops every worker (each stops cleanly); a worker whose engine dies, even by SIGKILL, gets
SIGTERM from the kernel. While workers are busy, they hold the engine's fan-out back (``engine/intake_pressure.py``).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from engine.config import Settings
from engine.supervision import Children, die_with_parent

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


class IntakeWorkers(Children):
    """``count`` intake worker processes accepting on ``sockets``; ``environment(n)`` is worker n's (from 1);
    ``signal_socket`` their end of ``engine/intake_pressure.py``'s channel."""

    kind = "intake worker"

    def __init__(self, sockets: dict[str, socket.socket], count: int,
                 environment: Callable[[int], dict[str, str]], preexec: Callable[[], None] | None = die_with_parent,
                 signal_socket: socket.socket | None = None) -> None:
        super().__init__(count, environment, preexec)
        self.sockets, self.signal_socket = sockets, signal_socket

    def arguments(self) -> list[str]:
        fds = [arg for kind, sock in self.sockets.items() for arg in (f"--{kind}-fd", str(sock.fileno()))]
        if self.signal_socket is not None:
            fds += ["--signal-fd", str(self.signal_socket.fileno())]
        return ["--intake-only", *fds]

    def _inherited(self) -> list[socket.socket]:
        return [*self.sockets.values(), *([self.signal_socket] if self.signal_socket is not None else [])]

    def pass_fds(self) -> list[int]:
        return [sock.fileno() for sock in self._inherited()]

    def wait(self, timeout: float = 30.0) -> None:
        """Wait for the workers to exit (SIGKILL after ``timeout``), then close the sockets they shared."""
        super().wait(timeout)
        for sock in self._inherited():
            sock.close()
