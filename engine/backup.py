"""Consistent backups of a running database: SQLite through its online backup API, PostgreSQL with pg_dump.

Both are safe while the portal and the engines run: SQLite's backup copies every page inside one read
transaction (WAL lets writers go on), pg_dump reads one snapshot. See docs/operations.md for restoring.
"""

from __future__ import annotations

import glob
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

# What a restore is checked against: the tables whose rows a federation would miss first.
COUNTED = ("member", "mailing_list", "message", "delivery", "opt_out", "audit_event")


class BackupError(Exception):
    """The backup could not be taken or checked; the message says why."""


@dataclass
class Backup:
    path: Path
    kind: str  # "sqlite" or "pg_dump"
    counts: dict[str, int]


def backup(database_url: str, target: Path) -> Backup:
    """Write a consistent copy of the database at ``database_url`` to ``target`` (never over an existing file)."""
    if target.exists():
        raise BackupError(f"{target} exists: choose a new file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    scheme = urlsplit(database_url).scheme
    if scheme == "sqlite":
        return _backup_sqlite(unquote(database_url[len("sqlite:///"):]), target)
    if scheme in ("postgres", "postgresql"):
        return _backup_postgresql(database_url, target)
    raise BackupError(f"unsupported database URL: {database_url}")


def _backup_sqlite(source: str, target: Path) -> Backup:
    if not Path(source).exists():
        raise BackupError(f"no database at {source}")
    partial = target.with_name(target.name + ".partial")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(partial)
    try:
        src.backup(dst)  # every page in one step: one consistent snapshot
        dst.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
        problem = dst.execute("PRAGMA integrity_check").fetchone()[0]
        if problem != "ok":
            raise BackupError(f"the copy fails SQLite's integrity check: {problem}")
        counts = _counts(dst)
    finally:
        src.close()
        dst.close()
    os.replace(partial, target)
    return Backup(target, "sqlite", counts)


def _counts(connection: sqlite3.Connection) -> dict[str, int]:
    tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return {name: connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
            for name in COUNTED if name in tables}


def postgresql_tool(name: str) -> str:
    """The newest installed PostgreSQL client program ``name`` (pg_dump must not be older than the server)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    path = found[-1] if found else shutil.which(name)
    if not path:
        raise BackupError(f"{name} not found: install Debian's postgresql-client")
    return path


def _backup_postgresql(url: str, target: Path) -> Backup:
    partial = target.with_name(target.name + ".partial")
    # --format=custom: compressed, restorable table by table with pg_restore; one snapshot.
    result = subprocess.run([postgresql_tool("pg_dump"), "--format=custom", "--no-owner", f"--file={partial}",
                             f"--dbname={url}"], capture_output=True, text=True)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed: {result.stderr.strip()}")
    listing = subprocess.run([postgresql_tool("pg_restore"), "--list", str(partial)], capture_output=True,
                             text=True)
    if listing.returncode != 0 or "TABLE DATA public message" not in listing.stdout:
        partial.unlink(missing_ok=True)
        raise BackupError(f"the dump cannot be read back: {listing.stderr.strip()}")
    os.replace(partial, target)
    return Backup(target, "pg_dump", {})
