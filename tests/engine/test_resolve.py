"""resolve(): criteria ∪ static − opt-outs − bounce-disabled, one recipient per address, in real time."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from engine import clock
from engine.bounces.models import Bounce
from engine.directory.models import StructureKind
from engine.lists import optouts
from engine.lists.models import Subscription
from engine.lists.resolve import count_recipients, reasons_for_member, resolve
from tests import factories as f

DAY = date(2026, 11, 24)


def everyone(ml, **kwargs):
    return [r for batch in resolve(ml, day=DAY, **kwargs) for r in batch]


@pytest.fixture
def fed(db):
    return f.federation_tree()


def test_presidents_of_all_clubs_of_a_department(fed):
    ml = f.mailing_list("presidents13", fed["dom"])
    f.criterion(ml, fed["cd13"], [fed["president"]], subtree=True, kind=StructureKind.CLUB)
    pa = f.member(first_name="Paul", email="paul@a.fr", club=fed["club_a"])
    pb = f.member(first_name="Pia", email="pia@b.fr", club=fed["club_b"])
    pc = f.member(first_name="Paco", email="paco@c.fr", club=fed["club_c"])
    codep_president = f.member(email="boss@cd13.fr")
    f.mandate(pa, fed["president"], fed["club_a"])
    f.mandate(pb, fed["president"], fed["club_b"])
    f.mandate(pc, fed["president"], fed["club_c"])  # other département
    f.mandate(codep_president, fed["president"], fed["cd13"])  # not a club
    recipients = everyone(ml)
    assert [r.address for r in recipients] == ["paul@a.fr", "pia@b.fr"]
    assert recipients[0].member_ids == (pa.id,)
    assert recipients[0].reasons[0].label_fr == "Président — Club A"
    assert count_recipients(ml, day=DAY) == 2


def test_mandate_dates_and_licence_validity_are_honoured(fed):
    ml = f.mailing_list("cd", fed["dom"])
    f.criterion(ml, fed["provence"], [fed["board"]])
    current = f.member(email="current@x.fr")
    ended = f.member(email="ended@x.fr")
    future = f.member(email="future@x.fr")
    lapsed = f.member(email="lapsed@x.fr", valid_until=date(2026, 8, 31))
    f.mandate(current, fed["board"], fed["provence"], starts_on=date(2024, 1, 1), ends_on=DAY)
    f.mandate(ended, fed["board"], fed["provence"], ends_on=DAY - timedelta(days=1))
    f.mandate(future, fed["board"], fed["provence"], starts_on=DAY + timedelta(days=1))
    f.mandate(lapsed, fed["board"], fed["provence"])
    assert [r.address for r in everyone(ml)] == ["current@x.fr"]


def test_licensees_criterion_and_static_subscribers_union_deduplicated(fed):
    ml = f.mailing_list("club-a", fed["dom"])
    f.criterion(ml, fed["club_a"], [])  # every licensee of club A
    m1 = f.member(email="Anne@Example.org", club=fed["club_a"])
    f.member(email="bob@example.org", club=fed["club_b"])
    Subscription.create(mailing_list=ml, email="ANNE@example.org", email_key="anne@example.org",
                        created_at=clock.now())
    Subscription.create(mailing_list=ml, email="guest@club.fr", email_key="guest@club.fr", created_at=clock.now())
    recipients = everyone(ml)
    assert [r.email_key for r in recipients] == ["anne@example.org", "guest@club.fr"]
    anne = recipients[0]
    assert anne.address in ("Anne@Example.org", "ANNE@example.org")
    assert anne.member_ids == (m1.id,)
    assert {r.kind for r in anne.reasons} == {"criterion", "static"}
    assert recipients[1].member_ids == () and recipients[1].reasons[0].kind == "static"


def test_a_family_address_gets_one_copy_naming_every_member(fed):
    ml = f.mailing_list("club-a", fed["dom"])
    f.criterion(ml, fed["club_a"], [])
    mum = f.member(email="famille@free.fr", club=fed["club_a"])
    son = f.member(email="Famille@Free.fr", club=fed["club_a"])
    f.member(email=None, club=fed["club_a"])  # no address: nothing to send to
    recipients = everyone(ml)
    assert len(recipients) == 1
    assert recipients[0].member_ids == tuple(sorted((mum.id, son.id)))
    assert count_recipients(ml, day=DAY) == 1


def test_opt_outs_win_over_criteria_and_subscriptions(fed):
    ml = f.mailing_list("club-a", fed["dom"])
    f.criterion(ml, fed["club_a"], [])
    leaver = f.member(email="leaver@x.fr", club=fed["club_a"])
    stayer = f.member(email="stayer@x.fr", club=fed["club_a"])
    Subscription.create(mailing_list=ml, email="leaver@x.fr", email_key="leaver@x.fr", member=leaver,
                        created_at=clock.now())
    Subscription.create(mailing_list=ml, email="ext@y.fr", email_key="ext@y.fr", created_at=clock.now())
    optouts.leave(ml, member=leaver, source="footer")
    optouts.leave(ml, email_key="EXT@y.fr", source="one-click")
    assert [r.address for r in everyone(ml)] == ["stayer@x.fr"]
    # the leaver is still a member by criterion, which Mes listes shows with a rejoin button
    assert reasons_for_member(ml, leaver, day=DAY)
    assert optouts.rejoin(ml, member=leaver) is True
    assert optouts.rejoin(ml, member=leaver) is False
    assert [r.address for r in everyone(ml)] == ["leaver@x.fr", "stayer@x.fr"]
    assert stayer.id in everyone(ml)[1].member_ids


def test_one_member_of_a_family_leaving_keeps_the_copy_for_the_others(fed):
    ml = f.mailing_list("club-a", fed["dom"])
    f.criterion(ml, fed["club_a"], [])
    mum = f.member(email="famille@free.fr", club=fed["club_a"])
    son = f.member(email="famille@free.fr", club=fed["club_a"])
    optouts.leave(ml, member=son, source="espace")
    assert [r.member_ids for r in everyone(ml)] == [(mum.id,)]


def test_addresses_disabled_by_bounces_are_skipped_until_reenabled(fed):
    ml = f.mailing_list("club-a", fed["dom"])
    f.criterion(ml, fed["club_a"], [])
    f.member(email="Bouncy@x.fr", club=fed["club_a"])
    f.member(email="ok@x.fr", club=fed["club_a"])
    with clock.frozen(datetime(2026, 11, 24, 12)) as advance:
        Bounce.create(email_key="bouncy@x.fr", score=5, disabled_until=datetime(2026, 11, 30))
        assert [r.address for r in everyone(ml)] == ["ok@x.fr"]
        advance(timedelta(days=7))
        assert [r.address for r in everyone(ml)] == ["Bouncy@x.fr", "ok@x.fr"]


def test_a_role_change_is_seen_at_once(fed):
    ml = f.mailing_list("presidents", fed["dom"])
    f.criterion(ml, fed["root"], [fed["president"]], subtree=True)
    assert everyone(ml) == []
    newcomer = f.member(email="new@x.fr")
    f.mandate(newcomer, fed["president"], fed["club_c"])
    assert [r.address for r in everyone(ml)] == ["new@x.fr"]


def test_batches_are_bounded_and_ordered(fed):
    ml = f.mailing_list("club-b", fed["dom"])
    f.criterion(ml, fed["club_b"], [])
    for i in range(25):
        f.member(email=f"m{i:02d}@x.fr", club=fed["club_b"])
    batches = list(resolve(ml, day=DAY, batch_size=10, with_reasons=False))
    assert [len(b) for b in batches] == [10, 10, 5]
    keys = [r.email_key for b in batches for r in b]
    assert keys == sorted(keys) and len(set(keys)) == 25
    assert all(r.reasons == () for b in batches for r in b)
