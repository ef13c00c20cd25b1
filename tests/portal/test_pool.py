"""The portal's connection pool: nothing left open by create_app, one connection per worker reused by every
request (pragmas once), and a forked worker that opens its own connection and leaves the parent's alone."""

from __future__ import annotations

import json
import os

import pytest

from engine import db as engine_db
from portal import create_app


def backend_identity(database) -> object:  # type: ignore[no-untyped-def]
    """Which server session answers: PostgreSQL's backend pid, or the SQLite connection object itself."""
    if database.param == "%s":
        return database.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
    return id(database.connection())


def test_create_app_leaves_nothing_open_and_requests_reuse_one_connection(settings):
    app = create_app(settings, config={"TESTING": True})
    database = engine_db.database.obj
    assert engine_db.open_connections(database) == 0  # a forking server's workers inherit nothing
    client = app.test_client()
    for _ in range(5):
        assert client.get("/login").status_code == 200
    assert engine_db.open_connections(database) == 1 and database.is_closed()  # back in the pool, idle


def test_sqlite_pragmas_run_once_per_connection(settings, backend, monkeypatch):
    if backend != "sqlite":
        pytest.skip("SQLite pragmas")
    app = create_app(settings, config={"TESTING": True})
    database = engine_db.database.obj
    calls = []
    original = database._set_pragmas
    monkeypatch.setattr(database, "_set_pragmas", lambda conn: (calls.append(conn), original(conn)))
    client = app.test_client()
    for _ in range(5):
        assert client.get("/login").status_code == 200
    assert len(calls) == 1
    database.connect()
    assert database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert database.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    database.close()


def _in_child(client, database, parent: object, write: int) -> None:  # type: ignore[no-untyped-def]
    report = {"inherited_open": engine_db.open_connections(database), "closed": database.is_closed()}
    report["status"] = client.get("/login").status_code
    database.connect(reuse_if_open=True)
    report["own"] = backend_identity(database) != parent
    report["members"] = database.execute_sql("SELECT COUNT(*) FROM member").fetchone()[0]
    engine_db.release(database)  # the child's own connections, closed for real
    os.write(write, json.dumps(report).encode())


def test_a_forked_worker_opens_its_own_connection_and_leaves_the_parents_alone(settings):
    app = create_app(settings, config={"TESTING": True})
    client = app.test_client()
    database = engine_db.database.obj
    assert client.get("/login").status_code == 200
    database.connect()
    parent = backend_identity(database)  # checked out by this thread when the child is forked
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's clean-ups
        code = 1
        try:
            _in_child(client, database, parent, write)
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    report = json.loads(os.read(read, 10_000) or b"{}")
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0, report
    assert report == {"inherited_open": 0, "closed": True, "status": 200, "own": True, "members": 0}
    # the parent's session survived the child's whole life, its closing included
    assert backend_identity(database) == parent
    assert database.execute_sql("SELECT COUNT(*) FROM member").fetchone()[0] == 0
    database.close()


def test_a_connection_returned_by_one_thread_serves_the_next(settings):
    """The demo's threaded server runs each request in a new thread: the pool hands them the same connection."""
    import threading

    app = create_app(settings, config={"TESTING": True})
    database = engine_db.database.obj
    statuses: list[int] = []

    def visit() -> None:
        statuses.append(app.test_client().get("/login").status_code)
        with app.test_request_context():  # a query on the connection the pool hands this thread
            database.connect()
            statuses.append(database.execute_sql("SELECT 1").fetchone()[0])
            database.close()

    for _ in range(3):
        thread = threading.Thread(target=visit)
        thread.start()
        thread.join()
    assert statuses == [200, 1] * 3 and engine_db.open_connections(database) == 1
