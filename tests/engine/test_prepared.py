"""engine/prepared.py: a statement compiled once and how peewee reads its rows worked out once give, run after run,
the rows peewee itself gives (models with converted dates, joined models, tuples), even when the first run found
no row."""

from __future__ import annotations

from datetime import date

from engine.directory.models import Mandate, Member, Role, Structure
from engine.prepared import Prepared, slot
from tests import factories as f

BY_LICENCE: Prepared[Member] = Prepared(lambda: Member.select().where(Member.licence_number == slot("n")))
MANDATES: Prepared[Mandate] = Prepared(lambda: (
    Mandate.select(Mandate, Role, Structure).join(Role).switch(Mandate).join(Structure)
    .where(Mandate.member == slot("member")).order_by(Mandate.starts_on)))


def test_rows_read_again_are_the_rows_peewee_gives(db):
    assert BY_LICENCE.first(n="nobody") is None  # the first run finds nothing: read its columns all the same
    club = f.structure("Club des Calanques")
    first = f.member(first_name="Élodie", licence_number="A-1", club=club, valid_until=date(2027, 9, 14))
    second = f.member(first_name="Bruno", licence_number="B-2", club=club, valid_until=None)
    for member in (first, second, first):
        found = BY_LICENCE.first(n=member.licence_number)
        expected = Member.get_by_id(member.id)
        assert found is not None and found.__data__ == expected.__data__
        assert found.licence_valid_until == expected.licence_valid_until and not found._dirty
    assert isinstance(BY_LICENCE.first(n="A-1").licence_valid_until, date)


def test_joined_models_read_again(db):
    club = f.structure("Club des Calanques")
    member = f.member(club=club)
    f.mandate(member, f.role("president", "Président"), club, starts_on=date(2025, 3, 1))
    f.mandate(member, f.role("secretary", "Secrétaire"), club, starts_on=date(2026, 1, 1))
    for _ in range(2):
        mandates = MANDATES.all(member=member.id)
        assert [(m.role.name_fr, m.structure.name, m.starts_on) for m in mandates] == [
            ("Président", "Club des Calanques", date(2025, 3, 1)), ("Secrétaire", "Club des Calanques", date(2026, 1, 1))]
    assert MANDATES.all(member=-1) == []
