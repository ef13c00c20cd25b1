"""PostgreSQL reads a page's worth of rows for a page, at a size where its planner could choose otherwise.

Seen at 100,000 members (docs/benchmarks.md, "The portal on PostgreSQL"): the criteria preview's first 21
addresses took 215–430 ms because the planner, blind to ``COALESCE(kind, '')`` and to a generic plan's
parameters, took every club's members and sorted them; a regional staff member's journal took ~100 ms because
it hashed every member of the region's clubs, twice, before reading the first event. Both are about how
much the database reads, so the tests count it (``pg_stat_user_tables``, flushed at once) instead of
timing anything: a page must read rows in proportion to the page, not to the list or the region.
"""

from __future__ import annotations

from datetime import date, timedelta

import peewee as pw
import pytest

from engine import clock
from engine.audit import AuditEvent
from engine.db import database
from engine.directory import staff
from engine.directory.models import Member, StaffScope, Structure, StructureKind
from engine.lists import compiled, paging
from engine.lists.resolve import _literal, page_of
from tests import factories as f

pytestmark = pytest.mark.postgresql_only
CLUBS, PER_CLUB = 120, 50


def rows_read(table: str) -> int:
    database.execute_sql("SELECT pg_stat_force_next_flush()")
    (seq, idx), = database.execute_sql(
        "SELECT COALESCE(seq_tup_read, 0), COALESCE(idx_tup_fetch, 0) FROM pg_stat_user_tables WHERE relname = %s",
        (table,)).fetchall()
    return int(seq) + int(idx)


def reads_of(table: str, action) -> int:  # type: ignore[no-untyped-def]
    action()  # once to compile and plan, then counted (a session's own statistics)
    database.execute_sql("SELECT pg_stat_force_next_flush()")
    before = rows_read(table)
    action()
    return rows_read(table) - before


@pytest.fixture
def region(db):  # type: ignore[no-untyped-def]
    compiled._cache.clear()
    paging._kept.clear()
    national = Structure.create_node(code="FED", name="Fédération", kind=StructureKind.FEDERATION)
    region = Structure.create_node(code="CR13", name="Provence", kind=StructureKind.REGIONAL, parent=national)
    now = clock.now()
    for c in range(CLUBS):
        club = Structure.create_node(code=f"C{c:04d}", name=f"Club {c}", kind=StructureKind.CLUB, parent=region)
        Member.insert_many([{"licence_number": f"A-{c:04d}-{n:03d}", "first_name": "Camille",
                             "last_name": f"Martin{n}", "email": f"m{c}x{n}@example.net",
                             "email_key": f"m{c}x{n}@example.net", "club": club.id, "licence_season": 2026,
                             "licence_valid_until": date(2027, 9, 14), "created_at": now}
                            for n in range(PER_CLUB)]).execute()
    database.execute_sql("ANALYZE")
    return national, region


def test_a_preview_page_of_every_club_reads_about_a_page_of_members(region) -> None:  # type: ignore[no-untyped-def]
    national, _ = region
    dom = f.domain("listes.example.fr", national)
    ml = f.mailing_list("clubs", dom)
    f.criterion(ml, national, [], subtree=True, kind=StructureKind.CLUB)
    page: list[object] = []
    read = reads_of("member", lambda: page.__setitem__(slice(None), page_of(ml, size=20)[0]))
    assert len(page) == 20
    # The keys' walk reads the first addresses in order (a few dozen rows with the page's own statement);
    # taking each club's members and sorting them read all 6,000.
    assert read < CLUBS * PER_CLUB / 10, read


def test_a_regional_journal_page_reads_about_a_page_of_events(region) -> None:  # type: ignore[no-untyped-def]
    national, provence = region
    reader = f.member(email="staff@example.fr", club=Structure.get(Structure.code == "C0000"))
    StaffScope.create(member=reader, structure=provence, granted_at=clock.now())
    actors = [m for (m,) in Member.select(Member.id).limit(500).tuples()]
    start = clock.now() - timedelta(days=30)
    AuditEvent.insert_many([{"at": start + timedelta(minutes=i), "actor": actors[i % len(actors)],
                             "actor_label": "", "action": "list.left", "object_type": "member",
                             "object_id": actors[i % len(actors)], "structure_id": None, "detail": "{}"}
                            for i in range(3000)]).execute()
    database.execute_sql("ANALYZE")
    events: list[object] = []
    read = reads_of("member", lambda: events.__setitem__(slice(None), staff.audit_page(reader, size=50)[0]))
    assert len(events) == 50
    # A look-up of each event's actor (51 of them, and the page's own join); hashing every member of the
    # region's clubs before the first event read all 6,000, twice.
    assert read < CLUBS * PER_CLUB / 10, read


@pytest.mark.parametrize("hostile", ["club'; DROP TABLE member; --", "a b", "é", "", "0x'"])
def test_only_plain_words_are_written_into_a_statement(hostile: str) -> None:
    with pytest.raises(ValueError):
        _literal(hostile)
    assert isinstance(_literal("0000000100000002"), pw.SQL) and isinstance(_literal(12), pw.SQL)
