"""How long ``resolve()`` takes to stream a list reaching 100,000 members, against a plain-sqlite3 floor.

    python -m bench.resolve [--members 112000] [--runs 5] [--database-url postgresql://…]

Builds the demo federation (``engine.demo.build``), adds a list whose one criterion is "every licensee of
the federation, valid licence or not" (about 91 distinct addresses per 100 members: families share one,
a few have none), then times full passes of ``resolve()`` (every batch consumed, reasons on) and of
``count_recipients()``. The baseline reads the same rows with the standard library's sqlite3 in one
ordered ``SELECT`` (``fetchall``): the floor of any implementation in Python. Peak Python memory of one
pass is measured separately with tracemalloc, to show that it does not grow with the list.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import time
import tracemalloc

from bench.setup import bench_instance
from engine import clock, demo
from engine.config import Settings
from engine.directory.models import Structure
from engine.lists.models import Domain, ListCriterion, MailingList
from engine.lists.resolve import count_recipients, resolve

TARGET_SECONDS = 0.5


def make_list() -> MailingList:
    root = Structure.get(Structure.parent.is_null())
    domain = Domain.get(Domain.name == demo.LIST_DOMAIN)
    ml = MailingList.create(domain=domain, local_part="bench.tous", name="Bench", structure=root, kind="role",
                            created_at=clock.now())
    ListCriterion.create(mailing_list=ml, structure=root, include_subtree=True, require_valid_licence=False)
    return ml


def one_pass(ml: MailingList) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process, recipients) of one full pass; CPU time is what the pass
    costs when other processes share the cores (SQLite runs in this process)."""
    started, cpu = time.perf_counter(), time.process_time()
    total = sum(len(batch) for batch in resolve(ml))
    return time.perf_counter() - started, time.process_time() - cpu, total


def baseline(path: str) -> float:
    connection = sqlite3.connect(path)
    started = time.perf_counter()
    rows = connection.execute("SELECT email_key, email, id FROM member WHERE email_key IS NOT NULL "
                              "ORDER BY email_key").fetchall()
    elapsed = time.perf_counter() - started
    connection.close()
    assert rows
    return elapsed


def peak_memory(ml: MailingList) -> float:
    tracemalloc.start()
    one_pass(ml)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=112_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    with bench_instance("resolve", args.database_url) as bench:
        report(bench.settings, bench.url, args.members, args.runs)


def report(settings: Settings, url: str, members: int, runs: int) -> None:
    demo.build(settings, members=members)
    ml = make_list()
    one_pass(ml)  # warm the page cache
    times, cpu_times, total = [], [], 0
    for _ in range(runs):
        elapsed, cpu, total = one_pass(ml)
        times.append(elapsed)
        cpu_times.append(cpu)
    started = time.perf_counter()
    counted = count_recipients(ml)
    count_time = time.perf_counter() - started
    assert counted == total, (counted, total)
    memory = peak_memory(ml)
    print(f"machine: {os.cpu_count()} cores; database: {url.split(':')[0]}; {members} members built")
    print(f"resolve() of a list reaching {total:,} addresses: best {min(times):.3f} s, median "
          f"{statistics.median(times):.3f} s over {runs} runs ({min(times) / total * 1e6:.2f} µs/recipient); "
          f"target < {TARGET_SECONDS} s: {'met' if min(times) < TARGET_SECONDS else 'MISSED'}")
    print(f"CPU time of resolve(): best {min(cpu_times):.3f} s; load average during the run: "
          f"{os.getloadavg()[0]:.1f}")
    print(f"count_recipients(): {count_time:.3f} s")
    print(f"peak Python memory during one pass (tracemalloc): {memory:.1f} MB")
    if url.startswith("sqlite"):
        base = baseline(url[len("sqlite:///"):])
        print(f"baseline (sqlite3 fetchall of the same {total:,}-ish rows, ordered): {base:.3f} s; "
              f"ratio resolve / baseline: {min(times) / base:.1f}x")

if __name__ == "__main__":
    main()
