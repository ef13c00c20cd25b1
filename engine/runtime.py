"""One engine process: SMTP/LMTP intake, expansion, delivery and scheduled jobs on one asyncio loop.

Database work runs in one dedicated thread (one connection, in order); the loop itself only
speaks SMTP and renders copies. Nothing here assumes it is the only engine: expansion claims a
post with a conditional update, deliveries are claimed with leases (SKIP LOCKED on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from engine import db as engine_db
from engine import jobs, resolver
from engine.bounces import verp
from engine.config import Settings
from engine.intake.server import start_listeners
from engine.outbound.delivery import Transport, Worker, make_transport
from engine.outbound.outbox import next_due_at

log = logging.getLogger("palanquee.engine")


class Engine:
    """Build with settings, ``await run()`` until ``stop()``; ``ready`` is set once listening."""

    def __init__(self, settings: Settings, *, transport: Transport | None = None,
                 smtp: tuple[str, int] | None | bool = True, lmtp: tuple[str, int] | None | bool = True,
                 name: str | None = None, poll_seconds: float = 1.0, delivery_only: bool = False) -> None:
        self.settings = settings
        resolver.configure(settings.dns_resolver)
        self.delivery_only = delivery_only  # a helper process: no intake, expansion or jobs
        if delivery_only:
            smtp = lmtp = False
        self.smtp_address = settings.smtp_listen if smtp is True else (smtp or None)
        self.lmtp_address = settings.lmtp_listen if lmtp is True else (lmtp or None)
        self.transport = transport or make_transport(settings)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.poll_seconds = poll_seconds
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="palanquee-db")
        self.database = engine_db.shared(settings.database_url)
        self.ready = threading.Event()
        self.bound: dict[str, tuple[str, int]] = {}
        self._stopping: asyncio.Event | None = None
        self._wake_expand: asyncio.Event | None = None
        self._wake_delivery: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run_in_db(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, partial(self._call, function, args, kwargs))

    def _call(self, function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self.database.connect(reuse_if_open=True)
        return function(*args, **kwargs)

    def _accepted(self) -> None:
        if self._wake_expand is not None:
            self._wake_expand.set()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping, self._wake_expand, self._wake_delivery = asyncio.Event(), asyncio.Event(), asyncio.Event()
        await self.run_in_db(engine_db.check_schema, self.database)
        servers = await start_listeners(self.settings, self.run_in_db, verp.signing_key(self.settings),
                                        self._accepted, self.smtp_address, self.lmtp_address)
        for kind, server in zip([k for k, a in (("smtp", self.smtp_address), ("lmtp", self.lmtp_address)) if a],
                                servers, strict=True):
            host, port = server.sockets[0].getsockname()[:2]
            self.bound[kind] = (host, port)
        loops = [self._delivery_loop()] if self.delivery_only else [
            self._expand_loop(), self._delivery_loop(), self._jobs_loop()]
        tasks = [asyncio.create_task(coroutine) for coroutine in loops]
        self.ready.set()
        try:
            await self._stopping.wait()
        finally:
            for server in servers:
                server.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.transport.close()
            await self.run_in_db(self.database.close)
            self.executor.shutdown(wait=True)

    def stop(self) -> None:
        """Ask the engine to stop (from any thread)."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    async def _wait(self, event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
        event.clear()

    async def _expand_loop(self) -> None:
        assert self._wake_expand is not None and self._wake_delivery is not None
        while True:
            try:
                if await self.run_in_db(jobs.expand_accepted):
                    self._wake_delivery.set()
                    continue
            except Exception:
                log.exception("expansion failed; retrying")
            await self._wait(self._wake_expand, self.poll_seconds)

    async def _delivery_loop(self) -> None:
        assert self._wake_delivery is not None
        worker = Worker(self.settings, self.transport, self.run_in_db, self.name)
        while True:
            try:
                if await worker.run_until_idle():
                    continue
                due = await self.run_in_db(next_due_at)
            except Exception:
                log.exception("delivery batch failed; its claims return after their lease")
                due = None
            idle = self.poll_seconds if (due or self.delivery_only) else self.poll_seconds * 5
            await self._wait(self._wake_delivery, idle)

    async def _jobs_loop(self) -> None:
        scheduler = jobs.Scheduler()
        while True:
            try:
                await self.run_in_db(scheduler.run_due)
            except Exception:
                log.exception("scheduled jobs failed")
            await asyncio.sleep(self.poll_seconds)


class EngineThread:
    """The engine on its own loop in a background thread (the demo and the tests)."""

    def __init__(self, settings: Settings, **options: Any) -> None:
        self.engine = Engine(settings, **options)
        self.thread = threading.Thread(target=self._run, name="palanquee-engine", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self.engine.run())
        except BaseException as exc:  # surfaced by start()
            self.error = exc
            self.engine.ready.set()

    def start(self, timeout: float = 20.0) -> Engine:
        self.thread.start()
        if not self.engine.ready.wait(timeout):
            raise RuntimeError("the engine did not start in time")
        if self.error is not None:
            raise self.error
        return self.engine

    def stop(self, timeout: float = 20.0) -> None:
        self.engine.stop()
        self.thread.join(timeout)


def die_with_parent() -> None:
    """Linux: a helper gets SIGTERM when its engine dies, even by SIGKILL (its claims then expire)."""
    import ctypes
    import signal

    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def serve(settings: Settings, *, delivery_only: bool = False,
          on_ready: Callable[[dict[str, tuple[str, int]]], object] | None = None) -> None:
    """Run one engine in the foreground until SIGTERM or Ctrl-C (``palanquee engine``).

    With ``PALANQUEE_DELIVERY_PROCESSES`` above 1, the engine starts that many minus one helper
    processes that only deliver (claims are shared through the database), and stops them with it.
    ``on_ready(bound)`` is called once it listens (``palanquee demo`` runs it as a child process).
    """
    import signal
    import subprocess
    import sys

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command at INFO
    helpers: list[subprocess.Popen[bytes]] = []
    if not delivery_only:
        helpers = [subprocess.Popen([sys.executable, "-m", "portal.cli", "engine", "--delivery-only"],
                                    preexec_fn=die_with_parent)
                   for _ in range(settings.delivery_processes - 1)]
    engine = Engine(settings, delivery_only=delivery_only)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, engine.stop)
        runner = asyncio.create_task(engine.run())
        while not engine.ready.is_set() and not runner.done():
            await asyncio.sleep(0.05)
        if engine.ready.is_set():
            where = ", ".join(f"{kind} {host}:{port}" for kind, (host, port) in engine.bound.items())
            target = settings.smarthost or f"capture in {settings.capture_dir}"
            log.info("engine %s %s; delivering to %s", engine.name,
                     f"listening on {where}" if where else "(delivery only)", target)
            if on_ready is not None:
                on_ready(dict(engine.bound))
        await runner

    try:
        asyncio.run(main())
    finally:
        for helper in helpers:
            helper.terminate()
        for helper in helpers:
            helper.wait(30)
