"""Serving the portal in production: gunicorn's arbiter in the main process, a bounded pool of sync workers
(issue 11, finding 13). Flask's development server only runs under ``palanquee web --debug``.

A sync worker answers one request at a time, so a connection that never finishes its request head must not
hold one. Each worker therefore keeps the connections it accepts in a waiting room (a selector) until their
head has arrived, closing those that take longer than ``PALANQUEE_WEB_HEADER_TIMEOUT``; only then does it
handle the request, with ``PALANQUEE_WEB_TIMEOUT`` on every later read and write. Hundreds of half-open
connections cost file descriptors, never a worker. The app is built in the arbiter before the fork (a bad
setting or a database that is behind stops start-up at once) and holds no database connection there: each
worker opens its own at its first request.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import select
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]
from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]
from gunicorn.sock import TCP6Socket, TCPSocket  # type: ignore[import-untyped]
from gunicorn.workers.sync import SyncWorker  # type: ignore[import-untyped]

from engine import db as engine_db
from engine.config import Settings

MAX_WAITING = 1000  # connections a worker keeps waiting for their head; past it, the oldest is closed
MAX_HEAD = 64 * 1024  # bytes of request head read before handing over (gunicorn's own limits refuse more)
LINGER_BYTES = 1024 * 1024  # unread body drained after an answer, so that the client reads it (not a reset)
LINGER_SECONDS = 1.0


class Primed:
    """A connected socket whose first bytes (the request head) were already read: they are read again first."""

    def __init__(self, sock: socket.socket, head: bytes) -> None:
        self._sock, self._head = sock, head

    def recv(self, size: int, *flags: int) -> bytes:
        if self._head:
            chunk, self._head = self._head[:size], self._head[size:]
            return chunk
        return self._sock.recv(size, *flags)

    def close(self) -> None:
        """Close; when the client is still sending a body the app refused (413), read a bounded amount of it
        first, so that its TCP stack delivers the answer instead of a reset."""
        sock = self._sock
        with contextlib.suppress(OSError):
            if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(LINGER_SECONDS)
                drained, deadline = 0, time.monotonic() + LINGER_SECONDS
                while drained < LINGER_BYTES and time.monotonic() < deadline:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    drained += len(chunk)
        sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


@dataclass
class Waiting:
    sock: socket.socket
    addr: Any
    listener: Any
    deadline: float
    head: bytes = field(default=b"")


class GuardedWorker(SyncWorker):
    """gunicorn's sync worker, with a waiting room for connections whose request head is incomplete."""

    header_timeout = 10.0  # set from PALANQUEE_WEB_HEADER_TIMEOUT before the arbiter forks

    def run(self) -> None:
        self.room = selectors.DefaultSelector()
        self.waiting: dict[int, Waiting] = {}  # by file descriptor, oldest first
        for listener in self.sockets:
            listener.setblocking(False)
            self.room.register(listener, selectors.EVENT_READ, None)
        self.room.register(self.PIPE[0], selectors.EVENT_READ, "signal")  # a signal wakes the loop up
        try:
            self._serve_connections()
        finally:  # also on a quick exit (SIGINT, SIGQUIT raise SystemExit from the select)
            for waiting in list(self.waiting.values()):
                self._close(waiting)
            for listener in self.sockets:  # this process's copies; the arbiter keeps its own
                with contextlib.suppress(OSError):
                    listener.close()

    def _serve_connections(self) -> None:
        tick = self.timeout or 0.5
        while self.alive:
            self.notify()
            if not self.is_parent_alive():
                break
            now = time.monotonic()
            while self.waiting and (oldest := next(iter(self.waiting.values()))).deadline <= now:
                self._close(oldest)
            wait = min(tick, next(iter(self.waiting.values())).deadline - now) if self.waiting else tick
            for key, _events in self.room.select(max(wait, 0.0)):
                if key.data == "signal":
                    with contextlib.suppress(OSError):
                        os.read(self.PIPE[0], 64)
                elif key.data is None:
                    self._accept(key.fileobj)
                elif key.data.sock.fileno() in self.waiting:
                    self._receive(key.data)

    def _accept(self, listener: Any) -> None:
        for _ in range(64):  # what is queued now; the next turn takes the rest
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            if len(self.waiting) >= MAX_WAITING:
                self._close(next(iter(self.waiting.values())))
            waiting = Waiting(sock, addr, listener, time.monotonic() + self.header_timeout)
            self.waiting[sock.fileno()] = waiting
            self.room.register(sock, selectors.EVENT_READ, waiting)

    def _receive(self, waiting: Waiting) -> None:
        try:
            data = waiting.sock.recv(16384)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(waiting)
            return
        waiting.head += data
        if b"\r\n\r\n" in waiting.head or len(waiting.head) >= MAX_HEAD:
            self._forget(waiting)
            waiting.sock.settimeout(self.timeout or 1.0)  # every later read and write of this request
            self.handle(waiting.listener, Primed(waiting.sock, waiting.head), waiting.addr)
            self.notify()

    def _forget(self, waiting: Waiting) -> None:
        self.room.unregister(waiting.sock)
        del self.waiting[waiting.sock.fileno()]

    def _close(self, waiting: Waiting) -> None:
        self._forget(waiting)
        waiting.sock.close()


class PortalServer(BaseApplication):
    """gunicorn run from Python, on an app built by ``create_app`` and a socket already listening."""

    def __init__(self, app: Flask, settings: Settings, listener: socket.socket,
                 on_ready: Callable[[], object]) -> None:
        self.application, self.settings, self.listener, self.on_ready = app, settings, listener, on_ready
        super().__init__()

    def load_config(self) -> None:
        GuardedWorker.header_timeout = self.settings.web_header_timeout.total_seconds()
        timeout = max(int(self.settings.web_timeout.total_seconds()), 1)
        options = {
            "workers": self.settings.web_workers,
            "worker_class": "portal.serving.GuardedWorker",
            "timeout": timeout,
            "graceful_timeout": timeout,
            "keepalive": 0,
            "preload_app": True,
            "proc_name": "palanquee-web",
            "errorlog": "-",
            "loglevel": "warning",
            "when_ready": lambda _arbiter: self.on_ready(),
        }
        for name, value in options.items():
            self.cfg.set(name, value)

    def load(self) -> Flask:
        return self.application

    def run(self) -> None:
        """The arbiter, on the socket already listening (gunicorn takes it over and closes it in the end)."""
        arbiter = Arbiter(self)
        address = self.listener.getsockname()[:2]
        kind = TCP6Socket if self.listener.family == socket.AF_INET6 else TCPSocket
        arbiter.LISTENERS = [kind(address, self.cfg, arbiter.log, fd=self.listener.detach())]
        arbiter.run()


def serve(app: Flask, settings: Settings, listener: socket.socket, on_ready: Callable[[], object]) -> None:
    """Serve ``app`` on ``listener`` until SIGTERM or Ctrl-C; ``on_ready()`` once the workers may answer."""
    database = engine_db.database.obj
    if database is not None and not database.is_closed():
        database.close()  # nothing crosses the fork: each worker connects at its first request
    PortalServer(app, settings, listener, on_ready).run()


def start_engine(settings: Settings, timeout: float = 60.0) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """The list engine in a child process, for ``palanquee demo``: never in the process that forks the web
    workers. It gets these very settings (the demo's defaults, its bound ports) and delivers in one process;
    returns it and the addresses it listens on, once it listens."""
    from engine.supervision import die_with_parent

    read_end, write_end = os.pipe()
    child = subprocess.Popen([sys.executable, "-c", "from portal.serving import engine_main; engine_main()",
                              str(write_end)], stdin=subprocess.PIPE, pass_fds=(write_end,),
                             preexec_fn=die_with_parent)
    os.close(write_end)
    assert child.stdin is not None
    child.stdin.write(pickle.dumps(dataclasses.replace(settings, delivery_processes=1)))
    child.stdin.close()
    with os.fdopen(read_end, "rb") as ready:
        answered = select.select([ready], [], [], timeout)[0]
        line = ready.readline() if answered else b""
    if not line:
        child.terminate()
        raise RuntimeError(f"the list engine did not start (exit status {child.wait(30)})")
    return child, {kind: tuple(address) for kind, address in json.loads(line).items()}


def engine_main() -> None:
    """The child of ``start_engine``: settings pickled on standard input, the addresses written to a pipe."""
    from engine.main import serve as serve_engine

    settings = pickle.load(sys.stdin.buffer)
    ready = int(sys.argv[1])

    def tell(bound: dict[str, tuple[str, int]]) -> None:
        os.write(ready, json.dumps(bound).encode() + b"\n")
        os.close(ready)

    serve_engine(settings, on_ready=tell)
