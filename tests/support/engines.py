"""``palanquee engine`` processes for tests: started from settings, their ports read from their own log.

Each engine binds port 0 for its listeners and logs where it listens (text or JSON lines); the test
reads the ports from that line. ``kill()`` is a SIGKILL (a crash), ``terminate()`` a SIGTERM (a deploy).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import psutil

from engine.config import Settings
from tests.support.zygote import Zygote

LISTENING = re.compile(r"engine \S+ listening on ([^;\"]+);")  # the engine's line, not its helpers'
ADDRESS = re.compile(r"(smtp|lmtp|socketmap|metrics) ([0-9a-f.:]+):(\d+)")


def duration(value: timedelta) -> str:
    return f"{int(value.total_seconds())}s"


def environment(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment of an engine process with ``settings`` (loopback listeners on port 0, no DNS, one
    process), then ``overrides`` (``DELIVERY_BATCH="10"`` sets ``PALANQUEE_DELIVERY_BATCH``)."""
    values = {
        "DATABASE_URL": settings.database_url, "SECRET_KEY": settings.secret_key,
        "INSTANCE": str(settings.instance), "BASE_URL": settings.base_url, "SMTP_LISTEN": "127.0.0.1:0",
        "SMARTHOST": settings.smarthost, "INBOUND_AUTHENTICATION": "off", "DNS_RESOLVER": "none",
        "DELIVERY_PROCESSES": "1", "DELIVERY_CONNECTIONS": str(settings.delivery_connections),
        "DELIVERY_BATCH": str(settings.delivery_batch), "DELIVERY_LEASE": duration(settings.delivery_lease),
        "RETRY_FIRST": duration(settings.retry_first), "RETRY_MAX": duration(settings.retry_max),
        "ADMIN_EMAIL": settings.admin_email, **overrides}
    return {**os.environ, **{f"PALANQUEE_{name}": value for name, value in values.items()}}


@dataclass
class EngineProcess:
    """A running engine: its own child (``process``), or one a zygote forked (``process`` None)."""

    pid: int
    log: Path
    offset: int = 0  # where this process's lines start in ``log``
    bound: dict[str, tuple[str, int]] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def text(self) -> str:
        """What this process logged so far (nothing yet when a forked child has not opened its log)."""
        if not self.log.exists():
            return ""
        with open(self.log, "rb") as log:
            log.seek(self.offset)
            return log.read().decode(errors="replace")

    def running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        """A crash: SIGKILL, nothing recorded, nothing released."""
        self._signal(signal.SIGKILL)
        self.wait(30)

    def terminate(self, timeout: float = 60) -> int | None:
        """A deploy: SIGTERM, then the exit status (None for a zygote's child: its zygote reaped it)."""
        self._signal(signal.SIGTERM)
        return self.wait(timeout)

    def _signal(self, number: int) -> None:
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, number)

    def wait(self, timeout: float) -> int | None:
        if self.process is not None:
            return self.process.wait(timeout)
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > deadline:
                raise AssertionError(f"engine {self.pid} still runs")
            time.sleep(0.02)
        return None

    def metrics(self) -> str:
        host, port = self.bound["metrics"]
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=30) as answer:
            return str(answer.read().decode())


def listening(engine: EngineProcess, timeout: float = 90) -> EngineProcess:
    """Wait until ``engine`` logs where it listens; fill in ``bound``."""
    deadline = time.monotonic() + timeout
    while not (found := LISTENING.search(engine.text())):
        if not engine.running() or time.monotonic() > deadline:
            engine.kill()
            raise AssertionError(f"the engine did not start:\n{engine.text()[-3000:]}")
        time.sleep(0.02)
    engine.bound = {kind: (host, int(port)) for kind, host, port in ADDRESS.findall(found.group(0))}
    return engine


def offset_of(log: Path) -> int:
    return log.stat().st_size if log.exists() else 0


def launch(env: dict[str, str], log: Path) -> EngineProcess:
    """Start ``palanquee engine`` with ``env``, logging to ``log``, without waiting (``listening`` waits)."""
    offset = offset_of(log)
    with open(log, "ab") as output:
        process = subprocess.Popen([sys.executable, "-m", "portal.cli", "engine"], env=env, stdout=output,
                                   stderr=subprocess.STDOUT)
    return EngineProcess(process.pid, log, offset, process=process)


def start(env: dict[str, str], log: Path, timeout: float = 90) -> EngineProcess:
    """Start ``palanquee engine`` with ``env``, logging to ``log``; returns once it listens."""
    return listening(launch(env, log), timeout)


def start_many(count: int, env: dict[str, str], folder: Path, timeout: float = 120) -> list[EngineProcess]:
    """``count`` engines started at once (``engine-N.log`` in ``folder``); returns once all listen."""
    launched = [launch(env, folder / f"engine-{n}.log") for n in range(count)]
    try:
        return [listening(engine, timeout) for engine in launched]
    except BaseException:
        for engine in launched:
            engine.kill()
        raise


def fork(zygote: Zygote, env: dict[str, str], log: Path, timeout: float = 90) -> EngineProcess:
    """The same engine, forked from ``zygote`` (no imports to pay); returns once it listens."""
    offset = offset_of(log)
    return listening(EngineProcess(zygote.spawn(env, log), log, offset), timeout)


def children_of(engine: EngineProcess, flag: str) -> list[psutil.Process]:
    """The engine's live child processes started with ``flag`` (``--intake-only``, ``--delivery-only``): not a
    dead one its engine has yet to reap."""
    found = []
    for child in psutil.Process(engine.pid).children():
        try:
            if flag in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.Error:  # gone meanwhile
            continue
    return found


def kill_children_until_it_exits(engine: EngineProcess, flag: str, most: int = 5) -> set[int]:
    """SIGKILL each new child with ``flag`` as soon as it appears, until the engine exits (at most ``most``
    kills); the pids killed."""
    killed: set[int] = set()
    while engine.running():
        for child in children_of(engine, flag):
            if child.pid not in killed:
                killed.add(child.pid)
                child.kill()
        assert len(killed) <= most
        time.sleep(0.01)  # a look every 10 ms, not a spin
    return killed
