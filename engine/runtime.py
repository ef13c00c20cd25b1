"""One engine process: SMTP/LMTP intake, expansion, delivery and scheduled jobs on one asyncio loop (``engine/main.py`` runs it as ``palanquee engine``).

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
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import peewee

from engine import clock, heartbeat, intake_pressure, jobs, resolver
from engine import db as engine_db
from engine.bounces import verp
from engine.config import Settings
from engine.dbthread import INTAKE, DatabaseThread, name_os_thread
from engine.intake import socketmap
from engine.intake.server import start_listeners
from engine.metrics import Metrics
from engine.outage import Outage
from engine.outbound import wakeup
from engine.outbound.delivery import Worker
from engine.outbound.outbox import next_due_at
from engine.outbound.transport import Transport, make_transport

log = logging.getLogger("palanquee.engine")
Listen = tuple[str, int] | socket.socket  # an address to bind, or a listening socket bound once (engine/prefork.py)
IDLE_PROBE = 1.0  # seconds: a database connection idle longer is checked before use


class Engine:
    """Build with settings, ``await run()`` until ``stop()``; ``ready`` is set once listening."""

    def __init__(self, settings: Settings, *, transport: Transport | None = None,
                 smtp: Listen | None | bool = True, lmtp: Listen | None | bool = True,
                 socketmap: tuple[str, int] | None | bool = True, metrics: tuple[str, int] | None | bool = True,
                 name: str | None = None, poll_seconds: float = 1.0, delivery_only: bool = False,
                 stop_grace: float = 30.0, intake_only: bool = False,
                 intake_signal: socket.socket | None = None) -> None:
        self.settings = settings
        resolver.configure(settings.dns_resolver)
        self.delivery_only = delivery_only  # a helper process: no intake, expansion or jobs
        self.intake_only = intake_only  # an intake worker (engine/prefork.py): no expansion, delivery or jobs
        if delivery_only:
            smtp = lmtp = False
        self.smtp_address: Listen | None = settings.smtp_listen if smtp is True else (smtp or None)
        self.lmtp_address: Listen | None = settings.lmtp_listen if lmtp is True else (lmtp or None)
        self.socketmap_address = None if delivery_only or intake_only else (
            settings.socketmap_listen if socketmap is True else (socketmap or None))
        self.metrics_address = settings.metrics_listen if metrics is True else (metrics or None)
        self.transport = transport or make_transport(settings)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.poll_seconds = poll_seconds
        self.database = engine_db.shared(settings.database_url)
        self.db_thread = DatabaseThread(lambda f, args, kwargs: self._call(f, args, kwargs), engine_db.write_transaction)
        self._probe_idle = not settings.is_sqlite  # a file cannot go away under a connection
        self._last_use = time.monotonic()
        self.ready = threading.Event()
        self.bound: dict[str, tuple[str, int]] = {}
        self._stopping: asyncio.Event | None = None
        self._wake_expand: asyncio.Event | None = None
        self._wake_delivery: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stop_grace = stop_grace
        self.idle = False  # the delivery loop waits for work (tests read it)
        self.wakeups = 0  # notifications received
        self.metrics = Metrics(self.database, settings.heartbeat_max_age)
        # intake workers' hints (engine/intake_pressure.py): a worker reports on it, its engine reads it
        self.reporter = intake_pressure.Reporter(intake_signal) if intake_signal and intake_only else None
        self.pressure = intake_pressure.Pressure() if intake_signal and not intake_only else None
        self._signal = intake_signal
        self.worker = Worker(settings, self.transport, self.run_in_db, self.name, self.metrics.copy_recorded,
                             pace=self._fan_out_turn)

    async def run_in_db(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``function`` in the database thread, after waiting intake calls (``engine/dbthread.py``)."""
        return await self.db_thread.submit(function, *args, **kwargs)

    async def run_intake(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run an intake call in the database thread, before waiting background work."""
        if self.reporter is not None:
            self.reporter.busy()
        return await self.db_thread.submit(function, *args, priority=INTAKE, **kwargs)

    async def store_post(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Store a post with the others waiting, in one transaction (group commit, ``engine/dbthread.py``)."""
        if self.reporter is not None:
            self.reporter.busy()
        return await self.db_thread.submit(function, *args, grouped=True, **kwargs)

    def _call(self, function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run ``function`` on this thread's connection: checked first when it sat idle (a PostgreSQL
        restart leaves it dead), dropped when it broke, so that the next call reconnects."""
        database = self.database
        if self._probe_idle and not database.is_closed() and time.monotonic() - self._last_use > IDLE_PROBE:
            try:
                database.execute_sql("SELECT 1")
            except Exception:
                engine_db.discard_connection(database)
        database.connect(reuse_if_open=True)
        try:
            return function(*args, **kwargs)
        except Exception:
            if engine_db.connection_lost(database):
                engine_db.discard_connection(database)
            raise
        finally:
            self._last_use = time.monotonic()

    def _work_queued(self) -> None:
        """Another engine queued work (LISTEN/NOTIFY): look now instead of at the next poll."""
        self.wakeups += 1
        for event in (self._wake_expand, self._wake_delivery):
            if event is not None:
                event.set()

    def _intake_waits(self) -> bool:
        """Intake calls wait for the database thread, or intake workers are busy (background work stops at its
        next step)."""
        return self.db_thread.waiting(INTAKE) > 0 or (self.pressure is not None and self.pressure.busy())

    async def _fan_out_turn(self) -> None:
        """Before each step of fan-out: wait while intake workers are busy, never for ever."""
        if self.pressure is not None:
            await self.pressure.turn()

    def _accepted(self) -> None:
        """A post ready to expand was committed: wake the expansion (a worker's engine, over the signal)."""
        if self.reporter is not None:
            self.reporter.stored()
        if self._wake_expand is not None:
            self._wake_expand.set()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.set_default_executor(ThreadPoolExecutor(  # asyncio's own, its threads named for the system
            thread_name_prefix="palanquee-work", initializer=name_os_thread, initargs=("palanquee-work",)))
        self._stopping, self._wake_expand, self._wake_delivery = asyncio.Event(), asyncio.Event(), asyncio.Event()
        try:
            await self.run_in_db(engine_db.check_schema, self.database)
        except BaseException:  # a schema behind: nothing started but the database thread and its connection
            await self._close_database()
            raise
        servers = await start_listeners(self.settings, self.run_intake, verp.signing_key(self.settings),
                                        self._accepted, self.smtp_address, self.lmtp_address,
                                        self.metrics.intake_reply, store_post=self.store_post)
        for kind, server in zip([k for k, a in (("smtp", self.smtp_address), ("lmtp", self.lmtp_address)) if a],
                                servers, strict=True):
            host, port = server.sockets[0].getsockname()[:2]
            self.bound[kind] = (host, port)
        if self.socketmap_address:  # Postfix in front asks it which recipients exist (no backscatter)
            server = await socketmap.start(self.run_intake, verp.signing_key(self.settings), self.socketmap_address)
            servers.append(server)
            self.bound["socketmap"] = server.sockets[0].getsockname()[:2]
        exporter = self.metrics.serve(self.metrics_address) if self.metrics_address else None
        if exporter is not None:
            self.bound["metrics"] = exporter.server_address[:2]
        if self.pressure is not None and self._signal is not None:
            self.pressure.listen(self._loop, self._signal, self._accepted)
        delivery = asyncio.create_task(self._delivery_loop())
        loops = [] if self.delivery_only or self.intake_only else [self._expand_loop(), self._jobs_loop()]
        role = "delivery" if self.delivery_only else "intake" if self.intake_only else "engine"
        loops.append(heartbeat.keep_beating(self.run_in_db, self.name, role, self.settings.heartbeat_max_age))
        if isinstance(self.database, peewee.PostgresqlDatabase) and not self.intake_only:
            loops.append(wakeup.listen(self.database, self._work_queued))
        others = [asyncio.create_task(coroutine) for coroutine in loops]
        self.ready.set()
        try:
            await self._stopping.wait()
        finally:
            if self.pressure is not None and self._signal is not None:
                self._loop.remove_reader(self._signal.fileno())
            for server in servers:
                server.close()
            if exporter is not None:
                exporter.shutdown()
                exporter.server_close()
            await self._finish(delivery, others)

    async def _finish(self, delivery: asyncio.Task[None], others: list[asyncio.Task[None]]) -> None:
        """A graceful stop: claim nothing more, let the copies on the wire get their replies, record
        them, give back the claims not tried, then close connections and the database."""
        self.worker.stop()
        for task in others:
            task.cancel()
        assert self._wake_delivery is not None
        self._wake_delivery.set()
        try:
            async with asyncio.timeout(self.stop_grace):
                await asyncio.shield(delivery)
        except TimeoutError:
            log.warning("copies still in flight after %s s: their claims return after the lease", self.stop_grace)
        except Exception:
            log.exception("delivery stopped with an error")
        delivery.cancel()
        await asyncio.gather(delivery, *others, return_exceptions=True)
        await self.transport.close()
        with contextlib.suppress(Exception):  # this process no longer handles mail (/healthz)
            await self.run_in_db(heartbeat.forget, self.name)
        await self._close_database()

    async def _close_database(self) -> None:
        """Close the database thread's connection, then end the thread (its pool may then be released)."""
        try:
            await self.run_in_db(engine_db.disconnect, self.database)
        finally:
            self.db_thread.shutdown()

    @property
    def stopping(self) -> bool:
        return self._stopping is not None and self._stopping.is_set()

    def stop(self) -> None:
        """Ask the engine to stop (from any thread)."""
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)

    @staticmethod
    async def _wait(event: asyncio.Event, seconds: float) -> None:
        """Until ``event`` is set or ``seconds`` pass. Not ``asyncio.wait_for``: Python 3.11's swallows a
        cancellation that arrives as the event is set or the time runs out, and a loop cancelled so at a
        stop ran on for ever (CI: "the engine did not stop within 60 s")."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()
        event.clear()

    async def _expand_loop(self) -> None:
        assert self._wake_expand is not None and self._wake_delivery is not None
        outage = Outage("expansion")
        while not self.stopping:
            try:
                await self._fan_out_turn()
                expanded = await self.run_in_db(jobs.expand_accepted, self._intake_waits)
                outage.ok()
                if expanded:
                    self._wake_delivery.set()
                    continue
            except Exception:
                await asyncio.sleep(outage.failed())
            await self._wait(self._wake_expand, self.poll_seconds)

    async def _delivery_loop(self) -> None:
        assert self._wake_delivery is not None
        worker, outage = self.worker, Outage("delivery")
        if self.intake_only:  # the engine that started this worker delivers
            return
        while not worker.stopping:
            try:
                if await worker.run_until_idle():
                    outage.ok()
                    continue
                due = await self.run_in_db(next_due_at)
                outage.ok()
            except Exception:
                await asyncio.sleep(outage.failed())
                due = None
            if worker.stopping:
                break
            idle = self.poll_seconds if (due or self.delivery_only) else self.poll_seconds * 5
            if due is not None:  # copies put off by throttling: wake at their slot, not a poll later
                idle = min(idle, max(0.005, (due - clock.now()).total_seconds()))
            self.idle = True
            await self._wait(self._wake_delivery, idle)
            self.idle = False
        await worker.recorder.drain()

    async def _jobs_loop(self) -> None:
        scheduler, outage = jobs.Scheduler(), Outage("scheduled jobs")
        while not self.stopping:
            try:
                await self.run_in_db(scheduler.run_due)
                outage.ok()
            except Exception:
                await asyncio.sleep(outage.failed())
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

    def start(self, timeout: float = 60.0) -> Engine:
        self.thread.start()
        if not self.engine.ready.wait(timeout):
            raise RuntimeError("the engine did not start in time")
        if self.error is not None:
            raise self.error
        return self.engine

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the engine and wait for its thread (its database thread is joined before it ends)."""
        self.engine.stop()
        self.thread.join(timeout)
        if self.thread.is_alive():  # whoever closes its database next would close it under the engine
            raise RuntimeError(f"the engine did not stop within {timeout} s")
