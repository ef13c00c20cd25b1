"""Data for bench/portal.py beyond the demo federation: logins, 200 lists of 100,000 members, messages of
100,000 deliveries and an audit journal of 1,000,000 events, written with plain ``executemany`` batches.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta

from engine import clock, demo
from engine.db import batched, database, sql_datetime
from engine.directory.models import Mandate, Member, Structure
from engine.directory.passwords import hash_password
from engine.lists import counts
from engine.lists.models import Domain, ListCriterion, MailingList
from engine.outbound.models import DeliveryState
from engine.posting.models import Message, MessageState


def give_passwords(how_many: int) -> list[str]:
    """The demo member and ``how_many - 1`` others (holders of mandates first) get the demo password; returns
    their licence numbers. One argon2 hash with the product's parameters, shared: each login still verifies it."""
    with_mandates = [m for (m,) in Mandate.select(Mandate.member).distinct().order_by(Mandate.member)
                     .limit(how_many).tuples().iterator()]
    ids = [m.id for m in Member.select(Member.id).where(Member.licence_number == demo.MEMBER_LICENCE)]
    ids += [i for i in with_mandates if i not in ids][:how_many - 1]
    Member.update(password_hash=hash_password(demo.DEMO_PASSWORD)).where(Member.id.in_(ids)).execute()
    return [n for (n,) in Member.select(Member.licence_number).where(Member.id.in_(ids)).tuples().iterator()]


# Four shapes of "every licensee" list (each reaches about 100,000 addresses); 50 lists of each.
SHAPES = ((True, None), (False, None), (True, "club"), (False, "club"))


def big_lists(count: int) -> list[MailingList]:
    """``count`` lists each reaching the whole federation; their counts stored as the engine's job would."""
    root = Structure.get(Structure.parent.is_null())
    domain = Domain.get(Domain.name == demo.LIST_DOMAIN)
    now = clock.now()
    made: list[MailingList] = []
    with database.atomic():
        for i in range(count):
            ml = MailingList.create(domain=domain, local_part=f"bench.tous.{i:03d}", name=f"Bench {i:03d}",
                                    structure=root, kind="role", created_at=now)
            valid, kind = SHAPES[i % len(SHAPES)]
            ListCriterion.create(mailing_list=ml, structure=root, include_subtree=True, structure_kind=kind,
                                 require_valid_licence=valid)
            made.append(ml)
    by_shape: dict[int, int] = {}
    for i, ml in enumerate(made):  # identical lists have identical counts: counted once per shape
        if i % len(SHAPES) not in by_shape:
            by_shape[i % len(SHAPES)] = counts.recount(ml)
        else:
            counts.record(ml.id, by_shape[i % len(SHAPES)], now)
    return made


def messages(lists: list[MailingList], big: int, small: int, recipients: int) -> list[int]:
    """``big`` messages of ``recipients`` deliveries (mostly sent, some deferred and failed) and ``small`` of 20."""
    now = clock.now()
    ids = []
    for n in range(big + small):
        message = Message.create(mailing_list=lists[n % len(lists)], content=b"Subject: bench\r\n\r\nbench\r\n",
                                 size=24, subject=f"Bench {n}", author="bench@example.org",
                                 state=MessageState.SENDING if n == 0 else MessageState.DONE,
                                 received_at=now - timedelta(minutes=big + small - n),
                                 recipient_count=recipients if n < big else 20)
        ids.append(message.id)
        _deliveries(message.id, recipients if n < big else 20, now)
        Message.update(sent_count=_count(message.id, DeliveryState.SENT),
                       failed_count=_count(message.id, DeliveryState.FAILED)).where(Message.id == message.id).execute()
    return ids


def _count(message_id: int, state: str) -> int:
    return int(database.obj.execute_sql(_params("SELECT COUNT(*) FROM delivery WHERE message_id = ? AND state = ?"),
                                        (message_id, state)).fetchone()[0])


def _params(sql: str) -> str:
    """``sql`` with the driver's placeholder (``?`` for SQLite, ``%s`` for psycopg)."""
    return sql.replace("?", database.obj.param)


def _deliveries(message_id: int, how_many: int, now: object) -> None:
    rng = random.Random(message_id)
    stamp = sql_datetime(now)  # type: ignore[arg-type]
    sql = ("INSERT INTO delivery (message_id, address, member_ids, reason, state, attempts, next_attempt_at, "
           "updated_at, last_reply) VALUES (?, ?, '', '', ?, 1, ?, ?, ?)")
    states = [DeliveryState.SENT] * 90 + [DeliveryState.QUEUED] * 6 + [DeliveryState.DEFERRED] * 3 + [
        DeliveryState.FAILED]
    with database.atomic():
        cursor = database.obj.cursor()
        for chunk in batched(range(how_many), 5000):
            cursor.executemany(_params(sql), [(message_id, f"r{i}@example.net", rng.choice(states), stamp, stamp, "250 ok")
                                     for i in chunk])


ACTIONS = ("list.left", "list.rejoined", "email_change.requested", "email_change.applied", "list.settings_changed",
           "members.imported", "list.criteria_changed", "login.failed")


def audit_events(how_many: int) -> None:
    """``how_many`` audit events over a year, spread over every structure (and member-side ones without)."""
    rng = random.Random(14)
    structures = [s for (s,) in Structure.select(Structure.id).tuples().iterator()]
    members = [m for (m,) in Member.select(Member.id).limit(5000).tuples().iterator()]
    start = clock.now() - timedelta(days=365)
    step = timedelta(days=365) / how_many
    sql = ("INSERT INTO audit_event (at, actor_id, actor_label, action, object_type, object_id, structure_id, "
           "detail, ip) VALUES (?, ?, '', ?, ?, ?, ?, ?, NULL)")
    detail = json.dumps({"bench": True})
    with database.atomic():
        cursor = database.obj.cursor()
        for chunk in batched(range(how_many), 10_000):
            rows = []
            for i in chunk:
                member_side = i % 4 == 0
                rows.append((sql_datetime(start + step * i), rng.choice(members), rng.choice(ACTIONS),
                             "member" if member_side else "mailing_list", rng.choice(members),
                             None if member_side else rng.choice(structures), detail))
            cursor.executemany(_params(sql), rows)
