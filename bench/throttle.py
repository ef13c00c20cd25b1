"""Throttling: does a provider group's configured rate hold over thousands of deliveries?

    python -m bench.throttle [--paced 3000] [--others 1000] [--rate 3600] [--database-url postgresql://…]

N members of one list have addresses at ``paced.example`` (a rule of R messages a minute, nothing
else limited), M at ``other.example`` (the default rule, unlimited). One post goes over SMTP to a
``palanquee engine`` process whose smarthost is an aiosmtpd sink on loopback that notes when each
copy arrives and for which domain. Reported: the rate the paced group received, measured from its
copy number ``burst + 1`` (after the initial credit of about a second's slots) to its last, as a ratio
to the configured rate (the target: within 5 %), the same over all its copies, and when the last
unlimited copy arrived (a large list to one provider must not starve the others).
"""

from __future__ import annotations

import argparse
import os
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from bench.fanout import LIST, free_port, ten_kb_post, wait_port
from engine import clock
from engine import db as engine_db


class Arrivals:
    """The sink's handler: the monotonic time of each accepted copy, by recipient domain."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        now = time.monotonic()
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.times.setdefault(rcpt.rpartition("@")[2], []).append(now)
        return "250 2.0.0 Ok"

    def count(self) -> int:
        with self.lock:
            return sum(len(times) for times in self.times.values())


def seed(url: str, paced: int, others: int, rate: int) -> None:
    from datetime import date

    from bench.fanout import pw_value
    from engine.directory.models import Mandate, Member, Role, Structure, StructureKind
    from engine.lists.models import CriterionRole, Domain, ListCriterion, MailingList
    from engine.outbound.models import ThrottleRule

    database = engine_db.bind(engine_db.make_database(url))
    database.connect()
    engine_db.upgrade(database)
    now = clock.now()
    national = Structure.create_node(code="FED", name="Fédération", kind=StructureKind.FEDERATION)
    region = Structure.create_node(code="CR13", name="Comité régional", kind=StructureKind.REGIONAL, parent=national)
    club = Structure.create_node(code="C1301", name="Club", kind=StructureKind.CLUB, parent=region)
    role = Role.create(code="board", name_fr="membre du comité directeur", name_en="board member", category="board")
    addresses = [f"p{i}@paced.example" for i in range(paced)] + [f"o{i}@other.example" for i in range(others)]
    with database.atomic():
        Member.insert_many([{"licence_number": f"A-13-{i:07d}", "first_name": "Camille", "last_name": f"Martin{i}",
                             "email": address, "email_key": address, "club": club.id, "licence_season": 2026,
                             "licence_valid_until": date(2027, 9, 14), "created_at": now}
                            for i, address in enumerate(addresses)]).execute()
        Mandate.insert_from(
            Member.select(Member.id, pw_value(role.id), pw_value(region.id), pw_value(date(2024, 1, 1)),
                          pw_value("import")),
            [Mandate.member, Mandate.role, Mandate.structure, Mandate.starts_on, Mandate.source]).execute()
        ThrottleRule.create(name="bench", label="Bench", domains="paced.example", per_minute=rate)
    domain = Domain.create(name="listes.example.fr", structure=national, created_at=now)
    board = MailingList.create(domain=domain, local_part="comite_directeur.comite", name="Comité directeur",
                               structure=region, created_at=now, post_policy="anyone")
    CriterionRole.create(criterion=ListCriterion.create(mailing_list=board, structure=region,
                                                        require_valid_licence=False), role=role)
    database.close()


def run(url: str, paced: int, others: int, rate: int, folder: Path) -> None:
    seed(url, paced, others, rate)
    arrivals = Arrivals()
    sink = Controller(arrivals, hostname="127.0.0.1", port=free_port(), ready_timeout=10)
    sink.start()
    smtp_port = free_port()
    env = {**os.environ, "PALANQUEE_DATABASE_URL": url, "PALANQUEE_SECRET_KEY": "bench-secret-key-0123456789",
           "PALANQUEE_INSTANCE": str(folder), "PALANQUEE_SMTP_LISTEN": f"127.0.0.1:{smtp_port}",
           "PALANQUEE_SMARTHOST": f"smtp://127.0.0.1:{sink.port}", "PALANQUEE_BASE_URL": "https://listes.example.fr"}
    engine = subprocess.Popen([sys.executable, "-m", "portal.cli", "engine"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(smtp_port)
        with smtplib.SMTP("127.0.0.1", smtp_port) as client:
            client.send_message(ten_kb_post(), from_addr="elodie@example.fr", to_addrs=[LIST])
        started = time.monotonic()
        while arrivals.count() < paced + others:
            if engine.poll() is not None:
                raise RuntimeError("the engine stopped")
            time.sleep(0.2)
    finally:
        engine.terminate()
        engine.wait(30)
        sink.stop()
    report(arrivals, paced, rate, started)


def report(arrivals: Arrivals, paced: int, rate: int, started: float) -> None:
    times = sorted(arrivals.times["paced.example"])
    burst = max(1, rate // 60) + 1  # the credit of about a second's slots, at the start
    steady = (len(times) - burst) / (times[-1] - times[burst - 1]) * 60
    overall = (len(times) - 1) / (times[-1] - times[0]) * 60
    others = sorted(arrivals.times.get("other.example", [0.0]))
    print(f"machine: {os.cpu_count()} cores; Python {sys.version.split()[0]}; configured {rate}/min for {paced} copies")
    print(f"paced group: {steady:.0f}/min from copy {burst + 1} on (ratio {steady / rate:.3f}), {overall:.0f}/min "
          f"over all (ratio {overall / rate:.3f}); {times[-1] - times[0]:.1f} s from first to last")
    print(f"unlimited group: {len(others)} copies, the last {others[-1] - started:.1f} s after the post was accepted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paced", type=int, default=3000)
    parser.add_argument("--others", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=3600, help="messages a minute for the paced group")
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="palanquee-throttle-") as tmp:
        folder = Path(tmp)
        run(args.database_url or f"sqlite:///{folder / 'throttle.sqlite3'}", args.paced, args.others, args.rate,
            folder)


if __name__ == "__main__":
    main()
