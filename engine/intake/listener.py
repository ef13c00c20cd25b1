"""Accepting on a listening socket shared by the engine's intake processes: one connection per wake-up.

Every intake worker (``engine/prefork.py``) waits on the same listening socket, and the kernel wakes each of them
when connections arrive. asyncio's own server then accepts up to its backlog (100) in one go, so the worker
that runs first takes a whole burst: 14 of smtp-source's 20 sessions went to one of two workers in a benchmark
(docs/benchmarks.md), which then carried most of the load alone. Here a worker accepts one connection each
time its loop finds the socket readable; the socket stays readable while connections wait, so an idle worker
comes back for the next one at once and a busy one only after its current work: connections go where there is
time for them. Losing the race to another worker is normal (``BlockingIOError``). When the process runs out of
descriptors (EMFILE and the like) it stops accepting for a second, as asyncio does, leaving the connections
to the other workers.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("palanquee.intake")
OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
PAUSE_SECONDS = 1.0


class SharedListener:
    """The part of ``asyncio.Server`` the engine uses (``sockets``, ``close``), accepting one connection at a time."""

    def __init__(self, sock: socket.socket, factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self.sockets = [sock]
        self._sock, self._factory = sock, factory
        self._loop = asyncio.get_running_loop()
        self._connections: set[asyncio.Task[object]] = set()
        self._closed = False
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        try:
            connection, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return  # another worker took it
        except OSError as exc:
            if exc.errno in OUT_OF_RESOURCES:
                log.error("intake cannot accept (%s): pausing %s s, other workers take the connections",
                          exc, PAUSE_SECONDS)
                self._loop.remove_reader(self._sock.fileno())
                self._loop.call_later(PAUSE_SECONDS, self._resume)
            else:  # ECONNABORTED and the like: that connection is gone, the next may be fine
                log.info("intake accept failed: %s", exc)
            return
        connection.setblocking(False)
        task = self._loop.create_task(self._connect(connection))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _connect(self, connection: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, connection)
        except OSError as exc:  # the client left before its transport was made
            log.info("intake connection lost at once: %s", exc)
            connection.close()

    def _resume(self) -> None:
        if not self._closed:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting and close this process's descriptor of the socket (the others keep theirs)."""
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
