"""Issue 16: the disk under the database fills up (SQLite: ``max_page_count`` on the engine's connection
stands in for a full file system; PostgreSQL: the ``message`` table on a tablespace of a 2 MB tmpfs).
The intake answers 452 (or 451) to what it cannot store and never 250 followed by loss: every post it
accepted reaches every recipient once the space is back, and the client's retry of each refused post is
the only copy of it."""

from __future__ import annotations

import asyncio
import os
import pwd
import smtplib
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from engine.posting.models import Message, MessageState
from engine.runtime import Engine
from tests.engine.conftest import wait_until
from tests.support import crowd
from tests.support.sink import Sink

SIZE = 20  # recipients: the property is about storing posts, not fanning them out (a 300 KB copy costs the Python sink)
SIZES = [1, 120_000, 1, 300_000, 1, 40_000, 1]  # bytes of attachment of each post


def in_engine(engine: Engine, function: Callable[[], Any]) -> Any:
    """Run ``function`` on the engine's database connection (its own thread)."""
    assert engine._loop is not None
    return asyncio.run_coroutine_threadsafe(engine.run_in_db(function), engine._loop).result(60)


def pages(engine: Engine) -> int:
    return int(in_engine(engine, lambda: engine.database.execute_sql("PRAGMA page_count").fetchone()[0]))


def limit(engine: Engine, count: int) -> None:
    in_engine(engine, lambda: engine.database.execute_sql(f"PRAGMA max_page_count = {count}").fetchone())


def post(audience: crowd.Crowd, n: int, size: int) -> EmailMessage:
    message = crowd.post(audience, subject=f"Compte rendu {n}", message_id=f"<cr-{n}@example.fr>")
    message.add_attachment(b"%PDF-1.4\n" + b"x" * size, maintype="application", subtype="pdf", filename="cr.pdf")
    return message


def offer(engine: Engine, message: EmailMessage) -> int:
    """The intake's final reply to one post (250 once stored)."""
    try:
        crowd.send(engine.bound["smtp"][1], message)
    except smtplib.SMTPDataError as refused:
        return int(refused.smtp_code)
    return 250


def test_a_full_disk_gets_452_and_no_accepted_post_is_lost(start_engine, sink: Sink, db, backend: str) -> None:  # type: ignore[no-untyped-def]
    if backend != "sqlite":
        pytest.skip("SQLite's max_page_count: the PostgreSQL variant fills a small file system")
    audience = crowd.seed(SIZE)
    engine = start_engine()
    fill = lambda: limit(engine, pages(engine) + 4)  # noqa: E731 - a few pages left: less than most posts need
    free = lambda: limit(engine, 1_073_741_823)  # noqa: E731
    scenario(engine, audience, sink, fill, free)


def test_postgresql_on_a_full_file_system_gets_452_and_loses_nothing(start_engine, sink: Sink, db, backend: str,  # type: ignore[no-untyped-def]
                                                                     pg_cluster, db_url: str) -> None:
    """The ``message`` table (and its TOAST table) on a tablespace of its own, on a 2 MB tmpfs that a
    filler file then fills: PostgreSQL's ``disk_full`` (SQLSTATE 53100) at the intake's INSERT."""
    if backend != "postgresql":
        pytest.skip("a PostgreSQL tablespace on a small file system")
    audience = crowd.seed(SIZE)
    name = db_url.rsplit("/", 1)[1]
    with small_file_system("2m") as folder:
        pg_cluster.psql(f"CREATE TABLESPACE full_disk LOCATION '{folder}'")
        try:
            pg_cluster.psql("ALTER TABLE message SET TABLESPACE full_disk", database=name)
            engine = start_engine()
            filler = folder / "filler"

            def fill() -> None:
                stats = os.statvfs(folder)
                filler.write_bytes(b"\0" * max(0, stats.f_bavail * stats.f_frsize - 24 * 1024))

            scenario(engine, audience, sink, fill, lambda: filler.unlink())
        finally:
            pg_cluster.psql("ALTER TABLE message SET TABLESPACE pg_default", database=name)
            pg_cluster.psql("DROP TABLESPACE full_disk")


@contextmanager
def small_file_system(size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on a fresh folder owned by postgres (skips where mounting is not allowed)."""
    folder = Path(tempfile.mkdtemp(prefix="palanquee-full-"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True, capture_output=True)
        folder.rmdir()


def scenario(engine: Engine, audience: crowd.Crowd, sink: Sink, fill: Callable[[], None],
             free: Callable[[], None]) -> None:
    """A post delivered; the disk fills; posts of every size offered; space comes back; the refused ones
    offered again. Every 250 was a stored post, and every post reaches every recipient exactly once."""
    assert offer(engine, post(audience, 0, 1)) == 250
    wait_until(lambda: len(sink.handler.received) == SIZE, what="the first post delivered")
    fill()
    replies = {n: offer(engine, post(audience, n, size)) for n, size in enumerate(SIZES, 1)}
    print(f"\nreplies while the disk was full: {replies}")
    refused = [n for n, code in replies.items() if code != 250]
    assert refused and {replies[n] for n in refused} <= {452, 451}, replies
    assert 452 in replies.values()  # said as a full disk: RFC 5321 §4.2.2, RFC 3463 X.3.1
    stored = {int(m.subject.split()[-1]) for m in Message.select() if m.subject.startswith("Compte rendu ")}
    assert stored == {0} | {n for n, code in replies.items() if code == 250}  # a 250 means stored
    free()
    for n in refused:  # the sender's server tries again later
        assert offer(engine, post(audience, n, SIZES[n - 1])) == 250
    wait_until(lambda: Message.select().where(Message.state != MessageState.DONE).count() == 0, timeout=120,
               what="every post delivered")
    by_subject = Counter((str(item.message["Subject"]), rcpt) for item in sink.handler.received
                         for rcpt in item.rcpt_tos)
    assert set(by_subject.values()) == {1}  # nobody got a post twice
    for n in range(len(SIZES) + 1):
        assert {rcpt for (subject, rcpt) in by_subject if subject == f"Compte rendu {n}"} == audience.recipients()
