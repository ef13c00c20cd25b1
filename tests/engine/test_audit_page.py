"""The audit journal a page at a time by (at, id): every event once, newest first, ties included, scoped."""

from __future__ import annotations

from datetime import datetime, timedelta

from engine import clock
from engine.audit import AuditEvent
from engine.directory import staff
from engine.directory.models import StaffScope, StructureKind
from tests import factories as f


def test_pages_walk_the_whole_journal_once_newest_first_with_ties(db):
    root = f.structure("FFESSM", StructureKind.FEDERATION)
    region = f.structure("Provence", StructureKind.REGIONAL, root)
    other = f.structure("Bretagne", StructureKind.REGIONAL, root)
    admin, regional = f.member(club=None), f.member(club=None)
    StaffScope.create(member=admin, structure=root, granted_at=clock.now())
    StaffScope.create(member=regional, structure=region, granted_at=clock.now())
    start = datetime(2026, 1, 1)
    for i in range(130):  # three events per second: ties on ``at`` across page boundaries
        AuditEvent.create(at=start + timedelta(seconds=i // 3), action="list.left", object_type="mailing_list",
                          object_id=i, structure_id=(region if i % 2 else other).id)
    seen, before, pages = [], None, 0
    while True:
        events, before = staff.audit_page(admin, before=before, size=50)
        seen += [e.object_id for e in events]
        pages += 1
        if before is None:
            break
    assert pages == 3 and seen == list(range(129, -1, -1))
    mine, _ = staff.audit_page(regional, size=100)
    assert [e.object_id for e in mine] == [i for i in range(129, -1, -1) if i % 2][:100]
    filtered, after = staff.audit_page(admin, staff.AuditFilter(object_id=7))
    assert [e.object_id for e in filtered] == [7] and after is None
