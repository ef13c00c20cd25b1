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
import os
import re
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]
from gunicorn.workers.sync import SyncWorker  # type: ignore[import-untyped]

from engine import db as engine_db
from engine.config import Settings

MAX_WAITING = 1000  # connections a worker keeps waiting for their head; past it, the oldest is closed
MAX_HEAD = 64 * 1024  # bytes of request head read before handing over (gunicorn's own limits refuse more)
LINGER_BYTES = 1024 * 1024  # unread body drained after an answer, so that the client reads it (not a reset)
LINGER_SECONDS = 1.0
ENGINE_LISTENS = re.compile(r"\b(smtp|lmtp) (\S+):(\d+)")  # in the engine's start-up line (engine/runtime.py)


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
        for waiting in list(self.waiting.values()):
            self._close(waiting)

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
    """gunicorn run from Python, on an app built by ``create_app``."""

    def __init__(self, app: Flask, settings: Settings, on_ready: Callable[[str], object] = print,
                 listener: socket.socket | None = None) -> None:
        self.application, self.settings, self.on_ready, self.listener = app, settings, on_ready, listener
        super().__init__()

    def load_config(self) -> None:
        host, port = self.settings.web_listen
        GuardedWorker.header_timeout = self.settings.web_header_timeout.total_seconds()
        timeout = max(int(self.settings.web_timeout.total_seconds()), 1)
        if self.listener is not None:  # a socket bound already (the demo: port 0 known before the engine starts)
            self.listener.set_inheritable(True)
            bind = f"fd://{self.listener.fileno()}"
        else:
            bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        options = {
            "bind": bind,
            "workers": self.settings.web_workers,
            "worker_class": "portal.serving.GuardedWorker",
            "timeout": timeout,
            "graceful_timeout": timeout,
            "keepalive": 0,
            "preload_app": True,
            "proc_name": "palanquee-web",
            "errorlog": "-",
            "loglevel": "warning",
            "when_ready": self._when_ready,
        }
        for name, value in options.items():
            self.cfg.set(name, value)

    def _when_ready(self, arbiter: Any) -> None:
        for listener in arbiter.LISTENERS:
            host, port = listener.sock.getsockname()[:2]
            self.on_ready(f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/")

    def load(self) -> Flask:
        return self.application


def serve(app: Flask, settings: Settings, on_ready: Callable[[str], object] = print,
          listener: socket.socket | None = None) -> None:
    """Run the portal until SIGTERM or Ctrl-C; ``on_ready(url)`` once it listens (on ``listener`` when given)."""
    database = engine_db.database.obj
    if database is not None and not database.is_closed():
        database.close()  # nothing crosses the fork: each worker connects at its first request
    PortalServer(app, settings, on_ready, listener).run()


def start_engine(timeout: float = 60.0, env: dict[str, str] | None = None,
                 ) -> tuple[subprocess.Popen[bytes], dict[str, tuple[str, int]]]:
    """``palanquee engine`` as a child process (same environment plus ``env``, same instance) for
    ``palanquee demo``, and the addresses it listens on (read from its start-up line; its output is passed on)."""
    from engine.runtime import die_with_parent

    child = subprocess.Popen([sys.executable, "-m", "portal.cli", "engine"], stderr=subprocess.PIPE,
                             preexec_fn=die_with_parent, env={**os.environ, **(env or {})})
    bound: dict[str, tuple[str, int]] = {}
    ready = threading.Event()

    def relay() -> None:
        # Raw reads and writes: this thread may run while gunicorn forks, and must hold no lock then.
        assert child.stderr is not None
        source, target, seen = child.stderr.fileno(), sys.stderr.fileno(), b""
        while chunk := os.read(source, 65536):
            os.write(target, chunk)
            if not ready.is_set():
                seen += chunk
                if b" listening on " in seen and b"\n" in seen[seen.index(b" listening on "):]:
                    found = ENGINE_LISTENS.findall(seen.decode("utf-8", "replace"))
                    bound.update({kind: (host, int(port)) for kind, host, port in found})
                    ready.set()
        ready.set()  # the engine ended

    threading.Thread(target=relay, name="engine-output", daemon=True).start()
    if not ready.wait(timeout) or "smtp" not in bound:
        child.terminate()
        raise RuntimeError(f"the list engine did not start (exit status {child.wait(30)})")
    return child, bound
