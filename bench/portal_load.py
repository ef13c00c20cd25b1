"""The production-server half of bench/portal.py: gunicorn (sync workers) serving a page to ``wrk`` with 50
connections rotating many members' session cookies, and the servers' CPU per request over their process trees.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

LUA = Path(__file__).with_name("rotate.lua")


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    not_2xx: int
    errors: int  # connect, read, write and timeout errors
    cpu_ms_per_request: float  # user + system of the server's processes, per request

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


class Server:
    """``gunicorn APP`` with ``workers`` sync workers on a loopback socket bound here (port 0), until ``stop()``."""

    def __init__(self, app: str, env: dict[str, str], workers: int = 2) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.sock.set_inheritable(True)
        self.port = self.sock.getsockname()[1]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"fd://{self.sock.fileno()}", "--workers", str(workers),
             "--worker-class", "sync", "--log-level", "warning", app],
            env={**os.environ, **env}, pass_fds=(self.sock.fileno(),))
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}")
            try:  # any HTTP answer: a worker serves (the baseline app has no /healthz: 404 will do)
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
                    conn.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                    if conn.recv(5) == b"HTTP/":
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("gunicorn did not start in time")

    def cpu_seconds(self) -> float:
        """User + system CPU of the master and its workers so far."""
        parent = psutil.Process(self.process.pid)
        total = 0.0
        for proc in [parent, *parent.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self.sock.close()


def run_wrk(server: Server, path: str, cookies: list[str], *, connections: int = 50, seconds: int = 10,
            user_agent: str = "palanquee-bench") -> LoadResult:
    """``wrk`` against ``path`` with a Lua script that gives each request the next member's cookie."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(cookies) + "\n")
        cookie_file = handle.name
    before = server.cpu_seconds()
    out = subprocess.run(["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
                          "-s", str(LUA), f"http://127.0.0.1:{server.port}{path}"],
                         env={**os.environ, "COOKIES": cookie_file, "USER_AGENT": user_agent},
                         capture_output=True, text=True, check=True).stdout
    cpu = server.cpu_seconds() - before
    os.unlink(cookie_file)
    summary = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    requests = int(summary["requests"])
    return LoadResult(requests, summary["seconds"], summary["p50_us"] / 1000, summary["p99_us"] / 1000,
                      int(summary["not_2xx"]), int(summary["errors"]), cpu / max(requests, 1) * 1000)
