"""Wake idle engines at once when copies are queued: PostgreSQL ``LISTEN``/``NOTIFY``.

Polling stays the fallback (SQLite, a lost listening connection): an idle engine looks for due
copies every few seconds anyway. ``announce`` runs in the database thread after the transaction that
queued the work; ``listen`` keeps one extra connection per engine, reconnecting with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import peewee as pw

from engine.db import database

log = logging.getLogger("palanquee.engine")
CHANNEL = "palanquee_work"


def announce() -> None:
    """Tell every listening engine that work is queued (no-op on SQLite)."""
    if isinstance(database.obj, pw.PostgresqlDatabase):
        database.obj.execute_sql(f"NOTIFY {CHANNEL}")


async def listen(db: pw.PostgresqlDatabase, wake: Callable[[], None]) -> None:
    """Call ``wake`` at each notification, and after each (re)connection (work may have been queued
    while no one listened). Runs until cancelled."""
    import psycopg

    pause = 0.5
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(dbname=db.database, autocommit=True,
                                                             **db.connect_params) as connection:
                await connection.execute(f"LISTEN {CHANNEL}")
                pause = 0.5
                wake()
                async for _notify in connection.notifies():
                    wake()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("listening for work failed (%s); polling meanwhile, retrying in %.1f s", exc, pause)
        await asyncio.sleep(pause)
        pause = min(pause * 2, 30.0)
