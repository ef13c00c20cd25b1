"""Database access: one peewee proxy bound at start-up, SQLite tuning, and schema-version checks.

SQLite is the embedded default (WAL, foreign keys, busy timeout); PostgreSQL is production's.
The schema's history is the numbered scripts in ``migrations/``, run by ``playhouse.migrations``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee
from playhouse.migrations import Runner

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


def make_database(url: str) -> peewee.Database:
    """Build (not connect) a database from ``sqlite:///PATH`` or ``postgresql://…``."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(url[len("sqlite:///"):])
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return peewee.SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, timeout=10)
    if parts.scheme in ("postgres", "postgresql"):
        options: dict[str, Any] = dict(parse_qsl(parts.query))  # libpq parameters: sslmode=…
        return peewee.PostgresqlDatabase(
            unquote(parts.path.lstrip("/")),
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            host=parts.hostname or None,
            port=parts.port,
            prefer_psycopg3=True,
            **options,
        )
    raise ValueError(f"unsupported database URL: {url}")


def bind(db: peewee.Database) -> peewee.Database:
    """Make ``db`` the database every model uses."""
    database.initialize(db)
    return db


def sql_datetime(value: datetime) -> datetime | str:
    """A datetime as a bulk ``executemany`` parameter: on SQLite the text its adapter would make
    (``isoformat(" ")``, the form peewee stores), computed once instead of once per row."""
    return value.isoformat(" ") if isinstance(database.obj, peewee.SqliteDatabase) else value


def shared(url: str) -> peewee.Database:
    """The bound database when it is ``url``'s, else a new one, bound. The portal and the engine in
    one process (the demo) thus share one object: each thread keeps its own connection on it."""
    current: peewee.Database | None = database.obj
    if current is not None and getattr(current, "palanquee_url", None) == url:
        return current
    made = make_database(url)
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
    """Forget this thread's connection (and any transaction state on it); the next use reconnects."""
    state = _state(db)
    conn = state.conn
    state.reset()
    if conn is not None:
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
