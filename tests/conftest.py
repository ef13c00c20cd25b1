"""Shared fixtures: a migrated database per test on SQLite or PostgreSQL (``--db``), and settings.

The suite runs once per backend: ``pytest`` (SQLite) and ``pytest --db=postgresql`` (a real server
started here on loopback). Each test gets a fresh copy of a database migrated once per session.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import db as engine_db
from engine import resolver
from engine.config import Settings, load_settings
from engine.resolver import StaticResolver

TEST_SECRET = "test-secret-key-not-for-production"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--db", default=os.environ.get("PALANQUEE_TEST_DB", "sqlite"),
                     choices=("sqlite", "postgresql"), help="database backend for the suite")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``@pytest.mark.postgresql_only`` tests are skipped on SQLite (they need a server: several engines
    sharing it, a restart)."""
    if config.getoption("--db") == "postgresql":
        return
    skip = pytest.mark.skip(reason="PostgreSQL only (run with --db=postgresql)")
    for item in items:
        if item.get_closest_marker("postgresql_only"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--db"))


@pytest.fixture(scope="session")
def pg_cluster(backend: str) -> Iterator[object]:
    if backend != "postgresql":
        yield None
        return
    from tests.support.postgres import start_cluster

    cluster = start_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def template_url(backend: str, pg_cluster) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A database migrated to the current schema once per session; tests copy it."""
    if backend == "postgresql":
        pg_cluster.psql("CREATE DATABASE palanquee_template")
        url = pg_cluster.url("palanquee_template")
    else:
        folder = tempfile.mkdtemp(prefix="palanquee-template-")
        url = f"sqlite:///{folder}/template.sqlite3"
    database = engine_db.make_database(url)
    database.connect()
    engine_db.upgrade(database)
    if backend == "sqlite":
        database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    database.close()
    yield url
    if backend == "sqlite":
        shutil.rmtree(folder, ignore_errors=True)


_counter = itertools.count()


@pytest.fixture
def db_url(backend: str, pg_cluster, template_url: str, tmp_path: Path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A fresh database at the current schema, private to this test."""
    if backend == "postgresql":
        name = f"t{os.getpid()}_{next(_counter)}"
        pg_cluster.psql(f"CREATE DATABASE {name} TEMPLATE palanquee_template")
        yield pg_cluster.url(name)
        pg_cluster.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    else:
        target = tmp_path / "palanquee.sqlite3"
        shutil.copyfile(template_url[len("sqlite:///"):], target)
        yield f"sqlite:///{target}"


@pytest.fixture
def empty_db_url(backend: str, pg_cluster, tmp_path: Path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A database with no schema at all (migration tests)."""
    if backend == "postgresql":
        name = f"e{os.getpid()}_{next(_counter)}"
        pg_cluster.psql(f"CREATE DATABASE {name}")
        yield pg_cluster.url(name)
        pg_cluster.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    else:
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return load_settings(environ={}, overrides={
        "instance": str(tmp_path / "instance"),
        "database_url": db_url,
        "secret_key": TEST_SECRET,
        "base_url": "https://listes.example.fr",
        "propagation_delay": "0",
        # Sender authentication has its own tests (tests/deliverability/); the others post unsigned mail.
        "inbound_authentication": "off",
    })


@pytest.fixture(autouse=True)
def dns() -> Iterator[StaticResolver]:
    """No test reaches the network: the engine's one resolver answers from this table (empty: nothing exists)."""
    fake = StaticResolver()
    previous = resolver.use(fake)
    yield fake
    resolver.use(previous)


@pytest.fixture
def db(db_url: str) -> Iterator[object]:
    """The test's database, bound to every model and connected."""
    # shared(): an app or engine the test builds on the same URL reuses this object, so the
    # connection this thread opens on it is the one closed here.
    database = engine_db.shared(db_url)
    database.connect(reuse_if_open=True)
    yield database
    engine_db.release(database)  # the pool's connections too, whichever thread opened them


@pytest.fixture(autouse=True)
def _close_the_bound_connection() -> Iterator[None]:
    """After every test, release every connection of whatever database the models are bound to (the one
    place that does it: ``factories.close_bound_connection``).

    ``create_app``, the CLI and the engine may bind the models to a database object of their own; a
    connection left open on it would be collected later, in another test, where psycopg's ResourceWarning
    becomes an error. Autouse and function-scoped, this fixture is set up before every fixture a test
    requests, so its teardown runs after theirs: engines stopped and their threads joined, live servers shut
    down. ``release`` closes no connection a live thread still holds (it waits, then fails naming the thread).
    """
    yield
    from tests import factories

    factories.close_bound_connection()
