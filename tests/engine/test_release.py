"""``engine.db.release`` at the end of a test or a process: it closes no connection a live thread still holds.

A CI run crashed (SQLite) when a test's teardown released the pool while the engine it had started was still
querying in its thread: ``close_all`` closes connections other threads hold, and neither sqlite3 nor libpq
tolerates a close from another thread during a query. ``release`` now closes the connections of this thread,
of no thread and of threads that have ended, waits for the others, and fails naming the threads that kept theirs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import peewee
import pytest

from engine import db as engine_db
from engine.config import Settings
from engine.runtime import Engine, EngineThread
from tests.engine.conftest import Federation, settle
from tests.support.sink import Sink


class Holder:
    """A thread that checks a connection out of ``pool``, queries, and keeps it until told to go on."""

    def __init__(self, pool: peewee.Database, name: str = "holder") -> None:
        self.pool, self.go_on, self.holding = pool, threading.Event(), threading.Event()
        self.results: list[Any] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()
        assert self.holding.wait(30), "the holder did not check a connection out"

    def _run(self) -> None:
        try:
            self.pool.connect()
            self.results.append(self.pool.execute_sql("SELECT 1").fetchone()[0])
            self.holding.set()
            assert self.go_on.wait(60)
            self.results.append(self.pool.execute_sql("SELECT 2").fetchone()[0])  # its connection still works
            self.pool.close()
        except BaseException as exc:
            self.error = exc
            self.holding.set()

    def finish(self) -> None:
        self.go_on.set()
        self.thread.join(60)
        assert not self.thread.is_alive()


@pytest.fixture
def pool(db_url: str) -> Iterator[peewee.Database]:
    """A pool of its own on the test's database (the models stay bound to the test's)."""
    made = engine_db.make_database(db_url, pooled=True)
    yield made
    engine_db.release(made, timeout=0)


def test_release_leaves_a_live_threads_connection_to_it_and_names_the_thread(pool: peewee.Database) -> None:
    holder = Holder(pool, name="still-querying")
    pool.connect()
    pool.execute_sql("SELECT 1")
    with pytest.raises(engine_db.ConnectionStillInUse, match="still-querying"):
        engine_db.release(pool, timeout=0)
    assert engine_db.open_connections(pool) == 1  # ours closed; the holder's kept
    holder.finish()
    assert holder.error is None and holder.results == [1, 2]  # closed under it, the second query failed
    engine_db.release(pool, timeout=0)
    assert engine_db.open_connections(pool) == 0


def test_release_waits_for_a_live_thread_to_give_its_connection_back(pool: peewee.Database) -> None:
    holder = Holder(pool)
    released = threading.Thread(target=engine_db.release, args=(pool, 60.0))
    released.start()
    holder.finish()  # its connection checked back in: release closes it and returns
    released.join(60)
    assert not released.is_alive() and holder.error is None and holder.results == [1, 2]
    assert engine_db.open_connections(pool) == 0


def test_release_closes_what_ended_threads_left_checked_out(pool: peewee.Database) -> None:
    def leave_open() -> None:
        pool.connect()
        pool.execute_sql("SELECT 1")

    threads = [threading.Thread(target=leave_open) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert engine_db.open_connections(pool) == 3
    engine_db.release(pool, timeout=0)
    assert engine_db.open_connections(pool) == 0


def test_releasing_the_pool_of_a_running_engine_fails_instead_of_closing_its_connection(
        start_engine: Callable[..., Engine], db: peewee.Database, federation: Federation, sink: Sink) -> None:
    """The engine's database thread keeps its connection while the engine runs: the release a test made while
    its engine ran (``factories.close_bound_connection`` in its body) now fails, and the engine goes on."""
    engine = start_engine()
    assert engine.database is db  # shared(): the test's pool
    with pytest.raises(engine_db.ConnectionStillInUse, match="palanquee-db"):
        engine_db.release(db, timeout=0)
    settle(engine, federation, sink)  # a post taken, expanded and delivered through that connection


def test_an_engine_that_does_not_stop_is_reported_before_its_pool_is_released(
        engine_settings: Settings, db: peewee.Database) -> None:
    thread = EngineThread(engine_settings, smtp=("127.0.0.1", 0), lmtp=None, poll_seconds=0.1)
    thread.start()
    original = thread.engine.stop
    thread.engine.stop = lambda: None  # type: ignore[method-assign]  # the stop request is lost
    try:
        with pytest.raises(RuntimeError, match="did not stop"):
            thread.stop(timeout=0)
    finally:
        thread.engine.stop = original  # type: ignore[method-assign]
        thread.stop()
    assert not thread.thread.is_alive()
