"""Fan-out: one 10 KB multipart post to a role-based list of N members, from intake to the last copy at a sink.

    python -m bench.fanout [--sizes 1000,10000,100000] [--connections 8] [--processes 2] [--dkim]
    python -m bench.fanout --postgresql [--engines 1,2,3] [--processes 1] [--sizes …]
    python -m bench.fanout --database-url postgresql://USER@HOST:PORT/DB [--engines 1,2,3] …

For each N: seed N members holding a board role in one region (SQLite by default), start Postfix's
``smtp-sink`` on loopback and ``palanquee engine`` in its own process with the sink as smarthost,
send the post over SMTP, and time from the intake's 250 to the moment every delivery row is
``sent`` (each row is marked sent only after the sink's 250). Prints copies per second and the
engine's peak RSS, then, in the same run, the rate of ``smtp-source`` sending 10 KB messages to
the same sink over the same number of connections: the ceiling of this machine.

On PostgreSQL (``--postgresql`` starts a private cluster on loopback; ``--database-url`` names a server
on which a fresh database is created for each run and dropped after it), each size runs with each
number of ``--engines``: that many ``palanquee engine`` processes on the one database, sharing the
send through their claims (``SKIP LOCKED``); the post goes to the first. The database server's CPU is
reported when the cluster is ours.

``--dkim`` runs each size three times (unsigned, DKIM-signed with an RSA-2048 key of the list domain,
DKIM plus an ARC seal) and measures the signing limit in the same run: RSA-2048 signatures per second
of the engine's signer (``engine.posting.dkim.sign_bytes``) on as many processes as the engine
delivers with. A signed copy costs one signature, a sealed one three; the ratio of copies per second
to that limit says how much of the signing capacity the engine turns into copies.
"""

from __future__ import annotations

import argparse
import os
import shutil
import smtplib
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import date
from email.message import EmailMessage
from pathlib import Path

from bench import postgres
from bench.setup import migrated_database
from engine import clock
from engine import db as engine_db
from engine.config import load_settings
from engine.directory.models import Mandate, Member, Role, Structure, StructureKind
from engine.lists.models import CriterionRole, Domain, ListCriterion, MailingList

LIST = "comite_directeur.comite@listes.example.fr"
ONE_ENGINE: dict[int, float] = {}  # copies/s of one engine per size, in this run (PostgreSQL)


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


def cpu_seconds(pid: int) -> float:
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def sent_count(url: str) -> int:
    return postgres.count(url, "SELECT COUNT(*) FROM delivery WHERE state = 'sent'")


def family(pid: int) -> list[int]:
    """The engine and its delivery helper processes."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


def sign_setup(url: str, arc: bool) -> None:
    """A DKIM key for the list domain (as `palanquee dkim generate` makes it); ARC sealing on the list."""
    from engine.posting import keys

    database = engine_db.bind(engine_db.make_database(url))
    database.connect()
    keys.generate("listes.example.fr")
    if arc:
        MailingList.update(arc_seal=True).execute()
    database.close()


def run_engine(n: int, connections: int, processes: int, folder: Path, mode: str = "unsigned", url: str = "",
               engines: int = 1, server_pids: list[int] | None = None) -> tuple[float, float, float, float]:
    """(seconds from the 250 to the last copy, peak RSS MB, engine CPU s, database server CPU s)."""
    url = url or f"sqlite:///{folder / f'fanout-{n}-{mode}.sqlite3'}"
    seed(url, n)
    if mode != "unsigned":
        sign_setup(url, arc=mode == "arc")
    sink, sink_port = start_sink(folder)
    ports = [free_port() for _ in range(engines)]
    env = {**os.environ, "PALANQUEE_DATABASE_URL": url, "PALANQUEE_SECRET_KEY": "bench-secret-key-0123456789",
           "PALANQUEE_INSTANCE": str(folder), "PALANQUEE_SMARTHOST": f"smtp://127.0.0.1:{sink_port}",
           "PALANQUEE_DELIVERY_CONNECTIONS": str(connections), "PALANQUEE_DELIVERY_PROCESSES": str(processes),
           "PALANQUEE_BASE_URL": "https://listes.example.fr", "PALANQUEE_INBOUND_AUTHENTICATION": "off",
           "PALANQUEE_DNS_RESOLVER": "none"}
    running = [subprocess.Popen([sys.executable, "-m", "portal.cli", "engine"],
                                env={**env, "PALANQUEE_SMTP_LISTEN": f"127.0.0.1:{port}"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for port in ports]
    try:
        for port in ports:
            wait_port(port, timeout=120)
        time.sleep(1.0)  # let the delivery helpers start
        with smtplib.SMTP("127.0.0.1", ports[0]) as client:
            client.send_message(ten_kb_post(), from_addr="elodie@example.fr", to_addrs=[LIST])
        started = time.perf_counter()  # the 250 is in
        pids = [pid for engine in running for pid in family(engine.pid)]
        cpu_before = sum(cpu_seconds(pid) for pid in pids)
        server_before = postgres.tree_cpu(server_pids or [])
        while sent_count(url) < n:
            if any(engine.poll() is not None for engine in running):
                raise RuntimeError("an engine stopped")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        rss = sum(peak_rss_mb(pid) for pid in pids)
        cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
        server = postgres.tree_cpu(server_pids or []) - server_before
        if os.environ.get("FANOUT_VERBOSE"):
            print("engine user/system CPU seconds:", [cpu_split(pid) for pid in pids])
    finally:
        for engine in running:
            engine.terminate()
        for engine in running:
            engine.wait(60)
        sink.terminate()
        sink.wait(10)
    return elapsed, rss, cpu, server


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


def _sign_for(seconds: float) -> int:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from engine.posting.dkim import sign_bytes

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    data = b"x" * 1500  # about the canonical header fields of a copy
    count, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        sign_bytes(key, data)
        count += 1
    return count


def signing_limit(processes: int, seconds: float = 5.0) -> float:
    """RSA-2048 signatures per second of the engine's signer on ``processes`` processes at once."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(processes) as pool:
        counts = list(pool.map(_sign_for, [seconds] * processes))
    return sum(counts) / seconds


def per_copy_breakdown() -> str:
    """In one process: µs per copy to join it, to sign it (body hash + RSA), and the RSA operation alone."""
    from email import policy as email_policy

    from cryptography.hazmat.primitives.asymmetric import rsa

    from engine.posting.dkim import Signature, sign_bytes
    from engine.posting.keys import Algorithm, SigningKey
    from engine.posting.render import ListInfo, Personal, prepare
    from engine.posting.signing import CopySigner

    prepared = prepare(ten_kb_post().as_bytes(policy=email_policy.SMTP),
                       ListInfo(list_id=1, name="Comité directeur", local_part="cd", domain="listes.example.fr",
                                rewrite_from=True))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = CopySigner(prepared, [Signature(SigningKey("listes.example.fr", "s", Algorithm.RSA, key))])
    people = [Personal(f"https://listes.example.fr/u/{i:020d}", f"mailto:x{i}", "membre du CD") for i in range(300)]

    def timed(function) -> float:  # type: ignore[no-untyped-def]
        started = time.process_time()
        for person in people:
            function(person)
        return (time.process_time() - started) / len(people) * 1e6

    join = timed(lambda p: prepared.copy(p, stuffed=True))
    body = timed(lambda p: signer.body.of(prepared.pieces(p)[1:]))
    signed = timed(lambda p: signer.copy(p, stuffed=True))
    rsa_only = timed(lambda p: sign_bytes(key, b"x" * 1500))
    whole = timed(lambda p: __import__("hashlib").sha256(__import__("engine.posting.dkim", fromlist=["x"])
                  .canonical_lines(prepared.join(prepared.pieces(p)))).digest())
    return (f"per copy, one process: join {join:.0f} µs; signed copy {signed:.0f} µs, of which RSA {rsa_only:.0f} µs "
            f"and body hash {body:.0f} µs (canonicalising the whole copy instead: {whole:.0f} µs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--connections", type=int, default=load_settings(
        environ={}, overrides={"secret_key": "x" * 16}).delivery_connections)
    parser.add_argument("--processes", type=int, default=2, help="delivery processes of each engine")
    parser.add_argument("--dkim", action="store_true", help="also run signed and ARC-sealed, with the signing limit")
    parser.add_argument("--database-url", default="", help="a PostgreSQL server (a fresh database per run)")
    parser.add_argument("--postgresql", action="store_true", help="run on a private PostgreSQL cluster")
    parser.add_argument("--engines", default="1", help="numbers of engine processes to run each size with")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; Python {sys.version.split()[0]}; SQLite {sqlite3.sqlite_version}; "
          f"{args.processes} delivery processes x {args.connections} SMTP connections per engine; "
          f"receiver: Postfix smtp-sink on 127.0.0.1")
    folder = Path(tempfile.mkdtemp(prefix="palanquee-fanout-"))
    try:
        if args.dkim:
            print(per_copy_breakdown())
        with postgres.server(args.database_url, args.postgresql) as server:
            for n in [int(size) for size in args.sizes.split(",")]:
                for engines in [int(count) for count in args.engines.split(",")]:
                    run_size(args, folder, n, engines, server)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_size(args: argparse.Namespace, folder: Path, n: int, engines: int, server: postgres.Server | None) -> None:
    """One size with one number of engines: each mode, then the smtp-source ceiling, ratios printed."""
    rates, limits = {}, {}
    where = "PostgreSQL" if server else "SQLite"
    for mode in ("unsigned", "dkim", "arc") if args.dkim else ("unsigned",):
        print(f"load average before the {mode} run: {os.getloadavg()[0]:.2f}")
        if server is None:
            elapsed, rss, cpu, db_cpu = run_engine(n, args.connections, args.processes, folder, mode, engines=engines)
        else:
            with server.fresh_database("palanquee_fanout") as url:
                elapsed, rss, cpu, db_cpu = run_engine(n, args.connections, args.processes, folder, mode, url,
                                                       engines, server.pids)
        rates[mode] = n / elapsed
        server_part = f", database server {db_cpu / n * 1e6:5.0f} µs/copy" if server and server.pids else ""
        print(f"N={n:>7} {where} {engines} engine(s) {mode:>8}: {elapsed:7.2f} s from 250 to last copy, "
              f"{n / elapsed:7.0f} copies/s, engine CPU {cpu / n * 1e6:5.0f} µs/copy{server_part}, "
              f"peak RSS {rss:6.1f} MB (all processes)")
        if mode != "unsigned":  # the machine's load moves: measure the limit next to each signed run
            limits[mode] = signing_limit(args.processes)
            print(f"N={n:>7}: signing limit {limits[mode]:6.0f} RSA signatures/s on {args.processes} "
                  f"processes (load average {os.getloadavg()[0]:.2f})")
    if server is not None:  # the baseline of several engines: one engine, same size, same run
        if engines == 1:
            ONE_ENGINE[n] = rates["unsigned"]
        elif n in ONE_ENGINE:
            print(f"N={n:>7}: {engines} engines = {rates['unsigned'] / ONE_ENGINE[n]:.2f} of one engine's rate")
    base = run_baseline(min(n, 50_000), args.connections * engines, folder)
    ceiling = min(n, 50_000) / base
    print(f"N={n:>7}: smtp-source ceiling {ceiling:7.0f} msgs/s over {args.connections * engines} connections -> "
          f"unsigned ratio {rates['unsigned'] / ceiling:.2f}")
    if args.dkim:
        print(f"N={n:>7}: DKIM {rates['dkim']:6.0f} copies/s = {rates['dkim'] / rates['unsigned']:.2f} of unsigned, "
              f"{rates['dkim'] / limits['dkim']:.2f} of the signing limit (target >= 0.85 and >= 1,500 copies/s)")
        print(f"N={n:>7}: ARC+DKIM {rates['arc']:6.0f} copies/s = {rates['arc'] / rates['dkim']:.2f} of DKIM alone, "
              f"{rates['arc'] * 3 / limits['arc']:.2f} of the signing limit (3 signatures a copy)")


if __name__ == "__main__":
    main()
