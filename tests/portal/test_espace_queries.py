"""Mon espace's cost does not grow with the number of lists, and the names of roles and structures are cached.

Statements are counted through peewee's query log, which every statement of the portal goes through
(model queries and ``execute_sql`` alike). The label cache is checked from another connection, as another
process (a portal worker, an engine, a psql session) would rename a structure or a role.
"""

from __future__ import annotations

import logging
import re
from datetime import date

import pytest

from engine import clock
from engine import db as engine_db
from engine.directory import labels
from engine.directory.models import StructureKind
from engine.lists import optouts
from engine.lists.models import Subscription
from portal import create_app
from tests import factories as f

PASSWORD = "bonne-plongee-2026"


@pytest.fixture(autouse=True)
def _fresh_labels() -> None:
    labels.forget()


class Statements(logging.Handler):
    """Every SQL statement peewee runs while installed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.sql: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, tuple):
            self.sql.append(record.msg[0])


@pytest.fixture
def statements():
    handler, logger = Statements(), logging.getLogger("peewee")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def member_space(settings, db):
    """A member on a role-based list, and a logged-in client."""
    fed = f.structure("Fédération", StructureKind.FEDERATION)
    region = f.structure("Comité régional Provence", StructureKind.REGIONAL, fed)
    club = f.structure("Club des Calanques", StructureKind.CLUB, region)
    member = f.member_with_password(PASSWORD, first_name="Élodie", email="elodie@example.org", club=club,
                                    valid_until=date(2027, 9, 14))
    board = f.role("board_member", "Membre du comité directeur", name_en="Board member")
    f.mandate(member, board, region)
    dom = f.domain(structure=fed)
    ml = f.mailing_list("comite.provence", dom, region, name="Comité directeur — Provence")
    f.criterion(ml, region, [board])
    client = create_app(settings, config={"TESTING": True}).test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"identifier": member.licence_number, "password": PASSWORD,
                                           "csrf_token": token})
    assert response.status_code == 302
    return dict(client=client, member=member, fed=fed, region=region, club=club, board=board, dom=dom)


def statements_of_one_visit(client, statements: Statements) -> list[str]:
    statements.sql.clear()
    response = client.get("/espace/")
    assert response.status_code == 200
    return list(statements.sql)


def add_lists(space: dict, count: int) -> None:
    """``count`` more lists the member is on, every way there is: role, licensee, static, left."""
    member = space["member"]
    for i in range(count):
        ml = f.mailing_list(f"liste{i:03d}", space["dom"], space["region"])
        way = i % 4
        if way == 0:
            f.criterion(ml, space["fed"], [space["board"]], subtree=True)
        elif way == 1:
            f.criterion(ml, space["region"], [], subtree=True)
        elif way == 2:
            Subscription.create(mailing_list=ml, email=member.email, email_key=member.email_key, member=member,
                                created_at=clock.now())
        else:
            f.criterion(ml, space["club"], [])
            optouts.leave(ml, member=member, source="espace")


def test_mon_espace_runs_as_many_statements_with_40_lists_as_with_one(member_space, statements):
    client = member_space["client"]
    statements_of_one_visit(client, statements)  # warm: the label cache is filled once per process
    with_one = statements_of_one_visit(client, statements)
    add_lists(member_space, 40)
    statements_of_one_visit(client, statements)  # the new lists' structures... none: same names cached
    page = client.get("/espace/").get_data(as_text=True)
    assert page.count('class="list-row') == 41 and page.count("list-left") == 10
    with_41 = statements_of_one_visit(client, statements)
    assert len(with_41) == len(with_one), "\n".join(with_41)
    assert len(with_one) <= 10, "\n".join(with_one)
    assert not [sql for sql in with_41 if "FROM structure" in sql and "JOIN" not in sql and "WHERE" not in sql]


def reasons_shown(client) -> list[str]:
    page = client.get("/espace/").get_data(as_text=True)
    return re.findall(r"<ul class=\"reasons\"[^>]*><li>(.*?)</li>", page)


def rename_from_another_connection(db_url: str, sql: str) -> None:
    other = engine_db.make_database(db_url)  # not the portal's pool: as another process would
    other.connect()
    other.execute_sql(sql)
    other.close()


def test_a_structure_or_role_renamed_elsewhere_shows_at_the_next_visit(member_space, db_url, statements):
    client = member_space["client"]
    assert reasons_shown(client) == ["Membre du comité directeur — Comité régional Provence"]
    loads = [sql for sql in statements_of_one_visit(client, statements) if sql.startswith("SELECT id, name")]
    assert loads == []  # nothing changed: the names come from the cache
    rename_from_another_connection(db_url, "UPDATE structure SET name = 'Comité régional Sud' "
                                           f"WHERE id = {member_space['region'].id}")
    assert reasons_shown(client) == ["Membre du comité directeur — Comité régional Sud"]
    rename_from_another_connection(db_url, "UPDATE role SET name_fr = 'Administrateur(trice)' "
                                           f"WHERE id = {member_space['board'].id}")
    assert reasons_shown(client) == ["Administrateur(trice) — Comité régional Sud"]
    loads = [sql for sql in statements_of_one_visit(client, statements) if sql.startswith("SELECT id, name")]
    assert loads == []


def test_a_rename_rolled_back_is_not_kept_by_the_cache(member_space, db):
    assert labels.current().structure(member_space["region"].id) == "Comité régional Provence"
    with db.atomic() as transaction:
        db.execute_sql(f"UPDATE structure SET name = 'Provisoire' WHERE id = {member_space['region'].id}")
        assert labels.current().structure(member_space["region"].id) == "Provisoire"
        transaction.rollback()
    assert labels.current().structure(member_space["region"].id) == "Comité régional Provence"
