"""Fan-out: one 10 KB multipart post to a role-based list of N members, from intake to the last copy at a sink.

    python -m bench.fanout [--sizes 1000,10000,100000] [--connections 8] [--processes 2] [--dkim]

For each N: seed N members holding a board role in one region (SQLite by default), start Postfix's
``smtp-sink`` on loopback and ``palanquee engine`` in its own process with the sink as smarthost,
send the post over SMTP, and time from the intake's 250 to the moment every delivery row is
``sent`` (each row is marked sent only after the sink's 250). Prints copies per second and the
engine's peak RSS, then, in the same run, the rate of ``smtp-source`` sending 10 KB messages to
the same sink over the same number of connections: the ceiling of this machine.

``--dkim`` runs each size three times (unsigned, DKIM-signed with an RSA-2048 key of the list domain,
DKIM plus an ARC seal) and measures the signing limit in the same run: RSA-2048 signatures per second
of the engine's signer (``engine.posting.dkim.sign_bytes``) on as many processes as the engine
delivers with. A signed copy costs one signature, a sealed one three; the ratio of copies per second
to that limit says how much of the signing capacity the engine turns into copies.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import smtplib
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from email.message import EmailMessage
from pathlib import Path

import psutil

from bench import signing
from bench.setup import migrated_database
from engine import clock
from engine import db as engine_db
from engine.config import load_settings
from engine.directory.models import Mandate, Member, Role, Structure, StructureKind
from engine.lists.models import CriterionRole, Domain, ListCriterion, MailingList

LIST = "comite_directeur.comite@listes.example.fr"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seed(url: str, n: int) -> None:
    database = migrated_database(url)
    now = clock.now()
    national = Structure.create_node(code="FED", name="Fédération", kind=StructureKind.FEDERATION)
    region = Structure.create_node(code="CR13", name="Comité régional Provence", kind=StructureKind.REGIONAL,
                                   parent=national)
    club = Structure.create_node(code="C1301", name="Club de Cassis", kind=StructureKind.CLUB, parent=region)
    role = Role.create(code="board", name_fr="membre du comité directeur", name_en="board member", category="board")
    with database.atomic():
        for start in range(0, n, 5000):
            rows = [{"licence_number": f"A-13-{i:07d}", "first_name": "Camille", "last_name": f"Martin{i}",
                     "email": f"camille.martin{i}@example.net", "email_key": f"camille.martin{i}@example.net",
                     "club": club.id, "licence_season": 2026, "licence_valid_until": date(2027, 9, 14),
                     "created_at": now} for i in range(start, min(n, start + 5000))]
            Member.insert_many(rows).execute()
        Mandate.insert_from(
            Member.select(Member.id, pw_value(role.id), pw_value(region.id), pw_value(date(2024, 1, 1)),
                          pw_value("import")),
            [Mandate.member, Mandate.role, Mandate.structure, Mandate.starts_on, Mandate.source]).execute()
    domain = Domain.create(name="listes.example.fr", structure=national, created_at=now)
    board = MailingList.create(domain=domain, local_part="comite_directeur.comite", name="Comité directeur",
                               structure=region, created_at=now, post_policy="anyone")
    criterion = ListCriterion.create(mailing_list=board, structure=region, require_valid_licence=False)
    CriterionRole.create(criterion=criterion, role=role)
    database.close()


def pw_value(value: object):  # type: ignore[no-untyped-def]
    import peewee

    return peewee.Value(value)


def ten_kb_post() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Élodie Dupré <elodie@example.fr>"
    message["To"] = LIST
    message["Subject"] = "Compte rendu du comité directeur"
    paragraph = "La séance est ouverte à 20 h. Le budget des sorties est adopté à l'unanimité. " * 8
    message.set_content((paragraph + "\n\n") * 5)
    message.add_alternative("<html><body>" + ("<p>" + paragraph + "</p>") * 5 + "</body></html>", subtype="html")
    return message


def start_sink(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(["smtp-sink", "-u", "nobody", f"127.0.0.1:{port}", "1000"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return process, port


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def engine_tree(pid: int) -> list[psutil.Process]:
    """The engine and every process under it (its delivery helpers)."""
    engine = psutil.Process(pid)
    return [engine, *engine.children(recursive=True)]


def tree_cpu(tree: list[psutil.Process]) -> float:
    """User + system CPU seconds of the processes: the machine's other load does not count in it."""
    return sum(sum(process.cpu_times()[:2]) for process in tree)


def wait_ready(engine: subprocess.Popen[bytes], log: Path, processes: int, timeout: float = 120) -> int:
    """Until the engine listens and each of its ``processes - 1`` delivery helpers has said it runs;
    returns the intake's port (the engine binds port 0 and logs the one it got)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        port = re.search(r"listening on smtp 127\.0\.0\.1:(\d+)", text)
        if port and text.count("(delivery only)") >= processes - 1:
            return int(port.group(1))
        if engine.poll() is not None:
            raise RuntimeError(f"the engine stopped:\n{text[-2000:]}")
        time.sleep(0.05)
    raise RuntimeError("the engine did not start in time")


class Load:
    """The 1-minute load average seen during a run: lowest and highest."""

    def __init__(self) -> None:
        self.low = self.high = os.getloadavg()[0]

    def sample(self) -> None:
        now = os.getloadavg()[0]
        self.low, self.high = min(self.low, now), max(self.high, now)

    def __str__(self) -> str:
        return f"load average {self.low:.1f}-{self.high:.1f}"


def sent_count(path: str) -> int:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return int(connection.execute("SELECT COUNT(*) FROM delivery WHERE state = 'sent'").fetchone()[0])
    finally:
        connection.close()


def sign_setup(url: str, arc: bool) -> None:
    """A DKIM key for the list domain (as `palanquee dkim generate` makes it); ARC sealing on the list."""
    from engine.posting import keys

    database = engine_db.bind(engine_db.make_database(url))
    database.connect()
    keys.generate("listes.example.fr")
    if arc:
        MailingList.update(arc_seal=True).execute()
    database.close()


@dataclass
class Run:
    """One fan-out: seconds from the intake's 250 to the last copy recorded sent, the engine's CPU
    seconds (all its processes), their peak RSS in MB, and the load average during the run."""

    n: int
    seconds: float
    cpu: float
    rss: float
    load: Load

    @property
    def rate(self) -> float:
        return self.n / self.seconds

    @property
    def cpu_per_copy(self) -> float:
        return self.cpu / self.n * 1e6


def run_engine(n: int, connections: int, processes: int, folder: Path, mode: str = "unsigned") -> Run:
    database_path = folder / f"fanout-{n}-{mode}.sqlite3"
    url = f"sqlite:///{database_path}"
    seed(url, n)
    if mode != "unsigned":
        sign_setup(url, arc=mode == "arc")
    sink, sink_port = start_sink(folder)
    env = {**os.environ, "PALANQUEE_DATABASE_URL": url, "PALANQUEE_SECRET_KEY": "bench-secret-key-0123456789",
           "PALANQUEE_INSTANCE": str(folder), "PALANQUEE_SMTP_LISTEN": "127.0.0.1:0",
           "PALANQUEE_SMARTHOST": f"smtp://127.0.0.1:{sink_port}",
           "PALANQUEE_DELIVERY_CONNECTIONS": str(connections), "PALANQUEE_DELIVERY_PROCESSES": str(processes),
           "PALANQUEE_BASE_URL": "https://listes.example.fr", "PALANQUEE_INBOUND_AUTHENTICATION": "off"}
    log_path = folder / f"engine-{n}-{mode}.log"
    with open(log_path, "wb") as log:
        engine = subprocess.Popen([sys.executable, "-m", "portal.cli", "engine"], env=env, stdout=log, stderr=log)
    try:
        smtp_port = wait_ready(engine, log_path, processes)  # helpers started: their imports are not counted
        with smtplib.SMTP("127.0.0.1", smtp_port) as client:
            client.send_message(ten_kb_post(), from_addr="elodie@example.fr", to_addrs=[LIST])
        started = time.perf_counter()  # the 250 is in
        tree = engine_tree(engine.pid)
        cpu_before = tree_cpu(tree)
        load = Load()
        while sent_count(str(database_path)) < n:
            if engine.poll() is not None:
                raise RuntimeError("the engine stopped")
            load.sample()
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        cpu = tree_cpu(tree) - cpu_before
        rss = sum(peak_rss_mb(process.pid) for process in tree)
        if os.environ.get("FANOUT_VERBOSE"):
            print("engine user/system CPU seconds:", [tuple(process.cpu_times())[:2] for process in tree])
    finally:
        engine.terminate()
        engine.wait(30)
        sink.terminate()
        sink.wait(10)
    return Run(n, elapsed, cpu, rss, load)


def run_baseline(n: int, connections: int, folder: Path) -> float:
    sink, port = start_sink(folder)
    try:
        started = time.perf_counter()
        subprocess.run(["smtp-source", "-d", "-s", str(connections), "-m", str(n), "-l", "10240", "-f", "a@example.org",
                        "-t", "b@example.org", f"127.0.0.1:{port}"], check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - started
    finally:
        sink.terminate()
        sink.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--connections", type=int, default=load_settings(
        environ={}, overrides={"secret_key": "x" * 16}).delivery_connections)
    parser.add_argument("--processes", type=int, default=2, help="delivery processes of the engine")
    parser.add_argument("--dkim", action="store_true", help="also run signed and ARC-sealed, with the signing limit")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"machine: {os.cpu_count()} cores; Python {sys.version.split()[0]}; SQLite {sqlite3.sqlite_version}; "
          f"{args.processes} delivery processes x {args.connections} SMTP connections; receiver: Postfix smtp-sink on 127.0.0.1")
    folder = Path(tempfile.mkdtemp(prefix="palanquee-fanout-"))
    try:
        if args.dkim:
            print(signing.per_copy_breakdown(ten_kb_post()))
        for n in sizes:
            runs: dict[str, Run] = {}
            for mode in ("unsigned", "dkim", "arc") if args.dkim else ("unsigned",):
                runs[mode] = run = run_engine(n, args.connections, args.processes, folder, mode)
                print(f"N={n:>7} {mode:>8}: {run.seconds:7.2f} s from 250 to last copy, {run.rate:7.0f} copies/s, "
                      f"engine CPU {run.cpu_per_copy:5.0f} µs/copy, peak RSS {run.rss:6.1f} MB (all processes), "
                      f"{run.load}")
            base = run_baseline(min(n, 50_000), args.connections, folder)
            ceiling = min(n, 50_000) / base
            print(f"N={n:>7}: smtp-source ceiling {ceiling:7.0f} msgs/s -> unsigned ratio {runs['unsigned'].rate / ceiling:.2f}")
            if args.dkim:
                report_signed(n, runs, args.processes, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def report_signed(n: int, runs: dict[str, Run], processes: int, folder: Path) -> None:
    """The signed runs next to the unsigned one and to the signing limit, measured right after them."""
    sample = signing.sample(ten_kb_post())
    unsigned, dkim, arc = runs["unsigned"], runs["dkim"], runs["arc"]
    for mode, signatures in (("dkim", 1), ("arc", 3)):
        sink, port = start_sink(folder)
        load = Load()
        try:
            limit = signing.signing_limit(port, sample, processes, signatures)
        finally:
            sink.terminate()
            sink.wait(10)
        load.sample()
        run = runs[mode]
        print(f"N={n:>7} {mode:>8}: signing limit {limit:6.0f} copies/s ({signatures} RSA signature(s) a copy, "
              f"{processes} processes, {load}); {run.rate:6.0f} copies/s = {run.rate / limit:.2f} of the limit, "
              f"{run.rate / unsigned.rate:.2f} of unsigned")
    print(f"N={n:>7}: DKIM adds {dkim.cpu_per_copy - unsigned.cpu_per_copy:5.0f} µs of engine CPU a copy; ARC "
          f"{arc.cpu_per_copy - dkim.cpu_per_copy:5.0f} µs more ({arc.rate / dkim.rate:.2f} of DKIM's copies/s). "
          f"Target: DKIM >= 1,500 copies/s and >= 0.85 of its limit")


if __name__ == "__main__":
    main()
