"""The lists page reads stored counts (never one resolve per row), kept fresh by staff actions, opt-outs, the
engine's job and expansions; a list's recipients come a page at a time by address key, or as a streamed CSV."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest

from engine import clock
from engine.directory.models import StaffScope, StructureKind
from engine.lists import admin, counts, optouts, recipients
from engine.lists import resolve as resolve_module
from engine.lists.counts import ListCount
from engine.lists.models import Subscription
from engine.lists.resolve import count_recipients, page_of, resolve
from tests import factories as f

DAY = date(2026, 11, 24)


@pytest.fixture
def fed(db):
    root = f.structure("FFESSM", StructureKind.FEDERATION)
    provence = f.structure("Provence", StructureKind.REGIONAL, root)
    club_a = f.structure("Club A", StructureKind.CLUB, provence)
    club_b = f.structure("Club B", StructureKind.CLUB, provence)
    board = f.role("board_member", "Membre du comité directeur", name_en="Board member")
    dom = f.domain("listes.example.fr", root)
    people = [f.member(first_name=f"P{i:02d}" if i else "=1+2", last_name=f"Nom{i:02d}", email=f"p{i:02d}@example.org",
                       club=club_a if i % 2 else club_b) for i in range(25)]
    family = f.member(first_name="Léa", last_name="=Martin", email="P03@example.org", club=club_a)  # shares p03's
    for person in people[:5]:
        f.mandate(person, board, provence)
    admin_member = f.member(email="admin@example.org", club=club_a)
    StaffScope.create(member=admin_member, structure=root, granted_at=clock.now())
    return dict(root=root, provence=provence, club_a=club_a, club_b=club_b, board=board, dom=dom, people=people,
                family=family, admin=admin_member)


def licensees(fed, local_part: str = "licencies"):
    ml = f.mailing_list(local_part, fed["dom"], fed["provence"])
    f.criterion(ml, fed["provence"], [], subtree=True)
    f.criterion(ml, fed["provence"], [fed["board"]])
    Subscription.create(mailing_list=ml, email="guest@partner.fr", email_key="guest@partner.fr",
                        created_at=clock.now())
    return ml


def test_lists_page_reads_stored_counts_and_never_resolves_per_row(fed, monkeypatch):
    lists = [licensees(fed, f"liste{i:02d}") for i in range(12)]
    for ml in lists:
        counts.recount(ml)
    calls = []
    monkeypatch.setattr(resolve_module, "_rows_query", lambda *a, **k: calls.append(a) or pytest.fail("resolved"))
    rows, total = admin.lists_page(fed["admin"], per_page=50)
    assert total == 12 and calls == []
    assert {r.recipients for r in rows} == {27} and not any(r.stale for r in rows)  # 26 addresses + the guest


def test_a_new_list_is_counted_on_the_page_within_a_budget_then_stored(fed):
    ml = licensees(fed)
    assert ListCount.get_or_none(ListCount.mailing_list == ml.id) is None
    assert counts.counts_of([ml], budget=0)[ml.id].recipients is None  # no budget: "being counted"
    assert counts.counts_of([ml])[ml.id].recipients == 27 == count_recipients(ml)
    assert ListCount.get(ListCount.mailing_list == ml.id).recipients == 27


def test_an_opt_out_marks_the_count_changed_and_the_job_recounts_it_first(fed):
    changed, old, fresh = licensees(fed, "a"), licensees(fed, "b"), licensees(fed, "c")
    t0 = clock.now()
    with clock.frozen(t0):
        for ml in (changed, old, fresh):
            counts.recount(ml)
    with clock.frozen(t0 + timedelta(minutes=1)):
        optouts.leave(changed, member=fed["people"][10], source="espace")
        assert counts.counts_of([changed])[changed.id].stale
        assert counts.recount_due(budget=0) == 1  # at least one: the changed list
        assert counts.counts_of([changed])[changed.id] == counts.Count(26, clock.now(), False)
    with clock.frozen(t0 + counts.MAX_AGE + timedelta(seconds=30)):
        assert counts.counts_of([old])[old.id].stale  # too old: time changes lists by itself
        assert counts.recount_due(budget=60) == 2  # the two old ones; the recounted one is still fresh
        assert counts.recount_due(budget=60) == 0


def test_staff_edits_recount_at_once(settings, fed):
    created = admin.create_list(settings, None, admin.NewList(domain_id=fed["dom"].id, local_part="static",
                                                              name="Static", structure_id=fed["root"].id,
                                                              subscribers="a@x.org\nb@x.org"))
    ml = created.mailing_list
    assert ListCount.get(ListCount.mailing_list == ml.id).recipients == 2
    from engine.lists import subscribers

    subscribers.add_subscribers(None, ml, "c@x.org")
    assert ListCount.get(ListCount.mailing_list == ml.id).recipients == 3


def test_a_count_taken_earlier_never_replaces_a_later_one(fed):
    ml = licensees(fed)
    now = clock.now()
    counts.record(ml.id, 10, now)
    counts.record(ml.id, 99, now - timedelta(seconds=5))
    assert ListCount.get(ListCount.mailing_list == ml.id).recipients == 10


def test_keyset_pages_walk_the_whole_list_forwards_and_backwards(fed):
    ml = licensees(fed)
    everyone = [r for batch in resolve(ml, day=DAY) for r in batch]
    pages, after = [], None
    while True:
        rows, more = page_of(ml, after=after, size=4, day=DAY)
        pages.append(rows)
        if not more:
            break
        after = rows[-1].email_key
    assert [r for page in pages for r in page] == everyone and len(pages) == 7
    rows, more = page_of(ml, before=pages[3][0].email_key, size=4, day=DAY)
    assert rows == pages[2] and more
    rows, more = page_of(ml, before=pages[1][0].email_key, size=4, day=DAY)
    assert rows == pages[0] and not more
    family = next(r for r in everyone if r.email_key == "p03@example.org")
    assert len(family.member_ids) == 2 and len(family.reasons) == 2  # licensee + board, one copy for both


def test_recipients_page_links_and_total(fed):
    ml = licensees(fed)
    counts.recount(ml)
    first = recipients.recipients_page(fed["admin"], ml, per_page=10, day=DAY)
    assert first.total == 27 and first.previous is None and first.next == first.rows[-1].email_key
    second = recipients.recipients_page(fed["admin"], ml, after=first.next, per_page=10, day=DAY)
    assert second.previous == second.rows[0].email_key and second.next is not None
    back = recipients.recipients_page(fed["admin"], ml, before=second.previous, per_page=10, day=DAY)
    assert back.rows == first.rows and back.previous is None and back.next == first.next


def test_the_csv_export_has_every_recipient_with_members_and_reasons(fed):
    ml = licensees(fed)
    text = "".join(recipients.recipients_csv(fed["admin"], ml, day=DAY))
    lines = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert lines[0] == list(recipients.CSV_HEADER) and len(lines) == 28
    family = next(line for line in lines if line[0].lower() == "p03@example.org")
    assert family[1].count("A-13-") == 2 and family[2] == "P03 Nom03, Léa =Martin"  # both members of the address
    assert next(line for line in lines if line[0] == "p00@example.org")[2] == "'=1+2 Nom00"  # not a formula
    assert family[3] == "licencié(e) — Club A ; Membre du comité directeur — Provence"


def test_a_page_kept_compiled_reads_now_and_its_bound_anew(fed):
    """The page's statements are compiled once per shape: an address disabled by bounces until a moment is
    left out before it and back after it, with the same statements; another bound gives another page."""
    from engine.bounces.models import Bounce

    ml = licensees(fed)
    first, _ = page_of(ml, size=3, day=DAY)
    hidden = first[0].email_key
    start = clock.now()
    Bounce.create(email_key=hidden, disabled_until=start + timedelta(hours=1))
    with clock.frozen(start) as advance:
        rows, _ = page_of(ml, size=3, day=DAY)
        assert hidden not in [r.email_key for r in rows] and rows[:2] == first[1:]
        advance(timedelta(hours=2))
        assert page_of(ml, size=3, day=DAY)[0] == first
    later, _ = page_of(ml, after=first[-1].email_key, size=3, day=DAY)
    assert later and later[0].email_key > first[-1].email_key
