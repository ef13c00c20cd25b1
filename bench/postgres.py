"""PostgreSQL for the benchmarks: a server given by URL, or a private throw-away cluster on loopback, and
a fresh database on it for each run (created from the server URL's credentials, dropped afterwards)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

_numbers = itertools.count()


@dataclass
class Server:
    """A PostgreSQL server: ``url`` names any database on it that the user may connect to."""

    url: str
    pids: list[int]  # the server's processes when it is ours (their CPU is reported), else empty

    def database_url(self, name: str) -> str:
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path=f"/{name}"))

    def execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(sql)

    @contextmanager
    def fresh_database(self, prefix: str) -> Iterator[str]:
        """A new empty database for one run; its URL."""
        name = f"{prefix}_{os.getpid()}_{next(_numbers)}"
        self.execute(f"CREATE DATABASE {name}")
        try:
            yield self.database_url(name)
        finally:
            self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def server(url: str = "", private: bool = False) -> Iterator[Server | None]:
    """The server of ``url``; a private cluster when ``private`` and no URL; None for SQLite runs."""
    if url:
        yield Server(url, [])
        return
    if not private:
        yield None
        return
    from tests.support.postgres import start_cluster  # Debian's binaries, run as postgres

    cluster = start_cluster()
    try:
        with open(os.path.join(cluster.folder, "data", "postmaster.pid")) as pid_file:
            postmaster = int(pid_file.readline())
        yield Server(cluster.url("postgres"), [postmaster])
    finally:
        cluster.stop()


def count(url: str, sql: str) -> int:
    """One integer from ``sql`` on ``url`` (SQLite or PostgreSQL), read outside the engine."""
    if url.startswith("sqlite:"):
        import sqlite3

        connection = sqlite3.connect(f"file:{url[len('sqlite:///'):]}?mode=ro", uri=True, timeout=30)
        try:
            return int(connection.execute(sql).fetchone()[0])
        finally:
            connection.close()
    import psycopg

    with psycopg.connect(url) as connection:
        row = connection.execute(sql).fetchone()
        return int(row[0]) if row else 0


def tree_cpu(pids: list[int]) -> float:
    """User + system CPU seconds of processes, their live descendants and the children they reaped
    (PostgreSQL's backends come and go with connections), from psutil; compare two readings."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            own = process.cpu_times()
            total += own.user + own.system + own.children_user + own.children_system
            for member in process.children(recursive=True):
                times = member.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total
