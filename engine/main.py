"""``palanquee engine``'s process: one engine in the foreground, with its intake workers and delivery helpers.

``serve()`` builds the engine (``engine/runtime.py``), starts its child processes once it listens — intake workers
(``PALANQUEE_INTAKE_PROCESSES``, ``engine/prefork.py``) and delivery helpers (``PALANQUEE_DELIVERY_PROCESSES``) —
supervises them (``engine/supervision.py``: one that exits is started again, a group that keeps dying makes the
engine exit with status 1), and on SIGTERM or Ctrl-C stops the engine and every child cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

from engine import intake_pressure, logs, prefork
from engine.config import Settings
from engine.runtime import Engine
from engine.supervision import Children, DeliveryHelpers, die_with_parent

log = logging.getLogger("palanquee.engine")
__all__ = ["die_with_parent", "serve"]


def _child_environment(settings: Settings, number: int) -> dict[str, str]:
    """A child's environment: its metrics on the port after the engine's (``number`` after)."""
    environment = dict(os.environ)
    if settings.metrics_listen is not None:
        host, port = settings.metrics_listen
        environment["PALANQUEE_METRICS_LISTEN"] = f"[{host}]:{port + number if port else 0}" if ":" in host \
            else f"{host}:{port + number if port else 0}"
    return environment


def _children(settings: Settings) -> tuple[list[Children], dict[str, socket.socket] | None, socket.socket | None]:
    """The main engine's child groups (helpers, then workers), the listeners bound for its workers and its end of
    their signal channel."""
    groups: list[Children] = []
    if settings.delivery_processes > 1:
        groups.append(DeliveryHelpers(settings.delivery_processes - 1,
                                      lambda number: _child_environment(settings, number)))
    if settings.intake_processes <= 1:
        return groups, None, None
    sockets = prefork.bind_listeners(settings)
    receiver, workers_end = intake_pressure.channel()
    groups.append(prefork.IntakeWorkers(sockets, settings.intake_processes - 1, lambda number: _child_environment(
        settings, settings.delivery_processes - 1 + number), signal_socket=workers_end))
    return groups, sockets, receiver


def serve(settings: Settings, *, delivery_only: bool = False, intake_only: bool = False,
          sockets: dict[str, socket.socket] | None = None, signal_socket: socket.socket | None = None,
          on_ready: Callable[[dict[str, tuple[str, int]]], object] | None = None) -> None:
    """Run one engine in the foreground until SIGTERM or Ctrl-C; exit status 1 when a group of its children keeps
    dying. ``sockets`` and ``signal_socket``: an intake worker's listeners and its end of the signal channel, made
    by its engine. ``on_ready(bound)`` is called once it listens (``palanquee demo`` runs it as a child process).
    """
    groups: list[Children] = []
    if not (delivery_only or intake_only):
        groups, bound_sockets, signal_socket = _children(settings)
        sockets = bound_sockets or sockets
    listeners: dict[str, Any] = {} if sockets is None else {
        "smtp": sockets.get("smtp", False), "lmtp": sockets.get("lmtp", False)}
    engine = Engine(settings, delivery_only=delivery_only, intake_only=intake_only, intake_signal=signal_socket,
                    **listeners)
    logs.configure(settings.log_format, engine.name)

    def stop() -> None:
        engine.stop()
        for group in groups:
            group.terminate()

    try:
        asyncio.run(_main(engine, groups, stop, on_ready))
    finally:
        for group in groups:
            group.terminate()
        for group in groups:
            group.wait(30)
        if signal_socket is not None and not intake_only:
            signal_socket.close()
    if any(group.failed for group in groups):
        raise SystemExit(1)


async def _main(engine: Engine, groups: list[Children], stop: Callable[[], None],
                on_ready: Callable[[dict[str, tuple[str, int]]], object] | None) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    runner = asyncio.create_task(engine.run())
    while not engine.ready.is_set() and not runner.done():
        await asyncio.sleep(0.05)
    supervisors = []
    if engine.ready.is_set():
        for group in groups:
            group.start()
            supervisors.append(asyncio.create_task(group.supervise(stop)))
        _log_ready(engine)
        if on_ready is not None:
            on_ready(dict(engine.bound))
    try:
        await runner
    finally:
        for supervisor in supervisors:
            supervisor.cancel()


def _log_ready(engine: Engine) -> None:
    settings = engine.settings
    where = ", ".join(f"{kind} {host}:{port}" for kind, (host, port) in engine.bound.items())
    target = settings.smarthost or f"capture in {settings.capture_dir}"
    role = " (delivery only)" if engine.delivery_only else " (intake only)" if engine.intake_only else ""
    log.info("engine %s%s %s; delivering to %s", engine.name, role,
             f"listening on {where}" if where else "listening on nothing", target)

