"""What the benchmarks start from, written once: a throw-away instance folder with a database at the
current schema (SQLite in the folder, or the ``--database-url`` given), bound to the models."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import peewee

from engine import db as engine_db
from engine.config import Settings, load_settings


@dataclass
class Bench:
    settings: Settings
    url: str
    folder: Path
    database: peewee.Database


def migrated_database(url: str) -> peewee.Database:
    """Bind the models to ``url``, connect, and bring it to the current schema."""
    database = engine_db.bind(engine_db.make_database(url))
    database.connect()
    engine_db.upgrade(database)
    return database


@contextmanager
def bench_instance(name: str, database_url: str = "") -> Iterator[Bench]:
    """A fresh instance for one benchmark run; the folder is deleted afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="palanquee-bench-"))
    url = database_url or f"sqlite:///{folder / f'{name}.sqlite3'}"
    settings = load_settings(environ={}, overrides={"instance": str(folder), "database_url": url,
                                                    "secret_key": "bench-secret-key-0123456789"})
    database = migrated_database(url)
    try:
        yield Bench(settings, url, folder, database)
    finally:
        database.close()
        shutil.rmtree(folder, ignore_errors=True)
