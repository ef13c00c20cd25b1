"""The demo federation is realistic in the ways that matter to lists, and is built only once."""

from __future__ import annotations

import peewee as pw
import pytest

from engine import demo
from engine.directory.models import Mandate, Member, Structure, StructureKind
from engine.directory.passwords import verify_password
from engine.directory.staff import can_manage, is_federation_admin
from engine.lists.models import Domain, MailingList
from engine.lists.resolve import count_recipients, resolve


@pytest.fixture
def summary(db, settings):
    return demo.build(settings, members=600, seed=7)


def test_tree_has_every_level(summary):
    kinds = {kind: Structure.select().where(Structure.kind == kind).count() for kind in StructureKind.ALL}
    assert kinds[StructureKind.FEDERATION] == 1
    assert kinds[StructureKind.REGIONAL] >= 10 and kinds[StructureKind.DEPARTMENTAL] > kinds[StructureKind.REGIONAL]
    assert kinds[StructureKind.CLUB] >= 12
    assert summary.members == Member.select().count() == 603


def test_members_are_realistic_for_lists(summary, settings):
    shared = (Member.select(Member.email_key).where(Member.email_key.is_null(False))
              .group_by(Member.email_key).having(pw.fn.COUNT(Member.id) > 1))
    assert shared.count() > 0, "some families share one address"
    assert Member.select().where(Member.email.is_null()).count() > 0, "some members have no address"
    seasons = {m.licence_season for m in Member.select(Member.licence_season).distinct()}
    assert len(seasons) == 2, "licences of this season and lapsed ones"
    several = (Mandate.select(Mandate.member).where(Mandate.ends_on.is_null())
               .group_by(Mandate.member).having(pw.fn.COUNT(pw.fn.DISTINCT(Mandate.structure)) > 1))
    assert several.count() > 0, "some members hold mandates in several structures"
    assert Mandate.select().where(Mandate.ends_on.is_null(False)).count() > 0, "some terms have ended"


def test_domains_lists_and_accounts(summary):
    assert {(d.name, d.lists_enabled) for d in Domain.select()} == {
        (demo.LIST_DOMAIN, True), (demo.OFF_DOMAIN, False)}
    board = MailingList.get(MailingList.local_part == "comite_directeur.comite")
    recipients = [r for batch in resolve(board) for r in batch]
    assert 4 <= len(recipients) == count_recipients(board)
    presidents = MailingList.get(MailingList.local_part == "presidents.clubs13")
    for batch in resolve(presidents):
        for recipient in batch:
            assert all(reason.label_fr.startswith("Président(e) — ") for reason in recipient.reasons)
    member = Member.get(Member.licence_number == demo.MEMBER_LICENCE)
    staff = Member.get(Member.licence_number == demo.STAFF_LICENCE)
    admin = Member.get(Member.licence_number == demo.ADMIN_LICENCE)
    assert verify_password(member.password_hash, demo.DEMO_PASSWORD)
    assert is_federation_admin(admin) and not is_federation_admin(staff)
    provence_club = Structure.get(Structure.code.startswith("CLUB-13-"))
    brittany_club = Structure.get(Structure.code.startswith("CLUB-29-"))
    assert can_manage(staff, provence_club) and not can_manage(staff, brittany_club)


def test_refuses_to_build_twice(summary, settings):
    with pytest.raises(demo.AlreadyPopulated):
        demo.build(settings, members=10)
    assert Member.select().count() == 603


def test_same_seed_same_federation(db, settings):
    demo.build(settings, members=50, seed=3)
    first = [(m.first_name, m.last_name, m.email) for m in Member.select().order_by(Member.licence_number)]
    assert len(first) == 53 and len(set(first)) > 40


def test_generated_town_names_keep_their_space() -> None:
    from engine.demo import town_name

    assert town_name("Sainte ConstanceBourg") == "Sainte Constance Bourg"
    assert town_name("MartinVille") == "Martin Ville"
    assert town_name("Saint-Denis") == "Saint-Denis" and town_name("Bourg") == "Bourg"


def test_the_summary_counts_the_same_on_every_start(summary):
    assert demo.describe(summary) == demo.describe(demo.existing_summary())
    assert f"{Mandate.select().count()} mandates" in demo.describe(summary)


def test_the_progress_lines_agree_with_the_summary(db, settings):
    lines: list[str] = []
    summary = demo.build(settings, members=60, seed=5, progress=lines.append)
    assert f"  {summary.mandates} mandates" in lines and f"  {summary.structures} structures" in lines
