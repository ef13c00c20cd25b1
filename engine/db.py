"""Database access: one peewee proxy bound at start-up, connection pools, SQLite tuning, schema checks.

SQLite is the embedded default (WAL, foreign keys, busy timeout); PostgreSQL is production's.
The long-running processes (portal, engine) use a pooled database from ``shared()``: a request or the
engine's database thread checks a connection out and back in, and SQLite's pragmas run once per
connection, when it is opened. Nothing may stay open across a fork (gunicorn forks its workers): the
portal closes what it opened at start-up, and a child forgets any connection it inherited.
The schema's history is the numbered scripts in ``migrations/``, run by ``playhouse.migrations``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee
from playhouse.migrations import Runner
from playhouse.pool import PooledDatabase, PooledPostgresqlDatabase, PooledSqliteDatabase

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

database = peewee.DatabaseProxy()

# Applied to every SQLite connection. WAL lets the portal read while the engine writes;
# a busy timeout makes concurrent writers wait instead of failing at once.
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 10_000,
    "synchronous": "normal",
    "cache_size": -32_000,
    "temp_store": "memory",
}


class BaseModel(peewee.Model):
    # Declared rather than implicit so that the type checker knows ``Model.id`` (a field) and
    # ``instance.id`` (an int); peewee copies it into every model, as it would the implicit one.
    id = peewee.AutoField()

    if TYPE_CHECKING:
        DoesNotExist: ClassVar[type[peewee.DoesNotExist]]

    class Meta:
        database = database
        legacy_table_names = False


class SchemaBehindError(Exception):
    """The database lacks migrations; the message names the command that fixes it."""


class HeldConnections(PooledDatabase):  # type: ignore[misc]  # playhouse has no stubs
    """A pool that remembers which thread checked out each connection: ``release`` must not close one under
    a live thread (sqlite3 and libpq objects are not safe to close while another thread uses them: SQLite
    crashes the process)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._holders: dict[int, threading.Thread] = {}
        super().__init__(*args, **kwargs)

    def _connect(self) -> Any:
        with self._pool_lock:  # checked out and its holder recorded at once: ``release`` sees both or neither
            conn = super()._connect()
            self._holders[self.conn_key(conn)] = threading.current_thread()
        return conn

    def _close(self, conn: Any, close_conn: bool = False) -> None:
        super()._close(conn, close_conn)
        with self._pool_lock:
            if self.conn_key(conn) not in self._in_use:
                self._holders.pop(self.conn_key(conn), None)


class HeldSqliteDatabase(HeldConnections, PooledSqliteDatabase):  # type: ignore[misc]
    pass


class HeldPostgresqlDatabase(HeldConnections, PooledPostgresqlDatabase):  # type: ignore[misc]
    pass


class ConnectionStillInUse(RuntimeError):
    """``release`` waited in vain for live threads to give their connections back (a stop order bug)."""


# The classes per backend: plain for one-shot commands and migrations, pooled for the portal and the engine.
# (A reconnecting mixin for PostgreSQL restarts goes in front of these classes.)
DATABASE_CLASSES: dict[tuple[str, bool], type[peewee.Database]] = {
    ("sqlite", False): peewee.SqliteDatabase,
    ("sqlite", True): HeldSqliteDatabase,
    ("postgresql", False): peewee.PostgresqlDatabase,
    ("postgresql", True): HeldPostgresqlDatabase,
}
# A sync portal worker holds one connection, the engine one per process; the demo's threaded server more.
# Connections idle longer than the stale timeout are closed on check-out (servers and firewalls drop them).
POOL_OPTIONS = {"max_connections": 32, "stale_timeout": 600, "timeout": 10}


def make_database(url: str, *, pooled: bool = False) -> peewee.Database:
    """Build (not connect) a database from ``sqlite:///PATH`` or ``postgresql://…`` (a pool if ``pooled``)."""
    parts = urlsplit(url)
    extra: dict[str, Any] = dict(POOL_OPTIONS) if pooled else {}
    if parts.scheme == "sqlite":
        path = unquote(url[len("sqlite:///"):])
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # A pool's ``timeout`` is its wait for a free connection; SQLite's own is the busy_timeout pragma. A pooled
        # connection moves between threads (one at a time, checked out): sqlite3 must not refuse that.
        sqlite_options = {**extra, "check_same_thread": False} if pooled else {"timeout": 10}
        made = DATABASE_CLASSES["sqlite", pooled](path, pragmas=SQLITE_PRAGMAS, **sqlite_options)
    elif parts.scheme in ("postgres", "postgresql"):
        options: dict[str, Any] = dict(parse_qsl(parts.query))  # libpq parameters: sslmode=…
        made = DATABASE_CLASSES["postgresql", pooled](
            unquote(parts.path.lstrip("/")),
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            host=parts.hostname or None,
            port=parts.port,
            prefer_psycopg3=True,
            **options,
            **extra,
        )
    else:
        raise ValueError(f"unsupported database URL: {url}")
    if pooled:
        _pools.add(made)
    return made


# --- pools across forks and at the end of a database's life ---

_pools: weakref.WeakSet[peewee.Database] = weakref.WeakSet()
_inherited: list[object] = []  # connections a forked child must neither use nor close (they are the parent's)


def _forget_inherited_connections() -> None:
    """In a child after fork: drop every pooled connection the parent had, without closing it.

    Closing would end the parent's PostgreSQL session (libpq sends Terminate on the shared socket) or
    touch the parent's SQLite file locks; the child opens its own connections when it needs them.
    """
    for pool in list(_pools):
        assert isinstance(pool, PooledDatabase)
        _inherited.extend(conn for _ts, _n, conn in pool._connections)
        _inherited.extend(held.connection for held in pool._in_use.values())
        state = getattr(pool._state, "conn", None)
        if state is not None:
            _inherited.append(state)
        pool._connections, pool._in_use = [], {}
        if isinstance(pool, HeldConnections):
            pool._holders = {}
        pool._pool_lock = threading.RLock()
        pool._pool_available = threading.Condition(pool._pool_lock)
        pool._lock = threading.RLock()
        pool._state = peewee._ConnectionLocal()


os.register_at_fork(after_in_child=_forget_inherited_connections)


def open_connections(db: peewee.Database) -> int:
    """How many connections ``db`` holds open now (idle in its pool and checked out)."""
    if isinstance(db, PooledDatabase):
        return len(db._connections) + len(db._in_use)
    return 0 if db.is_closed() else 1


def disconnect(db: peewee.Database) -> None:
    """Close this thread's connection for good (a pool does not keep it): nothing left open to inherit."""
    if isinstance(db, PooledDatabase):
        db.manual_close()
    elif not db.is_closed():
        db.close()


def release(db: peewee.Database, timeout: float = 30.0) -> None:
    """Close every connection ``db`` holds: idle ones, this thread's, and those checked out by threads that
    have ended (end of a process or test). A connection a live thread holds is waited for (its thread gives
    it back or ends) up to ``timeout`` seconds, never closed under it: ``ConnectionStillInUse`` then names
    the threads (whatever runs them must be stopped first)."""
    if not isinstance(db, PooledDatabase):
        if not db.is_closed():
            db.close()
        return
    with db._lock:
        db._state.reset()  # this thread's connection is closed below with the others
    deadline = time.monotonic() + timeout
    with db._pool_lock:
        while True:
            db.close_idle()
            held = _close_unheld(db)
            if not held:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectionStillInUse("connections still in use by live threads: "
                                           + ", ".join(sorted(thread.name for thread in held)))
            db._pool_available.wait(min(remaining, 0.05))  # a check-in notifies; a thread's end does not
        db._pool_available.notify_all()


def _close_unheld(db: PooledDatabase) -> list[threading.Thread]:
    """Close the checked-out connections no other live thread holds (the pool lock held); the others' threads."""
    holders: dict[int, threading.Thread] = getattr(db, "_holders", {})
    me, held = threading.current_thread(), []
    for key, pool_conn in list(db._in_use.items()):
        holder = holders.get(key)
        if holder is not None and holder is not me and holder.is_alive():
            held.append(holder)
            continue
        del db._in_use[key]
        holders.pop(key, None)
        db._close_raw(pool_conn.connection)
    return held


def bind(db: peewee.Database) -> peewee.Database:
    """Make ``db`` the database every model uses."""
    database.initialize(db)
    return db


def sql_datetime(value: datetime) -> datetime | str:
    """A datetime as a bulk ``executemany`` parameter: on SQLite the text its adapter would make
    (``isoformat(" ")``, the form peewee stores), computed once instead of once per row."""
    return value.isoformat(" ") if isinstance(database.obj, peewee.SqliteDatabase) else value


def shared(url: str) -> peewee.Database:
    """The bound database when it is ``url``'s, else a new pooled one, bound. The portal and the engine in
    one process (the demo) thus share one pool: each thread checks out its own connection from it."""
    current: peewee.Database | None = database.obj
    if current is not None and getattr(current, "palanquee_url", None) == url:
        return current
    if current is not None and getattr(current, "palanquee_url", None) is not None:
        release(current)  # a pool of another database that nothing uses any more
    made = make_database(url, pooled=True)
    made.palanquee_url = url  # type: ignore[attr-defined]
    return bind(made)


def connection_lost(db: peewee.Database) -> bool:
    """True when this thread's PostgreSQL connection is broken (server restarted, network cut): it
    must be dropped, not reused. SQLite's errors (a busy database) never mean that."""
    conn = None if db.is_closed() else _state(db).conn
    return conn is not None and bool(getattr(conn, "broken", False) or getattr(conn, "closed", False))


def _state(db: peewee.Database) -> Any:
    """peewee's per-thread connection state (its stubs do not declare it)."""
    return db._state  # type: ignore[attr-defined]


def discard_connection(db: peewee.Database) -> None:
    """Forget this thread's connection (and any transaction state on it); the next use reconnects.
    A pool forgets it too (it would otherwise count against its maximum for ever)."""
    state = _state(db)
    conn = state.conn
    state.reset()
    if conn is not None:
        if isinstance(db, PooledDatabase):
            with db._pool_lock:
                db._in_use.pop(db.conn_key(conn), None)
                getattr(db, "_holders", {}).pop(db.conn_key(conn), None)
                db._pool_available.notify()
        with contextlib.suppress(Exception):
            conn.close()


def runner(db: peewee.Database) -> Runner:
    return Runner(db, str(MIGRATIONS_DIR))


def pending_migrations(db: peewee.Database) -> list[str]:
    return [m.name for m in runner(db).status() if m.path is not None and not m.applied]


def upgrade(db: peewee.Database, target: str | None = None) -> list[str]:
    """Apply pending migrations (up to ``target``); returns their names."""
    applied: list[str] = runner(db).up(target)
    return applied


def check_schema(db: peewee.Database) -> None:
    """Refuse to run on a database that is behind the code."""
    pending = pending_migrations(db)
    if pending:
        raise SchemaBehindError(
            f"the database is behind ({len(pending)} migration(s) pending: {', '.join(pending)}); "
            "run `palanquee db upgrade`"
        )


def batched(iterable: Iterable[T], size: int) -> Iterator[list[T]]:
    """Yield lists of at most ``size`` items (insert and update in batches)."""
    batch: list[T] = []
    for item in iterable:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def write_transaction() -> AbstractContextManager[object]:
    """A transaction that takes the write lock at its start (SQLite: ``BEGIN IMMEDIATE``): one that reads and then
    writes would otherwise fail at once with "database is locked" when another engine wrote in between (its
    snapshot is stale, and SQLite's busy timeout does not wait for that), where this one waits its turn."""
    if isinstance(database.obj, peewee.SqliteDatabase):
        return database.obj.atomic("IMMEDIATE")
    return database.atomic()
