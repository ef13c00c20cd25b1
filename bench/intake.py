"""Intake load: 20 concurrent SMTP clients posting to a list, each post committed before its 250.

    python -m bench.intake [--messages 3000] [--sessions 20] [--size 2048] [--postgresql | --database-url URL]

Postfix's load generator ``smtp-source -s 20 -m N -l SIZE`` posts N messages over 20 concurrent
sessions (connections reused) to ``palanquee engine``'s SMTP intake; each is a post to a one-member
list, so the engine also expands and delivers it (to ``smtp-sink``), as it does in production. Timed
from the first connection to smtp-source's exit, then the messages stored in the database are
counted: every one must be there (the intake answers 250 only after the commit); then the benchmark waits
until every post is delivered (fan-out may lag the intake) and reports that time and the engine's CPU until
then, and the engine's CPU by thread while posting. Baseline in the same run: the same smtp-source against
Postfix's ``smtp-sink`` (which stores nothing). SQLite always;
PostgreSQL too with ``--postgresql`` (a private cluster) or ``--database-url`` (a server on which a
fresh database is made for the run). Target: at least 300 messages/s. With ``INTAKE_PROFILE=PATH`` the
engine runs under cProfile (``bench/profiled.py``: ``PATH.sqlite`` for the event loop, ``PATH.sqlite.db.prof``
for the database thread; profiling slows it, so its rates are not comparable).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import postgres
from bench.fanout import LIST, free_port, seed, start_sink, wait_port

SENDER = "elodie@example.fr"


def source(port: int, messages: int, sessions: int, size: int) -> float:
    """Seconds smtp-source takes to post ``messages`` over ``sessions`` reused connections."""
    started = time.perf_counter()
    subprocess.run(["smtp-source", "-d", "-s", str(sessions), "-m", str(messages), "-l", str(size),
                    "-f", SENDER, "-t", LIST, f"127.0.0.1:{port}"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def baseline(folder: Path, messages: int, sessions: int, size: int) -> float:
    sink, port = start_sink(folder)
    try:
        return messages / source(port, messages, sessions, size)
    finally:
        sink.terminate()
        sink.wait(10)


def threads_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of ``pid`` by thread name (threads of one name added up), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        name = name.rstrip("0123456789_") or name  # asyncio_3, palanquee-db: one line per kind
        found[name] = found.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return found


def drained(url: str, messages: int, timeout: float = 600.0) -> bool:
    """Wait until every post is done (expanded and its copy sent): fan-out may lag the intake."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if postgres.count(url, "SELECT COUNT(*) FROM message WHERE state = 'done'") >= messages:
            return True
        time.sleep(0.2)
    return False


def workers_up(url: str, workers: int, timeout: float = 120.0) -> None:
    """Wait until the engine's intake workers beat (each has its loop and its connection)."""
    deadline = time.monotonic() + timeout
    while postgres.count(url, "SELECT COUNT(*) FROM engine_heartbeat WHERE role = 'intake'") < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{workers} intake workers did not start within {timeout} s")
        time.sleep(0.1)


class Run:
    """What one engine run measured."""

    def __init__(self, rate: float, cpu: float, db_cpu: float, drain: float, total_cpu: float,
                 threads: dict[str, float]) -> None:
        self.rate, self.cpu, self.db_cpu, self.drain, self.total_cpu = rate, cpu, db_cpu, drain, total_cpu
        self.threads = threads


def engine_rate(url: str, folder: Path, messages: int, sessions: int, size: int,
                server_pids: list[int], processes: int = 1) -> Run:
    """The intake's rate and CPU on ``url`` (served by ``processes`` processes: CPU of all of them), then the time
    until every post was delivered."""
    seed(url, 1)
    sink, sink_port = start_sink(folder)
    smtp_port = free_port()
    env = {**os.environ, "PALANQUEE_DATABASE_URL": url, "PALANQUEE_SECRET_KEY": "bench-secret-key-0123456789",
           "PALANQUEE_INSTANCE": str(folder), "PALANQUEE_SMTP_LISTEN": f"127.0.0.1:{smtp_port}",
           "PALANQUEE_SMARTHOST": f"smtp://127.0.0.1:{sink_port}", "PALANQUEE_DELIVERY_PROCESSES": "1",
           "PALANQUEE_INTAKE_PROCESSES": str(processes),
           "PALANQUEE_BASE_URL": "https://listes.example.fr", "PALANQUEE_INBOUND_AUTHENTICATION": "off",
           "PALANQUEE_DNS_RESOLVER": "none", "PALANQUEE_MAX_RECIPIENTS": "100"}
    log_path = folder / f"engine-{smtp_port}.log"  # read when the engine does not stop
    with log_path.open("wb") as log_file:
        profile = os.environ.get("INTAKE_PROFILE")  # a path: the engine runs under cProfile (bench/profiled.py)
        command = ["-m", "bench.profiled", f"{profile}.{url.partition(':')[0]}", "engine"] if profile else \
            ["-m", "portal.cli", "engine"]
        engine = subprocess.Popen([sys.executable, *command], env={**env, "PYTHONFAULTHANDLER": "1"},
                                  stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        wait_port(smtp_port, timeout=120)
        workers_up(url, processes - 1)
        cpu_before, server_before = postgres.tree_cpu([engine.pid]), postgres.tree_cpu(server_pids)
        threads_before = threads_cpu(engine.pid)
        started = time.perf_counter()
        elapsed = source(smtp_port, messages, sessions, size)
        cpu = postgres.tree_cpu([engine.pid]) - cpu_before
        server = postgres.tree_cpu(server_pids) - server_before
        threads = {name: (seconds - threads_before.get(name, 0.0)) / messages * 1e6
                   for name, seconds in threads_cpu(engine.pid).items()}
        stored = postgres.count(url, "SELECT COUNT(*) FROM message")
        if stored != messages:
            raise RuntimeError(f"{messages} posts answered, {stored} stored")
        if not drained(url, messages):
            raise RuntimeError("the posts were not all delivered within 600 s")
        drain = time.perf_counter() - started
        total = postgres.tree_cpu([engine.pid]) - cpu_before
    finally:
        stop(engine, log_path)
        sink.terminate()
        sink.wait(10)
    return Run(messages / elapsed, cpu / messages * 1e6, server / messages * 1e6, drain, total / messages * 1e6,
               threads)


def stop(engine: subprocess.Popen[bytes], log_path: Path) -> None:
    """SIGTERM (a graceful stop); if it hangs, SIGABRT dumps every thread's stack (faulthandler) and fails."""
    engine.terminate()
    try:
        engine.wait(120)
    except subprocess.TimeoutExpired:
        engine.send_signal(signal.SIGABRT)
        engine.wait(30)
        tail = log_path.read_text(errors="replace")[-6000:]
        raise RuntimeError(f"the engine did not stop within 120 s of SIGTERM; its log ends:\n{tail}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=2048, help="bytes of body of each post")
    parser.add_argument("--database-url", default="", help="a PostgreSQL server to run on too")
    parser.add_argument("--postgresql", action="store_true", help="also run on a private PostgreSQL cluster")
    parser.add_argument("--intake-processes", default="1", help="PALANQUEE_INTAKE_PROCESSES values to compare, "
                        "each run in turn on each database (e.g. 1,2)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; smtp-source -s {args.sessions} "
          f"-m {args.messages} -l {args.size}; one-member list, copies to smtp-sink")
    folder = Path(tempfile.mkdtemp(prefix="palanquee-intake-"))
    os.chmod(folder, 0o755)
    try:
        with postgres.server(args.database_url, args.postgresql) as server:
            runs: list[tuple[str, str, list[int]]] = [("SQLite", f"sqlite:///{folder / 'intake.sqlite3'}", [])]
            for name, url, pids in runs + ([("PostgreSQL", "", server.pids)] if server else []):
                for processes in [int(n) for n in args.intake_processes.split(",")]:
                    sink_rate = baseline(folder, args.messages, args.sessions, args.size)
                    label = f"{name} ×{processes}"
                    if name == "PostgreSQL":
                        assert server is not None
                        with server.fresh_database("palanquee_intake") as fresh:
                            run = engine_rate(fresh, folder, args.messages, args.sessions, args.size, pids, processes)
                    else:
                        sqlite = f"{url}.{processes}"  # a fresh file for each run
                        run = engine_rate(sqlite, folder, args.messages, args.sessions, args.size, pids, processes)
                    report(label, run, sink_rate, args.messages, bool(pids))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def report(name: str, run: Run, sink_rate: float, messages: int, server: bool) -> None:
    server_part = f", database server {run.db_cpu:5.0f} µs/message" if server else ""
    print(f"{name:>13}: {run.rate:6.0f} messages/s ({run.rate / sink_rate:.2f} of smtp-sink's {sink_rate:.0f}/s "
          f"in the same run), engine CPU {run.cpu:5.0f} µs/message{server_part}; load average "
          f"{os.getloadavg()[0]:.2f}; target >= 300/s: {'met' if run.rate >= 300 else 'NOT met'}")
    threads = ", ".join(f"{thread} {cpu:.0f}" for thread, cpu in sorted(run.threads.items(), key=lambda t: -t[1])
                        if cpu >= 1)
    print(f"{'':>10}  engine CPU by thread while posting (µs/message): {threads}")
    print(f"{'':>10}  every post delivered {run.drain:.1f} s after the first connection ({messages / run.drain:.0f} "
          f"posts/s end to end), engine CPU until then {run.total_cpu:5.0f} µs/message")


if __name__ == "__main__":
    main()
