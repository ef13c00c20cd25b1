"""Criteria editing and the live preview: counts from resolve(), reasons, and the difference since the last message."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from engine import clock
from engine.audit import AuditEvent
from engine.directory import staff
from engine.directory.models import StaffScope, StructureKind
from engine.lists import preview as pv
from engine.lists.models import ListCriterion, Subscription
from engine.lists.preview import CriterionSpec
from engine.lists.resolve import count_recipients, resolve
from engine.outbound.models import Delivery
from engine.posting.models import Message
from tests import factories as f

DAY = date(2026, 11, 24)


@pytest.fixture
def fed(db):
    tree = f.federation_tree()
    ml = f.mailing_list("presidents", tree["dom"], tree["provence"], kind="role")
    people = {}
    for name, club, role in (("pa", "club_a", "president"), ("pb", "club_b", "president"),
                             ("sa", "club_a", "secretary")):
        people[name] = f.member(email=f"{name}@example.org", club=tree[club])
        f.mandate(people[name], tree[role], tree[club])
    regional = f.member(email="staff@example.org", club=tree["club_a"])
    StaffScope.create(member=regional, structure=tree["provence"], granted_at=clock.now())
    return dict(tree, ml=ml, regional=regional, **people)


def everyone(ml):
    return [r.address for batch in resolve(ml, day=DAY) for r in batch]


def test_preview_of_unsaved_criteria_matches_resolve_and_saves_nothing(fed):
    ml = fed["ml"]
    specs = [CriterionSpec(fed["cd13"].id, (fed["president"].id,), include_subtree=True,
                           structure_kind=StructureKind.CLUB)]
    shown = pv.preview(fed["regional"], ml, specs, day=DAY)
    assert shown.count == 2 and [r.address for r in shown.sample] == ["pa@example.org", "pb@example.org"]
    assert shown.sample[0].reasons[0].label_fr == "Président — Club A"
    assert shown.names[fed["pa"].id] == fed["pa"].full_name
    assert ListCriterion.select().count() == 0 and count_recipients(ml, day=DAY) == 0  # nothing saved
    assert pv.replace_criteria(fed["regional"], ml, specs) is True
    assert everyone(ml) == ["pa@example.org", "pb@example.org"]
    assert pv.preview(fed["regional"], ml, day=DAY).count == count_recipients(ml, day=DAY) == 2
    assert pv.replace_criteria(fed["regional"], ml, specs) is False  # same criteria: no change, no audit
    assert AuditEvent.select().where(AuditEvent.action == "list.criteria_changed").count() == 1


def test_static_subscribers_are_previewed_with_their_reason(fed):
    ml = fed["ml"]
    Subscription.create(mailing_list=ml, email="guest@example.org", email_key="guest@example.org",
                        created_at=clock.now())
    shown = pv.preview(None, ml, [CriterionSpec(fed["club_a"].id, (fed["secretary"].id,))], day=DAY)
    assert [(r.address, r.reasons[0].kind) for r in shown.sample] == [("guest@example.org", "static"),
                                                                       ("sa@example.org", "criterion")]


def test_criteria_outside_scope_are_refused(fed):
    with pytest.raises(staff.NotAllowed):
        pv.preview(fed["regional"], fed["ml"], [CriterionSpec(fed["bretagne"].id, ())])
    with pytest.raises(staff.NotAllowed):
        pv.replace_criteria(fed["regional"], fed["ml"], [CriterionSpec(fed["root"].id, (), True)])
    assert ListCriterion.select().count() == 0


def test_difference_since_the_last_message(fed):
    ml = fed["ml"]
    pv.replace_criteria(None, ml, [CriterionSpec(fed["cd13"].id, (fed["president"].id,), True)])
    assert pv.preview(None, ml, day=DAY).diff is None  # no message yet
    sent = datetime(2026, 11, 12, 9)
    message = Message.create(mailing_list=ml, content=b"x", size=1, received_at=sent, state="done")
    for address in ("PA@example.org", "gone@example.org"):
        Delivery.create(message=message, address=address, next_attempt_at=sent, updated_at=sent)
    Message.create(mailing_list=ml, content=b"y", size=1, received_at=datetime(2026, 11, 20), state="held")
    diff = pv.preview(None, ml, day=DAY).diff
    assert diff is not None and diff.since == sent
    assert (diff.added, diff.removed) == (1, 1)
    assert diff.added_sample == ["pb@example.org"] and diff.removed_sample == ["gone@example.org"]


def test_difference_counted_by_the_database_matches_the_keys_compared_here(fed):
    """More than a sample's worth in and out, repeated and differently cased delivery addresses: the one
    statement's figures equal the sets compared in Python."""
    ml = fed["ml"]
    for n in range(12):
        f.mandate(f.member(email=f"New{n:02d}@Example.org", club=fed["club_b"]), fed["president"], fed["club_b"])
    pv.replace_criteria(None, ml, [CriterionSpec(fed["cd13"].id, (fed["president"].id,), True)])
    sent = datetime(2026, 11, 12, 9)
    message = Message.create(mailing_list=ml, content=b"x", size=1, received_at=sent, state="done")
    before = ["PA@example.org", "pa@example.org ", *(f"old{n:02d}@example.org" for n in range(13))]
    for address in before:
        Delivery.create(message=message, address=address, next_attempt_at=sent, updated_at=sent)
    now = {r.address.strip().lower() for batch in resolve(ml, day=DAY) for r in batch}
    then = {a.strip().lower() for a in before}
    shown = pv.preview(None, ml, day=DAY)
    assert shown.exact and shown.count == len(now) == 14
    assert shown.diff is not None and (shown.diff.added, shown.diff.removed) == (len(now - then), len(then - now))
    assert shown.diff.added_sample == sorted(now - then)[:10]
    assert shown.diff.removed_sample == sorted(then - now)[:10]


def test_exact_figures_of_one_list_leave_nothing_to_the_next(fed):
    """SQLite counts through temporary tables of the connection: emptied after each count, so the next list's
    figures (on the same connection) are its own, whichever order they come in."""
    ml, other = fed["ml"], f.mailing_list("secretaries", fed["dom"], fed["provence"], kind="role")
    pv.replace_criteria(None, ml, [CriterionSpec(fed["cd13"].id, (fed["president"].id,), True)])
    pv.replace_criteria(None, other, [CriterionSpec(fed["cd13"].id, (fed["secretary"].id,), True)])
    sent = datetime(2026, 11, 12, 9)
    for mailing_list, address in ((ml, "gone@example.org"), (other, "left@example.org")):
        message = Message.create(mailing_list=mailing_list, content=b"x", size=1, received_at=sent, state="done")
        Delivery.create(message=message, address=address, next_attempt_at=sent, updated_at=sent)
    for _ in range(2):
        first, second = pv.preview(None, ml, day=DAY), pv.preview(None, other, day=DAY)
        assert (first.count, first.diff.added, first.diff.removed) == (2, 2, 1)
        assert first.diff.removed_sample == ["gone@example.org"]
        assert (second.count, second.diff.added, second.diff.removed) == (1, 1, 1)
        assert second.diff.added_sample == ["sa@example.org"] and second.diff.removed_sample == ["left@example.org"]


def test_the_cheap_preview_estimates_only_from_what_was_counted(fed):
    """Without ``exact``: the saved criteria's stored count (no difference yet), criteria never counted
    unknown, criteria counted before remembered with their difference; never labelled exact."""
    ml = fed["ml"]
    pv.replace_criteria(None, ml, [CriterionSpec(fed["cd13"].id, (fed["president"].id,), True)])
    saved = pv.preview(None, ml, day=DAY, exact=False)
    assert (saved.count, saved.exact, saved.diff_known) == (2, False, False)
    other = [CriterionSpec(fed["club_a"].id, ())]
    unknown = pv.preview(None, ml, other, day=DAY, exact=False)
    assert unknown.count is None and not unknown.exact and [r.address for r in unknown.sample] == [
        "pa@example.org", "sa@example.org", "staff@example.org"]
    counted = pv.preview(None, ml, other, day=DAY)
    assert counted.exact and counted.count == 3
    again = pv.preview(None, ml, other, day=DAY, exact=False)
    assert (again.count, again.exact, again.counted_at) == (3, False, counted.counted_at)
    assert ListCriterion.select().count() == 1  # nothing saved by any preview
