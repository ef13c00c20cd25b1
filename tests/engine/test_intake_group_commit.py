"""Issue 16, the intake under load: posts waiting at DATA are stored in one transaction (group commit) and each
is answered only after that commit; a failed commit or a failing post is never answered 250 unless its own row
was committed; intake calls run before waiting fan-out work, without starving it (``engine/dbthread.py``)."""

from __future__ import annotations

import asyncio
import email.policy
import smtplib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import peewee
import pytest

from engine import dbthread
from engine.intake import service
from engine.posting.models import Message
from engine.runtime import Engine
from tests.engine.conftest import Federation, wait_until
from tests.engine.test_engine_e2e import post
from tests.support import aio

LIST = "comite_directeur.comite@listes.example.fr"
POSTS = 5


def blocked(engine: Engine) -> threading.Event:
    """Hold the engine's database thread until the returned event is set (work queues up meanwhile)."""
    assert engine._loop is not None
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(60)

    asyncio.run_coroutine_threadsafe(engine.run_in_db(hold), engine._loop)
    assert started.wait(30)
    return release


def posts_at_once(engine: Engine, count: int = POSTS) -> list[int]:
    """``count`` clients pass RCPT, then send DATA while the database thread is held, so that their posts wait
    together; returns the reply code of each post's DATA."""
    host, port = engine.bound["smtp"]
    clients = []
    for _ in range(count):
        client = smtplib.SMTP(host, port)
        client.ehlo("test")
        assert client.mail("elodie.dupre@example.fr", ["BODY=8BITMIME"])[0] == 250 and client.rcpt(LIST)[0] == 250
        clients.append(client)
    release = blocked(engine)
    codes: list[int] = [0] * count

    def data(n: int) -> None:
        codes[n] = clients[n].data(post(subject=f"Sortie {n}").as_bytes(policy=email.policy.SMTP))[0]

    threads = [threading.Thread(target=data, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: engine.db_thread.waiting(dbthread.INTAKE) >= count, what="the posts waiting together")
    finally:
        release.set()
    for thread in threads:
        thread.join(60)
    for client in clients:
        client.quit()
    return codes


def stored_subjects() -> list[str]:
    return sorted(message.subject for message in Message.select(Message.subject))


def test_posts_waiting_together_are_stored_in_one_transaction(start_engine, federation: Federation) -> None:  # type: ignore[no-untyped-def]
    engine = start_engine()
    assert posts_at_once(engine) == [250] * POSTS
    assert engine.db_thread.largest_group == POSTS
    assert stored_subjects() == sorted(f"Sortie {n}" for n in range(POSTS))


def test_a_failing_post_is_answered_alone_and_the_others_are_stored_once(start_engine, federation: Federation,  # type: ignore[no-untyped-def]
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    original = service.store_post

    def store_post(*args: Any) -> Any:
        outcome = original(*args)  # its row is written, then the failure: the transaction must take it back
        if "Sortie 2" in bytes(args[3]).decode("utf-8", "replace"):
            raise peewee.IntegrityError("a value the schema refuses")
        return outcome

    monkeypatch.setattr(service, "store_post", store_post)
    engine = start_engine()
    codes = posts_at_once(engine)
    assert codes[2] == 451 and [code for n, code in enumerate(codes) if n != 2] == [250] * (POSTS - 1)
    assert stored_subjects() == sorted(f"Sortie {n}" for n in range(POSTS) if n != 2)  # each once, the failed one not


def failing_commits(engine: Engine, monkeypatch: pytest.MonkeyPatch, failures: Callable[[], bool]) -> None:
    """Make the database thread's transactions roll back and raise at the commit while ``failures()`` says so."""
    atomic = engine.database.atomic

    @contextmanager
    def transaction() -> Iterator[None]:
        with atomic() as txn:
            yield
            if failures():
                txn.rollback()
                raise peewee.OperationalError("disk I/O error at commit")

    monkeypatch.setattr(engine.db_thread, "_transaction", transaction)


def test_a_failed_group_commit_is_stored_again_post_by_post(start_engine, federation: Federation,  # type: ignore[no-untyped-def]
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    engine = start_engine()
    commits: list[int] = []

    def first_fails() -> bool:
        commits.append(1)
        return len(commits) == 1

    failing_commits(engine, monkeypatch, first_fails)
    assert posts_at_once(engine) == [250] * POSTS
    assert len(commits) == 1 + POSTS and engine.db_thread.largest_group == 0  # the group, then each post alone
    assert stored_subjects() == sorted(f"Sortie {n}" for n in range(POSTS))


def test_no_post_is_answered_250_when_no_commit_succeeds(start_engine, federation: Federation,  # type: ignore[no-untyped-def]
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    engine = start_engine()
    failing_commits(engine, monkeypatch, lambda: True)
    assert posts_at_once(engine) == [451] * POSTS
    assert stored_subjects() == []


def test_intake_calls_run_first_but_background_work_still_progresses() -> None:
    order: list[str] = []

    def call(function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return function(*args, **kwargs)

    thread = dbthread.DatabaseThread(call, lambda: contextlib_null(), fairness=4)

    async def main() -> None:
        started, release = threading.Event(), threading.Event()
        first = thread.submit(lambda: (started.set(), release.wait(30)))
        assert await asyncio.to_thread(started.wait, 30)  # the thread is busy: what follows waits
        background = [thread.submit(order.append, f"fan-out {n}") for n in range(2)]
        intake = [thread.submit(order.append, f"intake {n}", priority=dbthread.INTAKE) for n in range(10)]
        release.set()
        await asyncio.gather(first, *background, *intake)

    aio.run(main())
    thread.shutdown()
    # Intake first, one background call after every four intake calls while background work waits.
    assert order == ["intake 0", "intake 1", "intake 2", "intake 3", "fan-out 0",
                     "intake 4", "intake 5", "intake 6", "intake 7", "fan-out 1", "intake 8", "intake 9"]


@contextmanager
def contextlib_null() -> Iterator[None]:
    yield


def test_expansion_gives_the_database_thread_back_after_each_post_while_the_intake_waits(
        federation: Federation, engine_settings: Any) -> None:
    from engine.jobs import expand_accepted
    from engine.posting.models import MessageState
    from tests.engine.test_expansion_once import accepted_post

    for _ in range(3):
        accepted_post(engine_settings)
    waiting = Message.select().where(Message.state == MessageState.ACCEPTED)
    assert expand_accepted(lambda: True) == 1 and waiting.count() == 2  # one post, then the intake's turn
    assert expand_accepted(lambda: False) == 2 and waiting.count() == 0  # nobody waits: the rest at once
