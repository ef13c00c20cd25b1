"""resolve()'s SQL compiled once per shape of a list (engine/lists/compiled.py): reused, never stale."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from engine import clock
from engine.bounces.models import Bounce
from engine.lists import compiled, paging
from engine.lists import preview as pv
from engine.lists.models import CriterionRole, ListCriterion
from engine.lists.preview import CriterionSpec
from engine.lists.resolve import page_of, resolve
from tests import factories as f

DAY = date(2026, 11, 24)


def addresses(ml, day=DAY):
    return [r.address for batch in resolve(ml, day=day) for r in batch]


@pytest.fixture
def fed(db):
    compiled._cache.clear()
    paging._kept.clear()
    return f.federation_tree()


def test_a_list_resolved_twice_compiles_once_and_disabled_addresses_follow_the_clock(fed, monkeypatch):
    ml = f.mailing_list("club-a", fed["dom"])
    f.criterion(ml, fed["club_a"], [])
    f.member(email="bouncy@x.fr", club=fed["club_a"])
    f.member(email="ok@x.fr", club=fed["club_a"])
    with clock.frozen(datetime(2026, 11, 24, 12)) as advance:
        Bounce.create(email_key="bouncy@x.fr", score=5, disabled_until=datetime(2026, 11, 30))
        assert addresses(ml) == ["ok@x.fr"]
        assert len(compiled._cache) == 1
        built = []
        original = compiled.rows_sql

        def counting(mailing_list, day, build):
            return original(mailing_list, day, lambda now, loaded: built.append(now) or build(now, loaded))

        monkeypatch.setattr(compiled, "rows_sql", counting)
        assert addresses(ml) == ["ok@x.fr"]
        advance(timedelta(days=7))  # the same statement, "now" filled in again: the address is back
        assert addresses(ml) == ["bouncy@x.fr", "ok@x.fr"]
        assert built == []  # never compiled again


def test_a_changed_criterion_role_structure_or_day_makes_another_statement(fed):
    ml = f.mailing_list("cd", fed["dom"])
    criterion = f.criterion(ml, fed["provence"], [fed["board"]])
    f.mandate(f.member(email="board@x.fr"), fed["board"], fed["provence"])
    f.mandate(f.member(email="pres@x.fr"), fed["president"], fed["provence"])
    f.mandate(f.member(email="lapsed@x.fr", valid_until=date(2026, 8, 31)), fed["president"], fed["club_a"])
    assert addresses(ml) == ["board@x.fr"]
    CriterionRole.create(criterion=criterion, role=fed["president"])
    assert addresses(ml) == ["board@x.fr", "pres@x.fr"]
    ListCriterion.update(include_subtree=True).where(ListCriterion.id == criterion.id).execute()
    assert addresses(ml) == ["board@x.fr", "pres@x.fr"]  # club A is below Provence, but the licence lapsed
    ListCriterion.update(require_valid_licence=False).where(ListCriterion.id == criterion.id).execute()
    assert addresses(ml) == ["board@x.fr", "lapsed@x.fr", "pres@x.fr"]
    ListCriterion.update(structure=fed["club_a"]).where(ListCriterion.id == criterion.id).execute()
    assert addresses(ml) == ["lapsed@x.fr"]
    assert addresses(ml, DAY + timedelta(days=1)) == ["lapsed@x.fr"]
    assert len(compiled._cache) == 6


def test_a_page_of_criteria_written_again_reuses_its_statements_with_the_new_ids(fed, monkeypatch):
    """The criteria's ids are slots of the page's statements (a preview writes its criteria in a savepoint:
    new ids each time on PostgreSQL): the same criteria written again find their statements compiled, and
    each row's reason names the criterion as it is now."""
    ml = f.mailing_list("cd-again", fed["dom"])
    f.mandate(f.member(email="board@x.fr", club=fed["club_a"]), fed["board"], fed["provence"])
    f.member(email="licensee@x.fr", club=fed["club_a"])
    first = [f.criterion(ml, fed["provence"], [fed["board"]]), f.criterion(ml, fed["club_a"], [])]
    page, _more = page_of(ml, day=DAY)
    assert [(r.address, r.reasons[0].criterion_id) for r in page] == [
        ("board@x.fr", first[0].id), ("licensee@x.fr", first[1].id)]
    compiled_again = []
    original = paging._statements
    monkeypatch.setattr(paging, "_statements", lambda *a: compiled_again.append(a) or original(*a))
    second = [f.criterion(ml, fed["provence"], [fed["board"]]), f.criterion(ml, fed["club_a"], [])]
    ListCriterion.delete().where(ListCriterion.id.in_([c.id for c in first])).execute()  # new ids, same criteria
    page, _more = page_of(ml, day=DAY)
    assert [(r.address, r.reasons[0].criterion_id) for r in page] == [
        ("board@x.fr", second[0].id), ("licensee@x.fr", second[1].id)]
    assert compiled_again == []


def test_a_preview_of_the_same_unsaved_criteria_compiles_its_page_once(fed, monkeypatch):
    ml = f.mailing_list("preview-again", fed["dom"], fed["provence"], kind="role")
    f.member(email="licensee@x.fr", club=fed["club_a"])
    specs = [CriterionSpec(fed["club_a"].id, (), include_subtree=False)]
    compiled_now = []
    original = paging._statements
    monkeypatch.setattr(paging, "_statements", lambda *a: compiled_now.append(a) or original(*a))
    for _ in range(3):
        shown = pv.preview(None, ml, specs, day=DAY, exact=False)
        assert [r.address for r in shown.sample] == ["licensee@x.fr"]
    assert len(compiled_now) == 1
    assert ListCriterion.select().where(ListCriterion.mailing_list == ml).count() == 0  # nothing saved
