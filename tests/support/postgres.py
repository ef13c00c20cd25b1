"""A throw-away PostgreSQL cluster on loopback for the test session (Debian's binaries, run as postgres)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bindir() -> str:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise RuntimeError("PostgreSQL server binaries not found: run `bash .ci/test` (installs postgresql)")
    return os.path.dirname(candidates[-1])


@dataclass
class Cluster:
    """One PostgreSQL server: ``url(name)`` gives a database URL on it."""

    folder: str
    port: int
    bindir: str

    def url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def psql(self, sql: str, database: str = "postgres") -> None:
        subprocess.run(
            [os.path.join(self.bindir, "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-d", database, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
            check=True, capture_output=True,
        )

    def stop_server(self) -> None:
        """Shut the server down as an operator's restart does (sessions are terminated)."""
        _as_postgres([os.path.join(self.bindir, "pg_ctl"), "-D", self.folder + "/data", "-m", "fast", "-w", "stop"])

    def start_server(self) -> None:
        """Start it again with the options it had (postmaster.opts), waiting until it accepts sessions."""
        _as_postgres([os.path.join(self.bindir, "pg_ctl"), "-D", self.folder + "/data", "-l", self.folder + "/log",
                      "-w", "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off "
                      "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200", "start"])

    def restart(self, while_down: Callable[[], object] | None = None) -> None:
        """``pg_ctl`` stop then start, as an operator's restart (every session is cut); ``while_down``
        runs in between, while the server is really unreachable."""
        self.stop_server()
        try:
            if while_down is not None:
                while_down()
        finally:
            self.start_server()

    def stop(self) -> None:
        _as_postgres([os.path.join(self.bindir, "pg_ctl"), "-D", self.folder + "/data", "-m", "immediate", "stop"],
                     check=False)
        shutil.rmtree(self.folder, ignore_errors=True)


def _as_postgres(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[bytes]:
    # initdb and pg_ctl refuse to run as root.
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=check, capture_output=True)


def _start_on_a_free_port(bindir: str, folder: str, tries: int = 5) -> int:
    """PostgreSQL binds its port itself (it cannot take a bound socket): offer it a free one, and offer
    another if some other process took that one in between ("could not bind" in its log)."""
    for _ in range(tries):
        port = free_port()
        started = _as_postgres([os.path.join(bindir, "pg_ctl"), "-D", folder + "/data", "-l", folder + "/log",
                                "-w", "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off "
                                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200", "start"],
                               check=False)
        if started.returncode == 0:
            return port
        with open(folder + "/log", errors="replace") as log:
            if "could not bind" not in log.read():
                started.check_returncode()
    raise RuntimeError(f"PostgreSQL found no free port in {tries} tries")


def start_cluster() -> Cluster:
    bindir = _bindir()
    folder = tempfile.mkdtemp(prefix="palanquee-pg-")
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
    _as_postgres([os.path.join(bindir, "initdb"), "-D", folder + "/data", "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--locale=C.UTF-8"])
    port = _start_on_a_free_port(bindir, folder)
    cluster = Cluster(folder, port, bindir)
    deadline = time.monotonic() + 60  # a loaded 2-core CI machine
    while True:
        try:
            cluster.psql("SELECT 1")
            return cluster
        except subprocess.CalledProcessError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
