"""The directory: the structure tree's subtree query and how addresses are stored and found."""

from __future__ import annotations

import pytest

from engine.directory.models import Member, Structure, StructureKind
from tests import factories as f


@pytest.fixture
def tree(db):
    fed = f.structure("FFESSM", StructureKind.FEDERATION)
    provence = f.structure("CR Provence", StructureKind.REGIONAL, fed)
    bretagne = f.structure("CR Bretagne", StructureKind.REGIONAL, fed)
    cd13 = f.structure("CODEP 13", StructureKind.DEPARTMENTAL, provence)
    cd83 = f.structure("CODEP 83", StructureKind.DEPARTMENTAL, provence)
    clubs13 = [f.structure(f"Club 13-{i}", StructureKind.CLUB, cd13) for i in range(3)]
    club83 = f.structure("Club 83", StructureKind.CLUB, cd83)
    cd29 = f.structure("CODEP 29", StructureKind.DEPARTMENTAL, bretagne)
    club29 = f.structure("Club 29", StructureKind.CLUB, cd29)
    return dict(fed=fed, provence=provence, bretagne=bretagne, cd13=cd13, cd83=cd83, clubs13=clubs13,
                club83=club83, cd29=cd29, club29=club29)


def names(query) -> set[str]:
    return {s.name for s in query}


def test_subtree_returns_exactly_the_structures_below_a_node(tree):
    assert names(tree["provence"].subtree()) == {
        "CR Provence", "CODEP 13", "CODEP 83", "Club 13-0", "Club 13-1", "Club 13-2", "Club 83"}
    assert names(tree["cd13"].subtree()) == {"CODEP 13", "Club 13-0", "Club 13-1", "Club 13-2"}
    assert names(tree["club29"].subtree()) == {"Club 29"}
    assert len(names(tree["fed"].subtree())) == Structure.select().count()


def test_subtree_is_not_fooled_by_sibling_ids_that_share_a_prefix(db):
    # Ids 1..12 under one parent: "…00000001" must not match "…00000010"-style neighbours.
    root = f.structure("root", StructureKind.FEDERATION)
    children = [f.structure(f"child {i}", StructureKind.REGIONAL, root) for i in range(12)]
    grandchild = f.structure("grandchild", StructureKind.CLUB, children[0])
    assert names(children[0].subtree()) == {"child 0", "grandchild"}
    assert names(children[1].subtree()) == {"child 1"}
    assert grandchild.is_within(root) and not grandchild.is_within(children[1])


def test_subtree_query_uses_the_path_index(tree, backend, db):
    low, high = tree["cd13"].subtree_bounds()
    query = Structure.select().where((Structure.path >= low) & (Structure.path < high))
    sql, params = query.sql()
    if backend == "sqlite":
        plan = " ".join(str(row) for row in db.execute_sql("EXPLAIN QUERY PLAN " + sql, params))
        assert "structure_path" in plan, plan
    else:
        db.execute_sql("SET enable_seqscan = off")
        plan = " ".join(str(row) for row in db.execute_sql("EXPLAIN " + sql, params))
        assert "structure_path" in plan, plan


def test_ancestors_are_listed_root_first(tree):
    assert [s.name for s in tree["club83"].ancestors()] == ["FFESSM", "CR Provence", "CODEP 83", "Club 83"]


def test_address_is_kept_as_typed_and_found_case_insensitively(db):
    m = f.member(email="Jean.Dupont@Orange.FR")
    stored = Member.get_by_id(m.id)
    assert stored.email == "Jean.Dupont@Orange.FR"
    assert [x.id for x in Member.using_address("jean.dupont@orange.fr")] == [m.id]
    assert [x.id for x in Member.using_address("JEAN.DUPONT@ORANGE.FR ")] == [m.id]


def test_several_members_may_share_one_address(db):
    parent = f.member(first_name="Anne", email="famille.leroy@free.fr")
    child = f.member(first_name="Lucas", email="Famille.Leroy@free.fr")
    assert {x.id for x in Member.using_address("FAMILLE.LEROY@FREE.FR")} == {parent.id, child.id}


def test_member_without_address_is_allowed(db):
    m = f.member(email=None)
    assert Member.get_by_id(m.id).email is None
    assert Member.using_address("").count() == 0


def test_address_lookup_uses_an_index(db, backend):
    f.member(email="x@example.org")
    sql, params = Member.using_address("x@example.org").sql()
    if backend == "sqlite":
        plan = " ".join(str(row) for row in db.execute_sql("EXPLAIN QUERY PLAN " + sql, params))
    else:
        db.execute_sql("SET enable_seqscan = off")
        plan = " ".join(str(row) for row in db.execute_sql("EXPLAIN " + sql, params))
    assert "member_email_key" in plan, plan


def test_licence_number_is_unique(db):
    import peewee

    f.member(licence_number="A-12-345678")
    with pytest.raises(peewee.IntegrityError), db.atomic():
        f.member(licence_number="A-12-345678")
