"""`palanquee backup` takes a consistent copy of a running database, and a restore finds every message and
delivery (SQLite through the online backup API, PostgreSQL through pg_dump and pg_restore)."""

from __future__ import annotations

import smtplib
import subprocess
from pathlib import Path

import peewee
import pytest
from click.testing import CliRunner

from engine import db as engine_db
from engine.backup import postgresql_tool
from engine.commands import backup_command
from engine.config import Settings
from engine.outbound.models import Delivery
from engine.posting.models import Message, MessageState
from tests.engine.conftest import Federation, wait_until
from tests.production.test_postfix import post
from tests.support.sink import Sink


def rows(database: peewee.Database) -> dict[str, list[tuple[object, ...]]]:
    """Every message and delivery of ``database`` (ids, states, addresses), to compare a restore with.

    The queries' SQL runs on ``database`` itself: binding the models to the restored copy would hand it to
    the engine's threads, still running in this process, and leave them a connection to it."""
    queries: dict[str, peewee.Query] = {
        "message": Message.select(Message.id, Message.state, Message.mailing_list).order_by(Message.id),
        "delivery": Delivery.select(Delivery.id, Delivery.message, Delivery.address, Delivery.state)
                            .order_by(Delivery.id),
    }
    return {name: [tuple(row) for row in database.execute_sql(*query.sql()).fetchall()]
            for name, query in queries.items()}


def test_backup_of_a_running_engine_restores_every_message_and_delivery(
        start_engine, federation: Federation, sink: Sink, engine_settings: Settings, db, backend: str,
        pg_cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = start_engine()
    host, port = engine.bound["smtp"]
    with smtplib.SMTP(host, port) as client:
        for n in range(3):
            client.send_message(post(federation.board_list.address, subject=f"Sortie {n}"),
                                from_addr="elodie.dupre@example.fr", to_addrs=[federation.board_list.address])
    wait_until(lambda: Message.select().where(Message.state == MessageState.DONE).count() == 3, what="3 sends")
    for name, value in {"DATABASE_URL": engine_settings.database_url, "SECRET_KEY": "x" * 32,
                        "INSTANCE": str(tmp_path / "instance")}.items():
        monkeypatch.setenv(f"PALANQUEE_{name}", value)
    target = tmp_path / "backups" / "palanquee.backup"
    result = CliRunner().invoke(backup_command, [str(target)])  # the engine is still running
    assert result.exit_code == 0, result.output
    assert f"backup written to {target}" in result.output
    expected = rows(db)
    assert len(expected["message"]) == 3 and len(expected["delivery"]) == 6

    if backend == "sqlite":
        assert "message: 3, delivery: 6" in result.output
        restored = engine_db.make_database(f"sqlite:///{target}")
    else:
        pg_cluster.psql("CREATE DATABASE restored")
        subprocess.run([postgresql_tool("pg_restore"), "--no-owner", f"--dbname={pg_cluster.url('restored')}",
                        str(target)], check=True, capture_output=True)
        restored = engine_db.make_database(pg_cluster.url("restored"))
    restored.connect()
    try:
        assert engine_db.pending_migrations(restored) == []
        assert rows(restored) == expected
    finally:
        restored.close()
        if backend == "postgresql":
            pg_cluster.psql("DROP DATABASE restored WITH (FORCE)")

    again = CliRunner().invoke(backup_command, [str(target)])
    assert again.exit_code != 0 and "exists" in again.output  # never overwrites a backup
