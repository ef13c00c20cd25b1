"""How long ``palanquee demo-data --members N`` takes, against a plain-sqlite3 baseline in the same run.

    python -m bench.demo_data [--members 100000] [--database-url postgresql://…]

The baseline inserts N rows of the same shape into the same kind of SQLite file with the standard
library's ``executemany`` in one transaction: the floor of what any builder can do. The target for
100,000 members is under 30 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import time
from pathlib import Path

from bench.setup import bench_instance
from engine import demo


def baseline(n: int, folder: Path) -> float:
    connection = sqlite3.connect(folder / "baseline.sqlite3")
    connection.execute("PRAGMA journal_mode=wal")
    connection.execute("CREATE TABLE member (id INTEGER PRIMARY KEY, licence_number TEXT UNIQUE, first_name TEXT, "
                       "last_name TEXT, email TEXT, email_key TEXT, club_id INTEGER, licence_season INTEGER, "
                       "licence_valid_until DATE, created_at DATETIME)")
    connection.execute("CREATE INDEX member_email_key ON member (email_key)")
    rows = ((f"A-13-{i:06d}", "Camille", f"Martin{i}", f"c.m{i}@orange.fr", f"c.m{i}@orange.fr", i % 1500, 2026,
             "2027-09-14", "2026-11-24 10:00:00") for i in range(n))
    started = time.perf_counter()
    with connection:
        connection.executemany("INSERT INTO member (licence_number, first_name, last_name, email, email_key, "
                               "club_id, licence_season, licence_valid_until, created_at) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    with bench_instance("demo", args.database_url) as bench:
        started = time.perf_counter()
        summary = demo.build(bench.settings, members=args.members)
        elapsed = time.perf_counter() - started
        base = baseline(args.members, bench.folder)
        print(f"machine: {os.cpu_count()} cores; database: {bench.url.split(':')[0]}")
        print(f"demo-data --members {args.members}: {elapsed:.1f} s ({summary.members / elapsed:,.0f} members/s, "
              f"{summary.mandates} mandates, {summary.structures} structures)")
        print(f"baseline (sqlite3 executemany of {args.members} bare member rows): {base:.2f} s")
        print(f"ratio demo-data / baseline: {elapsed / base:.1f}x")


if __name__ == "__main__":
    main()
