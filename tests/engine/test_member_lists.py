"""Mes listes from the member's side: one statement for all lists gives what the old per-list code gave.

The old code (one ``reasons_for_member`` and one opt-out look-up per live list) is kept here as the oracle
and compared with ``lists_of_member`` for every member of a random federation with many lists: criteria
of every shape, ended mandates, lapsed licences, members without address or club, family addresses,
static subscriptions by member and by bare address, opt-outs by member and by address, deleted lists.
"""

from __future__ import annotations

import random
from datetime import date

from engine import clock
from engine.directory.models import Member, StructureKind
from engine.lists import optouts
from engine.lists.member_lists import lists_of_member
from engine.lists.models import Domain, MailingList, OptOut, Subscription
from engine.lists.resolve import reasons_for_member
from tests import factories as f

DAY = date(2026, 11, 24)


def oracle(member: Member, day: date) -> dict[int, tuple[set, set[int]]]:
    """The per-list code this replaced: {list id: (reasons, ids of the opt-outs it could have shown)}."""
    result = {}
    lists = (MailingList.select(MailingList, Domain).join(Domain)
             .where(MailingList.deleted_at.is_null()).order_by(MailingList.local_part))
    for ml in lists:
        candidates = {o.id for o in OptOut.select().where((OptOut.mailing_list == ml) & (
            (OptOut.member == member.id) | (OptOut.email_key == (member.email_key or ""))))}
        reasons = reasons_for_member(ml, member, day)
        if reasons or candidates:
            assert len(set(reasons)) == len(reasons)
            result[ml.id] = (set(reasons), candidates)
    return result


def build_federation(rng: random.Random, n_lists: int = 30, n_members: int = 50) -> None:
    root = f.structure("Fédération", StructureKind.FEDERATION)
    regions = [f.structure(f"Région {i}", StructureKind.REGIONAL, root) for i in range(3)]
    codeps = [f.structure(f"CODEP {i}", StructureKind.DEPARTMENTAL, rng.choice(regions)) for i in range(5)]
    clubs = [f.structure(f"Club {i}", StructureKind.CLUB, rng.choice(codeps)) for i in range(10)]
    structures = [root, *regions, *codeps, *clubs]
    roles = [f.role(f"role{i}", f"Rôle {i}", name_en=f"Role {i}") for i in range(5)]
    families = [f"famille{i}@example.fr" for i in range(8)]
    members = []
    for i in range(n_members):
        email = rng.choice([None, rng.choice(families), rng.choice(families).upper(), f"m{i}@example.fr"])
        valid = rng.choice([date(2027, 9, 14), date(2025, 9, 14), None])
        members.append(f.member(email=email, club=rng.choice([None, *clubs, *clubs]), valid_until=valid))
    for person in members:
        held = {(rng.choice(roles), rng.choice(structures), rng.choice([date(2020, 1, 1), date(2027, 1, 1)]))
                for _ in range(rng.randrange(4))}
        for role, structure, starts in held:
            ends = rng.choice([None, None, date(2025, 1, 1), date(2030, 1, 1)])
            f.mandate(person, role, structure, starts_on=starts, ends_on=ends)
    domain = f.domain("listes.example.fr", root)
    for i in range(n_lists):
        ml = f.mailing_list(f"liste{i:02d}", domain, rng.choice(structures))
        for _ in range(rng.randrange(3)):
            f.criterion(ml, rng.choice(structures), rng.sample(roles, rng.randrange(3)), subtree=rng.random() < .5,
                        kind=rng.choice([None, None, StructureKind.CLUB, StructureKind.REGIONAL]),
                        valid_licence=rng.random() < .7)
        for person in rng.sample(members, rng.randrange(4)):
            if person.email_key and not Subscription.get_or_none(mailing_list=ml, email_key=person.email_key):
                Subscription.create(mailing_list=ml, email=person.email, email_key=person.email_key,
                                    member=rng.choice([person, None]), created_at=clock.now())
        for person in rng.sample(members, rng.randrange(4)):
            if rng.random() < .5 or not person.email_key:
                optouts.leave(ml, member=person, source="espace")
            else:
                optouts.leave(ml, email_key=person.email_key, source="footer")
        if rng.random() < .1:
            ml.deleted_at = clock.now()
            ml.save()


def test_one_statement_gives_what_the_per_list_code_gave_for_every_member(db):
    build_federation(random.Random(2))
    compared = on_some_list = 0
    for member in Member.select():
        expected = oracle(member, DAY)
        got = {entry.mailing_list.id: entry for entry in lists_of_member(member, DAY)}
        assert set(got) == set(expected), member.id
        for list_id, (reasons, candidates) in expected.items():
            entry = got[list_id]
            assert set(entry.reasons) == reasons and len(entry.reasons) == len(reasons), (member.id, list_id)
            if candidates:
                assert entry.opt_out is not None and entry.opt_out.id in candidates
                own = {o.id for o in OptOut.select().where(OptOut.id.in_(list(candidates))
                                                           & (OptOut.member == member.id))}
                assert not own or entry.opt_out.id in own  # the member's own opt-out is the one shown
            else:
                assert entry.opt_out is None
        on_some_list += bool(expected)
        compared += 1
    assert compared == 50 and on_some_list > 25  # the random federation exercises the comparison


def test_lists_come_by_address_with_criteria_reasons_before_static(db):
    root = f.structure("FFESSM", StructureKind.FEDERATION)
    club = f.structure("Club A", StructureKind.CLUB, root)
    board = f.role("board_member", "Membre du comité directeur", name_en="Board member")
    dom = f.domain("listes.example.fr", root)
    m = f.member(email="M@x.fr", club=club)
    f.mandate(m, board, club)
    zeta, alpha = f.mailing_list("zeta", dom), f.mailing_list("alpha", dom)
    f.criterion(zeta, club, [board])
    f.criterion(zeta, root, [], subtree=True)
    Subscription.create(mailing_list=zeta, email="m@x.fr", email_key="m@x.fr", created_at=clock.now())
    Subscription.create(mailing_list=alpha, email="m@x.fr", email_key="m@x.fr", member=m, created_at=clock.now())
    result = lists_of_member(m, DAY)
    assert [e.mailing_list.local_part for e in result] == ["alpha", "zeta"]
    assert [r.label_en for r in result[1].reasons] == [
        "Board member — Club A", "licensee — Club A", "subscribed by the administrator"]


def test_lists_of_member_shows_lists_left_and_why(db):
    root = f.structure("FFESSM", StructureKind.FEDERATION)
    club_a, club_b = f.structure("Club A", StructureKind.CLUB, root), f.structure("Club B", StructureKind.CLUB, root)
    dom = f.domain("listes.example.fr", root)
    on, left, other = f.mailing_list("on", dom), f.mailing_list("left", dom), f.mailing_list("other", dom)
    m = f.member(email="m@x.fr", club=club_a)
    f.criterion(on, club_a, [])
    f.criterion(left, club_a, [])
    f.criterion(other, club_b, [])
    optouts.leave(left, email_key="m@x.fr", source="footer")  # the address left first, then the member
    optouts.leave(left, member=m, source="espace")
    result = {ml.local_part: (reasons, opt) for ml, reasons, opt in lists_of_member(m, day=DAY)}
    assert set(result) == {"on", "left"}
    assert result["on"][1] is None and result["left"][1].source == "espace"
    assert result["on"][0][0].label_fr == "licencié(e) — Club A"
    assert lists_of_member(m, DAY, list_id=other.id) == []
    assert [e.mailing_list.local_part for e in lists_of_member(m, DAY, list_id=left.id)] == ["left"]
