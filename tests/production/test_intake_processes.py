"""The intake served by several processes of one engine (``PALANQUEE_INTAKE_PROCESSES``, ``engine/prefork.py``).

Real ``palanquee engine`` processes on loopback: the workers accept on the engine's sockets and store posts in
the same database (on SQLite, the same file), SIGTERM stops them all, a killed worker is started again, workers
that keep dying make the engine exit with status 1.
"""

from __future__ import annotations

import json
import smtplib
import sqlite3
import threading
from email.message import EmailMessage
from pathlib import Path

import psutil
import pytest

from engine.config import Settings
from engine.heartbeat import EngineHeartbeat
from engine.posting.models import Message, MessageState
from tests.engine.conftest import Federation, wait_until
from tests.engine.test_engine_e2e import post
from tests.support import engines
from tests.support.sink import Sink

AUTHOR = "elodie.dupre@example.fr"
LIST = "comite_directeur.comite@listes.example.fr"


def workers_of(engine: engines.EngineProcess) -> list[psutil.Process]:
    return engines.children_of(engine, "--intake-only")


def started(env: dict[str, str], log: Path, workers: int) -> engines.EngineProcess:
    """The engine, once it listens and its ``workers`` intake workers beat (their loop and connection are up)."""
    engine = engines.start(env, log)
    wait_until(lambda: EngineHeartbeat.select().where(EngineHeartbeat.role == "intake").count() == workers,
               timeout=60, what=f"{workers} intake workers beating")
    return engine


def reply_to(engine: engines.EngineProcess, message: EmailMessage) -> int:
    """The reply code to ``message`` posted on a connection of its own (451 and the like are returned)."""
    host, port = engine.bound["smtp"]
    with smtplib.SMTP(host, port, timeout=60) as client:
        try:
            client.send_message(message, from_addr=AUTHOR, to_addrs=[LIST])
        except smtplib.SMTPDataError as refused:
            return refused.smtp_code
        except smtplib.SMTPRecipientsRefused as refused:
            return int(next(iter(refused.recipients.values()))[0])
    return 250


def storers(engine: engines.EngineProcess) -> set[str]:
    """The processes (``host:pid``) that logged storing a post."""
    lines = [json.loads(line) for line in engine.text().splitlines() if line.startswith("{")]
    return {line["engine"] for line in lines if line["logger"] == "palanquee.intake" and line.get("message_id")}


def test_two_intake_processes_share_the_listener_under_concurrent_posts_and_answer_only_250_or_451(
        federation: Federation, sink: Sink, engine_settings: Settings, tmp_path: Path) -> None:
    env = engines.environment(engine_settings, LOG_FORMAT="json", INTAKE_PROCESSES="2")
    engine = started(env, tmp_path / "engine.log", workers=1)
    codes: list[int] = []
    try:
        while len(storers(engine)) < 2:  # until both processes stored posts (the kernel picks who accepts)
            assert len(codes) < 2000, f"one process accepted every connection: {storers(engine)}"

            def client(n: int) -> None:
                codes.append(reply_to(engine, post(subject=f"Sortie {n}")))

            threads = [threading.Thread(target=client, args=(len(codes) + n,)) for n in range(20)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
    finally:
        assert engine.terminate() == 0
    assert set(codes) <= {250, 451}, codes  # "database is locked" never reaches a client but as a 451
    assert Message.select().count() == codes.count(250)  # every 250 was committed, nothing else was
    assert codes.count(250) >= len(codes) * 0.9


def test_sigterm_stops_every_intake_worker_cleanly(federation: Federation, sink: Sink, engine_settings: Settings,
                                                   tmp_path: Path) -> None:
    env = engines.environment(engine_settings, INTAKE_PROCESSES="3")
    engine = started(env, tmp_path / "engine.log", workers=2)
    workers = workers_of(engine)
    assert len(workers) == 2
    assert reply_to(engine, post()) == 250
    assert engine.terminate() == 0
    assert psutil.wait_procs(workers, timeout=30)[1] == []
    assert "did not stop" not in engine.text()  # each stopped on its SIGTERM, none had to be killed
    assert EngineHeartbeat.select().count() == 0  # every process said goodbye: each ran its graceful stop
    assert "exited with status" not in engine.text()  # a stop is not a crash: no worker restarted


def test_a_killed_intake_worker_loses_no_accepted_post_and_is_started_again(
        federation: Federation, sink: Sink, engine_settings: Settings, tmp_path: Path) -> None:
    env = engines.environment(engine_settings, LOG_FORMAT="json", INTAKE_PROCESSES="2")
    engine = started(env, tmp_path / "engine.log", workers=1)
    try:
        [worker] = workers_of(engine)
        count = 0
        while not any(name.endswith(f":{worker.pid}") for name in storers(engine)):
            assert count < 500, "the worker accepted no post"
            assert reply_to(engine, post(subject=f"Sortie {count}")) == 250
            count += 1
        worker.kill()  # a crash after its 250s: what it accepted is committed, the engine fans it out
        wait_until(lambda: len(workers_of(engine)) == 1 and workers_of(engine)[0].pid != worker.pid, timeout=30,
                   what="a new intake worker")
        assert reply_to(engine, post(subject="Après")) == 250
        wait_until(lambda: Message.select().where(Message.state == MessageState.DONE).count() == count + 1,
                   timeout=120, what="every accepted post delivered")
    finally:
        assert engine.terminate() == 0
    assert Message.select().count() == count + 1


def test_intake_workers_that_keep_dying_make_the_engine_exit_with_status_1(
        federation: Federation, sink: Sink, engine_settings: Settings, tmp_path: Path) -> None:
    env = engines.environment(engine_settings, INTAKE_PROCESSES="2")
    engine = started(env, tmp_path / "engine.log", workers=1)
    try:
        killed = engines.kill_children_until_it_exits(engine, "--intake-only")
        assert engine.wait(30) == 1
    finally:
        engine.kill()
    assert len(killed) == 5
    assert "intake workers exited 5 times" in engine.text()


def test_a_store_that_finds_the_database_locked_is_answered_451(  # type: ignore[no-untyped-def]
        start_engine, federation: Federation, engine_settings: Settings) -> None:
    if not engine_settings.is_sqlite:
        pytest.skip("SQLite's single writer's lock")
    engine = start_engine()
    path = engine_settings.database_url.removeprefix("sqlite:///")
    other = sqlite3.connect(path, isolation_level=None)  # another process's writer, holding the lock too long
    other.execute("BEGIN IMMEDIATE")
    try:
        assert reply_to_engine(engine, "Bloqué") == 451  # after the busy timeout: the sender tries again
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert reply_to_engine(engine, "Débloqué") == 250
    assert [message.subject for message in Message.select()] == ["Débloqué"]


def reply_to_engine(engine, subject: str) -> int:  # type: ignore[no-untyped-def]
    host, port = engine.bound["smtp"]
    with smtplib.SMTP(host, port, timeout=60) as client:
        try:
            client.send_message(post(subject=subject), from_addr=AUTHOR, to_addrs=[LIST])
        except smtplib.SMTPDataError as refused:
            return refused.smtp_code
    return 250
