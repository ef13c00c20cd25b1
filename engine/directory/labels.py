"""Names of roles and structures, read once per process and reloaded only when someone changes them.

Reasons ("Président(e) — Club des Calanques") name roles and structures; loading the 1,600 structures of
the federation for every page or every list costs more than the rest of the page. Triggers on ``role``
and ``structure`` (migration 0100) write a new random token into ``label_version`` on every insert,
delete or rename, in the same transaction; a reader compares that one row with the token of its cache.
A random token rather than ``+ 1``: a rename rolled back must not leave a number that a later, different
change reuses. Every process (portal workers, engines) thus sees a rename at its next read.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import peewee as pw

from engine.db import BaseModel, database


class LabelVersion(BaseModel):
    """One row (id 1): a token that changes whenever a role or structure is added, renamed or removed."""

    version = pw.BigIntegerField(default=0)


@dataclass(frozen=True)
class Labels:
    version: int
    roles: dict[int, tuple[str, str]]  # id → (French, English)
    structures: dict[int, str]  # id → name

    def role(self, role_id: int | None) -> tuple[str, str]:
        return self.roles.get(role_id, ("?", "?")) if role_id is not None else ("?", "?")

    def structure(self, structure_id: int | None) -> str:
        return self.structures.get(structure_id, "?") if structure_id is not None else "?"


VERSION_SQL = "SELECT version FROM label_version WHERE id = 1"  # also a scalar subquery in larger statements
_lock = threading.Lock()
_cache: tuple[object, Labels] | None = None  # (the database object it was read from, the labels)


def current_version() -> int:
    row = database.obj.execute_sql(VERSION_SQL).fetchone()
    return int(row[0]) if row else 0


def _load(version: int) -> Labels:
    db = database.obj
    roles = {int(i): (str(fr), str(en)) for i, fr, en in db.execute_sql("SELECT id, name_fr, name_en FROM role")}
    structures = {int(i): str(name) for i, name in db.execute_sql("SELECT id, name FROM structure")}
    return Labels(version, roles, structures)


def current(version: int | None = None) -> Labels:
    """The labels as the database holds them now: one primary-key read (none when the caller read ``version``
    in its own statement), and a reload after a change."""
    global _cache
    db = database.obj
    version = current_version() if version is None else int(version)
    cached = _cache
    if cached is not None and cached[0] is db and cached[1].version == version:
        return cached[1]
    labels = _load(version)
    if not db.in_transaction():  # what a transaction read may still be rolled back
        with _lock:
            _cache = (db, labels)
    return labels


def forget() -> None:
    """Drop the cache (tests, or a process that re-binds its database)."""
    global _cache
    with _lock:
        _cache = None


MODELS = [LabelVersion]
