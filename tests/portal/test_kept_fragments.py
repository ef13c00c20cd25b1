"""Pages whose parts are rendered once and kept (portal/rendering.py ``fragment``): what they show still follows
every change of what they show, the language, and who is looking (issue 14)."""

from __future__ import annotations

import re

import pytest

from engine import audit, demo
from engine.directory.models import Member
from engine.lists import counts, subscribers
from engine.lists.models import MailingList
from tests.support.portal import demo_app, logged_in


@pytest.fixture
def app(settings, db):
    return demo_app(settings)


def client_of(app, licence: str):
    return logged_in(app.test_client(), licence, demo.DEMO_PASSWORD)


def row_of(page: str, address: str) -> str:
    return next(row for row in page.split("<tr>") if address in row)


def test_a_lists_page_row_follows_its_list(app):
    federal = client_of(app, demo.ADMIN_LICENCE)
    ml = MailingList.select().where(MailingList.kind == "static").first()
    before = row_of(federal.get("/admin/").get_data(as_text=True), ml.address)
    subscribers.add_subscribers(None, ml, "kept-1@example.org\nkept-2@example.org")  # recounted at once
    after = row_of(federal.get("/admin/").get_data(as_text=True), ml.address)
    shown = [re.search(r'class="number">(?:<span[^>]*>≈ </span>)?(\d+)<', row).group(1) for row in (before, after)]
    assert int(shown[1]) == int(shown[0]) + 2 == counts.counts_of([ml])[ml.id].recipients
    MailingList.update(name="Nom changé").where(MailingList.id == ml.id).execute()
    assert "Nom changé" in row_of(federal.get("/admin/").get_data(as_text=True), ml.address)


def test_journal_rows_follow_the_language_and_new_events(app):
    federal = client_of(app, demo.ADMIN_LICENCE)
    audit.record("list.purged", None, actor=None, object_type="list", object_id=4242)
    french = federal.get("/admin/audit").get_data(as_text=True)
    english = federal.get("/admin/audit?lang=en").get_data(as_text=True)
    assert "Liste purgée" in row_of(french, "4242") and "List purged" in row_of(english, "4242")
    audit.record("list.deleted", None, actor=None, object_type="list", object_id=4243)
    assert "4243" in federal.get("/admin/audit").get_data(as_text=True)


def test_navigation_follows_who_is_looking_and_the_language(app):
    federal, member = client_of(app, demo.ADMIN_LICENCE), client_of(app, demo.MEMBER_LICENCE)
    assert 'href="/admin/"' in federal.get("/espace/").get_data(as_text=True)
    page = member.get("/espace/").get_data(as_text=True)
    assert 'href="/admin/"' not in page and 'href="/espace/"' in page
    assert 'hreflang="fr" aria-current="true"' in page
    english = member.get("/espace/?lang=en").get_data(as_text=True)
    assert 'hreflang="en" aria-current="true"' in english and 'hreflang="fr" aria-current' not in english
    assert "Log out" in english and "Se déconnecter" not in english
    anonymous = app.test_client().get("/login").get_data(as_text=True)
    assert 'href="/espace/"' not in anonymous


def test_the_profile_card_follows_the_member(app):
    member = client_of(app, demo.MEMBER_LICENCE)
    me = Member.get(Member.licence_number == demo.MEMBER_LICENCE)
    assert me.last_name in member.get("/espace/").get_data(as_text=True)
    Member.update(last_name="Renommée").where(Member.id == me.id).execute()
    assert "Renommée" in member.get("/espace/").get_data(as_text=True)


def test_a_message_page_keeps_its_preview_per_language(app):
    from engine import clock
    from engine.posting.models import Message

    federal = client_of(app, demo.ADMIN_LICENCE)
    ml = MailingList.select().first()
    content = b"From: Aline <aline@example.org>\r\nSubject: Sortie du dimanche\r\n\r\nRendez-vous au port.\r\n"
    message = Message.create(mailing_list=ml, content=content, size=len(content), subject="Sortie du dimanche",
                             author="aline@example.org", received_at=clock.now(), state="done")
    french = federal.get(f"/admin/messages/{message.id}").get_data(as_text=True)
    english = federal.get(f"/admin/messages/{message.id}?lang=en").get_data(as_text=True)
    assert "Rendez-vous au port." in french and "Rendez-vous au port." in english
    assert "<dt>Objet du message</dt>" in french and "<dt>Subject</dt>" in english
    assert "<dt>Objet du message</dt>" not in english


def test_the_structure_picker_follows_scopes_and_new_structures(app):
    from engine.directory.models import Structure

    federal, regional = client_of(app, demo.ADMIN_LICENCE), client_of(app, demo.STAFF_LICENCE)

    def choices(client) -> list[str]:
        page = client.get("/admin/lists/new").get_data(as_text=True)
        return re.findall(r'<option value="([^"]+)"></option>', page.split('id="structure-choices"')[1])

    everywhere, provence = choices(federal), choices(regional)
    assert set(provence) < set(everywhere) and any(c.startswith("CR-PROV") for c in provence)
    parent = Structure.get(Structure.code == "CR-PROV")
    Structure.create_node(name="Club tout neuf", code="CLUB-NEUF", kind="club", parent=parent, depth=parent.depth + 1)
    assert "CLUB-NEUF — Club tout neuf" in choices(regional) and "CLUB-NEUF — Club tout neuf" in choices(federal)


def test_the_role_picker_follows_checked_roles_renamed_roles_and_the_language(app):
    """The criteria page's role checkboxes are kept per value: the roles checked in each criterion, each
    role's name in the reader's language, a role renamed or added by staff."""
    from engine.directory.models import Role, Structure
    from engine.lists import preview

    federal = client_of(app, demo.ADMIN_LICENCE)
    ml = MailingList.select().where(MailingList.kind == "role").first()
    president = Role.get(Role.code == "president")
    club = Structure.get(Structure.kind == "club")
    preview.replace_criteria(None, ml, [preview.CriterionSpec(club.id, (president.id,), False, None, True)])

    def checked(language: str, entry: int) -> tuple[list[str], list[str]]:
        page = federal.get(f"/admin/lists/{ml.id}/criteria?lang={language}").get_data(as_text=True)
        boxes = re.findall(rf'<input type="checkbox" name="criteria-{entry}-roles" value="(\d+)" '
                           rf'id="criteria-{entry}-roles-\d+"( checked)?> <label[^>]*>([^<]+)</label>', page)
        return [value for value, mark, _ in boxes if mark], [label for _, _, label in boxes]

    assert checked("fr", 0) == ([str(president.id)], checked("fr", 0)[1]) and checked("fr", 1)[0] == []
    assert president.name_fr in checked("fr", 0)[1] and president.name_en in checked("en", 0)[1]
    assert president.name_en not in checked("fr", 1)[1]
    Role.update(name_fr="Présidence du club").where(Role.id == president.id).execute()
    Role.create(code="mascotte", name_fr="Mascotte", name_en="Mascot", category="board", rank=999)
    assert {"Présidence du club", "Mascotte"} <= set(checked("fr", 1)[1])
    assert "Mascot" in checked("en", 0)[1]
    treasurer = Role.get(Role.code == "treasurer")
    preview.replace_criteria(None, ml, [preview.CriterionSpec(club.id, (treasurer.id,), False, None, True)])
    assert checked("fr", 0)[0] == [str(treasurer.id)] and checked("en", 0)[0] == [str(treasurer.id)]


def test_a_criterion_fieldset_follows_its_values_its_errors_and_the_language(app):
    """The criteria page's fieldsets are kept per value: the criterion saved, the values typed back with their
    errors, the language of the labels."""
    from engine.directory.models import Structure
    from engine.lists import preview
    from tests.support.portal import csrf

    federal = client_of(app, demo.ADMIN_LICENCE)
    ml = MailingList.select().where(MailingList.kind == "role").first()
    club, region = Structure.get(Structure.kind == "club"), Structure.get(Structure.code == "CR-PROV")
    preview.replace_criteria(None, ml, [preview.CriterionSpec(club.id, (), False, None, True)])
    path = f"/admin/lists/{ml.id}/criteria"

    def fieldset(page: str, entry: int) -> str:
        return next(part for part in page.split('<fieldset class="criterion">')[1:] if f'"criteria-{entry}-' in part)

    first = fieldset(federal.get(path + "?lang=fr").get_data(as_text=True), 0)
    assert f'value="{club.code} — {club.name}"' in first and 'id="criteria-0-include_subtree" ' in first
    assert 'name="criteria-0-include_subtree" type="checkbox" value="y">' in first  # not checked
    assert "Critère 1" in first and "Retirer ce critère" in first
    assert "Criterion 1" in fieldset(federal.get(path + "?lang=en").get_data(as_text=True), 0)
    preview.replace_criteria(None, ml, [preview.CriterionSpec(region.id, (), True, "club", False)])
    saved = fieldset(federal.get(path + "?lang=fr").get_data(as_text=True), 0)
    assert f'value="{region.code} — {region.name}"' in saved and club.code not in saved
    assert 'checked id="criteria-0-include_subtree"' in saved and '<option selected value="club">' in saved
    assert 'checked id="criteria-0-require_valid_licence"' not in saved
    typed = {"csrf_token": csrf(federal, path), "action": "preview", "criteria-0-structure": "INCONNUE-42"}
    wrong = fieldset(federal.post(path + "?lang=fr", data=typed).get_data(as_text=True), 0)
    assert 'value="INCONNUE-42"' in wrong and 'aria-invalid="true"' in wrong and "« INCONNUE-42 »" in wrong
    english = fieldset(federal.post(path + "?lang=en", data=typed).get_data(as_text=True), 0)
    assert "“INCONNUE-42”" in english and "Unknown structure" in english
    assert 'aria-invalid' not in fieldset(federal.get(path + "?lang=fr").get_data(as_text=True), 0)
