"""resolve()'s SQL compiled once per shape of a list (engine/lists/compiled.py): reused, never stale."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from engine import clock
from engine.bounces.models import Bounce
from engine.lists import compiled
from engine.lists.models import CriterionRole, ListCriterion
from engine.lists.resolve import resolve
from tests import factories as f

DAY = date(2026, 11, 24)


def addresses(ml, day=DAY):
    return [r.address for batch in resolve(ml, day=day) for r in batch]


@pytest.fixture
def fed(db):
    compiled._cache.clear()
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
