"""What the delivery statistics cost on the staff pages when messages have 100,000 deliveries, and what classifying
a returned message costs; each against a baseline measured in the same run.

    python -m bench.stats [--deliveries 100000] [--messages 3] [--runs 5] [--database-url postgresql://…]

Statistics: one list with ``--messages`` finished messages of ``--deliveries`` copies each. Times
``list_figures`` (the lists page's one aggregate query) and ``message_figures`` (a messages page) before the
counts are settled (they count every delivery, as a message still sending does) and after ``settle()``;
the baseline is the messages page's previous per-state count (``engine.posting.queries.progress_of_many``).
Classification: every file of tests/data/dsn, against parsing the same bytes with the email package alone.
"""

from __future__ import annotations

import argparse
import email
import shutil
import tempfile
import time
from collections.abc import Callable
from email import policy
from pathlib import Path
from typing import Any

from engine import clock
from engine import db as engine_db
from engine.bounces import stats
from engine.bounces.classify import classify
from engine.db import database, sql_datetime
from engine.directory.models import Structure, StructureKind
from engine.lists.models import Domain, MailingList
from engine.posting import queries
from engine.posting.models import Message, MessageState

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "dsn"


def best(function: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def build(deliveries: int, messages: int) -> tuple[MailingList, list[Message]]:
    root = Structure.create_node(code="FED", name="Fédération", kind=StructureKind.FEDERATION)
    domain = Domain.create(name="listes.example.fr", structure=root, created_at=clock.now())
    ml = MailingList.create(domain=domain, local_part="tous", name="Tous", structure=root, created_at=clock.now())
    made = []
    param = database.obj.param
    sql = (f"INSERT INTO delivery (message_id, address, state, attempts, next_attempt_at, updated_at, last_reply, "
           f"member_ids, reason) VALUES ({', '.join([param] * 9)})")
    for n in range(messages):
        message = Message.create(mailing_list=ml, content=b"Subject: x\r\n\r\nx\r\n", size=10, state=MessageState.DONE,
                                 received_at=clock.now(), recipient_count=deliveries, subject=f"m{n}")
        stamp = sql_datetime(clock.now())
        rows = [(message.id, f"r{i}@example.org", "sent" if i % 50 else "failed", 1, stamp, stamp, "250 ok", "", "")
                for i in range(deliveries)]
        with database.atomic():
            database.obj.cursor().executemany(sql, rows)
        made.append(message)
    return ml, made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="palanquee-bench-"))
    url = args.database_url or f"sqlite:///{folder / 'stats.sqlite3'}"
    db = engine_db.bind(engine_db.make_database(url))
    db.connect()
    engine_db.upgrade(db)
    ml, messages = build(args.deliveries, args.messages)
    total = args.deliveries * args.messages
    baseline = best(lambda: queries.progress_of_many(messages), args.runs)
    live_list = best(lambda: stats.list_figures([ml.id]), args.runs)
    live_messages = best(lambda: stats.message_figures(messages), args.runs)
    started = time.perf_counter()
    stats.settle()
    settle_time = time.perf_counter() - started
    settled_list = best(lambda: stats.list_figures([ml.id]), args.runs)
    settled_messages = best(lambda: stats.message_figures(messages), args.runs)
    print(f"database: {url.split(':')[0]}; {args.messages} messages × {args.deliveries:,} deliveries = {total:,}")
    print(f"baseline, per-state counts of the page's messages (progress_of_many): {baseline * 1000:.1f} ms")
    print(f"list_figures, not settled: {live_list * 1000:.1f} ms ({live_list / baseline:.2f} × baseline); "
          f"settled: {settled_list * 1000:.2f} ms ({settled_list / baseline:.4f} × baseline)")
    print(f"message_figures, not settled: {live_messages * 1000:.1f} ms ({live_messages / baseline:.2f} × baseline); "
          f"settled: {settled_messages * 1000:.2f} ms ({settled_messages / baseline:.4f} × baseline)")
    print(f"settle() of the {args.messages} messages, once: {settle_time * 1000:.0f} ms")
    files = [path.read_bytes() for path in sorted(CORPUS.rglob("*.eml"))]
    parse = best(lambda: [email.message_from_bytes(data, policy=policy.compat32) for data in files], args.runs)
    judged = best(lambda: [classify(data) for data in files], args.runs)
    print(f"classify(), {len(files)} corpus files: {judged / len(files) * 1000:.2f} ms a message; parsing alone "
          f"{parse / len(files) * 1000:.2f} ms ({judged / parse:.1f} × parsing)")
    db.close()
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
