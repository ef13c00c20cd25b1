"""Staff administration through the real app: 403 for non-staff, scoping by URL and by forged form, CSRF on
every form, and the pages' behaviour (create with notice, subscribers, criteria preview, opt-outs, import, audit)."""

from __future__ import annotations

import io
import re

import pytest

from engine import demo
from engine.audit import AuditEvent
from engine.directory.models import Member, Role, Structure
from engine.lists import optouts, subscribers
from engine.lists.models import Domain, ListCriterion, MailingList, Subscription
from engine.lists.resolve import count_recipients
from engine.outbound.mail import read_captured
from tests.support.portal import csrf, demo_app
from tests.support.portal import logged_in as logged_in_client


@pytest.fixture
def app(settings, db):
    return demo_app(settings)


token_of = csrf


def logged_in(app, licence: str):
    return logged_in_client(app.test_client(), licence, demo.DEMO_PASSWORD)


@pytest.fixture
def regional(app):
    return logged_in(app, demo.STAFF_LICENCE)


@pytest.fixture
def federal(app):
    return logged_in(app, demo.ADMIN_LICENCE)


def the_list(local_part: str) -> MailingList:
    return MailingList.get(MailingList.local_part == local_part)


def list_pages(ml_id: int) -> list[str]:
    return [f"/admin/lists/{ml_id}{tail}" for tail in ("", "/subscribers", "/criteria", "/posting", "/optouts",
                                                       "/optouts.csv", "/recipients")]


ADMIN_PAGES = ["/admin/", "/admin/lists/new", "/admin/domains", "/admin/import", "/admin/audit"]


def test_members_who_are_not_staff_get_403_everywhere(app):
    member = logged_in(app, demo.MEMBER_LICENCE)
    ml = the_list("licencies.provence")
    for path in ADMIN_PAGES + list_pages(ml.id):
        assert member.get(path).status_code == 403, path
    token = token_of(member, "/espace/")
    response = member.post("/admin/lists/delete", data={"csrf_token": token, "list_ids": ml.id, "confirm": "yes"})
    assert response.status_code == 403 and the_list("licencies.provence").deleted_at is None
    anonymous = app.test_client()
    assert anonymous.get("/admin/").status_code == 302 and "/login" in anonymous.get("/admin/").headers["Location"]


def test_regional_staff_sees_only_their_region(regional, federal):
    page = regional.get("/admin/").get_data(as_text=True)
    assert "licencies.provence@" in page and "bureau.codep13@" in page
    assert "licencies.national@" not in page and "invites.ag2026@" not in page
    national = the_list("licencies.national")
    for path in list_pages(national.id):
        assert regional.get(path).status_code == 403, path
        assert federal.get(path).status_code == 200, path
    assert "licencies.national@" in federal.get("/admin/").get_data(as_text=True)


def test_forged_forms_cannot_reach_another_region(regional):
    token = token_of(regional, "/admin/")
    national, mine = the_list("licencies.national"), the_list("licencies.provence")
    response = regional.post("/admin/lists/delete", data={"csrf_token": token, "list_ids": [mine.id, national.id],
                                                          "confirm": "yes"})
    assert response.status_code == 403
    assert MailingList.select().where(MailingList.deleted_at.is_null(False)).count() == 0
    fed_domain = Domain.get(Domain.name == demo.LIST_DOMAIN)
    assert regional.post(f"/admin/domains/{fed_domain.id}", data={"csrf_token": token, "enabled": "0"}
                         ).status_code == 403
    assert Domain.get_by_id(fed_domain.id).lists_enabled is True
    for path, data in ((f"/admin/lists/{national.id}/subscribers", {"subscribers": "x@example.org"}),
                       (f"/admin/lists/{national.id}", {"name": "Pirate"}),
                       (f"/admin/lists/{national.id}/criteria", {"criteria-0-structure": "CR-PROV"})):
        assert regional.post(path, data={"csrf_token": token, **data}).status_code == 403, path
    assert the_list("licencies.national").name != "Pirate" and Subscription.select().where(
        Subscription.mailing_list == national).count() == 0
    # a list of their own, but criteria, posting roles or a new list pointing outside their scope: a field error
    # (the form comes back with everything typed), and nothing changes
    criteria_before = ListCriterion.select().where(ListCriterion.mailing_list == mine).count()
    for path, data in ((f"/admin/lists/{mine.id}/criteria", {"criteria-0-structure": "FFESSM", "action": "save"}),
                       (f"/admin/lists/{mine.id}/criteria/preview", {"criteria-0-structure": "CR-IDF"}),
                       (f"/admin/lists/{mine.id}/posting", {"policy": "roles", "hold": "hold", "roles": "1",
                                                            "role_structure": "FFESSM"}),
                       ("/admin/lists/new", {"local_part": "pirate", "domain": fed_domain.id, "structure": "CR-IDF",
                                             "kind": "static", "subscribers": "un@example.org"})):
        response = regional.post(path, data={"csrf_token": token, **data})
        assert response.status_code in (200, 422), path
        assert "est hors de votre périmètre" in response.get_data(as_text=True), path
    assert not MailingList.select().where(MailingList.local_part == "pirate").exists()
    assert ListCriterion.select().where(ListCriterion.mailing_list == mine).count() == criteria_before
    assert the_list("licencies.provence").post_policy == "moderators"


def test_every_form_refuses_a_post_without_csrf_token(federal):
    ml = the_list("invites.ag2026")
    domain = Domain.get(Domain.name == demo.OFF_DOMAIN)
    before = AuditEvent.select().count()
    posts = {
        "/admin/lists/new": {"local_part": "x", "domain": domain.id, "structure": "FFESSM", "kind": "static"},
        "/admin/lists/delete": {"list_ids": ml.id, "confirm": "yes"},
        f"/admin/domains/{domain.id}": {"enabled": "1"},
        f"/admin/lists/{ml.id}": {"name": "Changé"},
        f"/admin/lists/{ml.id}/subscribers": {"subscribers": "a@example.org"},
        f"/admin/lists/{ml.id}/criteria": {"criteria-0-structure": "FFESSM", "action": "save"},
        f"/admin/lists/{ml.id}/criteria/preview": {"criteria-0-structure": "FFESSM"},
        f"/admin/lists/{ml.id}/posting": {"policy": "anyone", "hold": "hold"},
        "/admin/import": {"file": (io.BytesIO(b"numero_licence;nom;prenom;club;saison\n"), "x.csv")},
    }
    for path, data in posts.items():
        response = federal.post(path, data=data)
        assert response.status_code == 400, path
        assert "Le formulaire a expiré" in response.get_data(as_text=True), path
    assert AuditEvent.select().count() == before
    assert the_list("invites.ag2026").deleted_at is None and Domain.get_by_id(domain.id).lists_enabled is False


def test_create_list_under_second_domain_with_notice(federal, settings):
    off = Domain.get(Domain.name == demo.OFF_DOMAIN)
    response = federal.post("/admin/lists/new", data={
        "csrf_token": token_of(federal, "/admin/lists/new"), "local_part": "bureau.elargi", "domain": off.id,
        "name": "Bureau élargi", "structure": "CD-13", "kind": "static", "owner": demo.ADMIN_LICENCE,
        "subscribers": "a@example.org\nb@example.org\nc@example.org", "notify": "y"}, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "bureau.elargi@listes.codep13-demo.fr est créée" in page
    ml = the_list("bureau.elargi")
    assert ml.domain_id == off.id and subscribers.subscriber_count(ml) == 3
    # the creator (and owner) is not told: the administrators of the structure above CD-13 are (Provence's staff);
    # each of the three addresses typed at creation gets its welcome (DELIVERABILITY.md §9.4)
    captured = read_captured(settings.capture_dir)
    welcomed = sorted(str(m["To"]) for m in captured if m["Subject"].startswith("Vous êtes inscrit(e)"))
    assert welcomed == ["a@example.org", "b@example.org", "c@example.org"]
    [mail] = [m for m in captured if not m["Subject"].startswith("Vous êtes inscrit(e)")]
    assert mail["To"] == "karim.benali@free.fr" and "bureau.elargi@listes.codep13-demo.fr" in mail["Subject"]
    assert "Prévenu(s) de la création : Karim Benali (karim.benali@free.fr, administration de Comité régional" in page
    assert "la liste refuse le courrier tant qu’il n’est pas activé" in page


def test_header_injection_refused_by_the_form(federal):
    ml = the_list("invites.ag2026")
    response = federal.post(f"/admin/lists/{ml.id}", data={
        "csrf_token": token_of(federal, f"/admin/lists/{ml.id}"), "name": "Invités",
        "subject_prefix": "[AG]\r\nBcc: everyone@example.org", "reply_to": "author"})
    assert response.status_code == 200 and "retour à la ligne" in response.get_data(as_text=True)
    assert the_list("invites.ag2026").subject_prefix == ""


def test_subscribers_with_an_invalid_line(federal):
    ml = the_list("invites.ag2026")
    path = f"/admin/lists/{ml.id}/subscribers"
    text = "presse@ville-marseille.fr\nnouveau@example.org\nmauvaise adresse\nNOUVEAU@example.org"
    page = federal.post(path, data={"csrf_token": token_of(federal, path), "subscribers": text}).get_data(as_text=True)
    # the bad line is kept first in the field, marked, and the error names the line where it now is
    assert "ligne 1 : « mauvaise adresse » : adresse invalide" in page
    assert subscribers.subscribers_text(ml) == "nouveau@example.org\npresse@ville-marseille.fr"
    assert re.search(r'aria-invalid="true"[^>]*>\s*mauvaise adresse\nnouveau@example.org\npresse@ville-marseille.fr'
                     r'</textarea>', page)


def test_large_lists_get_the_bulk_form(federal, monkeypatch):
    monkeypatch.setattr(subscribers, "TEXTAREA_LIMIT", 2)
    ml = the_list("invites.ag2026")
    path = f"/admin/lists/{ml.id}/subscribers"
    page = federal.get(path).get_data(as_text=True)
    assert 'name="lines"' in page and 'name="subscribers"' not in page
    federal.post(path, data={"csrf_token": token_of(federal, path), "lines": "x@example.org\ny@example.org",
                             "action": "add"})
    assert subscribers.subscriber_count(ml) == 5
    federal.post(path, data={"csrf_token": token_of(federal, path), "lines": "x@example.org", "action": "remove"})
    assert subscribers.subscriber_count(ml) == 4
    assert "Page 1 / 1" not in federal.get(path + "?page=1").get_data(as_text=True)  # 4 rows: no pager


def test_criteria_preview_fragment_matches_resolve_and_save(regional):
    ml = the_list("licencies.provence")
    path = f"/admin/lists/{ml.id}/criteria"
    president = Role.get(Role.code == "president")
    form = {"csrf_token": token_of(regional, path), "criteria-0-structure": "CD-13", "criteria-0-roles": president.id,
            "criteria-0-include_subtree": "y", "criteria-0-structure_kind": "club",
            "criteria-0-require_valid_licence": "y"}
    cheap = regional.post(path + "/preview", data=form).get_data(as_text=True)
    assert 'data-testid="recipient-count"' not in cheap and "/criteria/exact" in cheap  # estimate, then exact
    fragment = regional.post(path + "/exact", data=form).get_data(as_text=True)
    assert "/criteria/exact" not in fragment
    shown = int(re.search(r'data-testid="recipient-count">(\d+)<', fragment).group(1))
    again = regional.post(path + "/preview", data=form).get_data(as_text=True)  # the same criteria again: at once
    assert f'environ <strong data-testid="recipient-estimate">{shown}</strong>' in again
    assert ListCriterion.select().where(ListCriterion.mailing_list == ml).count() == 1  # unchanged
    no_js = regional.post(path, data={**form, "action": "preview"}).get_data(as_text=True)
    assert f'data-testid="recipient-count">{shown}<' in no_js
    assert regional.post(path, data={**form, "action": "save"}).status_code == 302
    assert count_recipients(the_list("licencies.provence")) == shown
    bad = regional.post(path + "/preview", data={**form, "criteria-0-structure": "NOPE"})
    assert bad.status_code == 422 and "Structure inconnue : « NOPE »" in bad.get_data(as_text=True)


def test_opt_outs_are_listed_filtered_and_exported(federal):
    ml = the_list("licencies.provence")
    elodie = Member.get(Member.licence_number == demo.MEMBER_LICENCE)
    optouts.leave(ml, member=elodie, source="footer")
    optouts.leave(ml, email_key="someone@example.org", source="mailto")
    page = federal.get(f"/admin/lists/{ml.id}/optouts?source=footer").get_data(as_text=True)
    assert "Marchetti" in page and "someone@example.org" not in page
    csv_text = federal.get(f"/admin/lists/{ml.id}/optouts.csv").get_data(as_text=True)
    lines = csv_text.strip().splitlines()
    assert lines[0] == "date_utc;adresse;numero_licence;nom;prenom;source" and len(lines) == 3
    assert any(line.endswith(f";elodie.marchetti@orange.fr;{demo.MEMBER_LICENCE};Marchetti;Élodie;footer")
               for line in lines)
    filtered = federal.get(f"/admin/lists/{ml.id}/optouts.csv?source=mailto").get_data(as_text=True)
    assert "someone@example.org" in filtered and "Marchetti" not in filtered


def test_lists_page_search_sort_and_recipients_page(federal):
    page = federal.get("/admin/?q=provence").get_data(as_text=True)
    assert "licencies.provence@" in page and "licencies.national@" not in page
    page = federal.get("/admin/?sort=address&order=desc").get_data(as_text=True)
    assert page.index("presidents.clubs13@") < page.index("bureau.codep13@")
    ml = the_list("licencies.national")
    recipients = federal.get(f"/admin/lists/{ml.id}/recipients").get_data(as_text=True)
    assert f"{count_recipients(ml)} destinataires" in recipients


def test_import_page_reports_bad_rows_and_is_scoped(regional):
    csv_bytes = ("\ufeffnumero_licence;nom;prenom;email;club;saison;roles\n"
                 "A-13-990001;Bon;Jean;jean@example.org;CLUB-13-0001;2026;\n"
                 "A-29-990002;Breton;Yann;yann@example.org;CLUB-29-0003;2026;\n"
                 "A-13-990003;Mauvais;Paul;pas-une-adresse;CLUB-13-0001;2026;\n").encode()
    page = regional.post("/admin/import", data={"csrf_token": token_of(regional, "/admin/import"),
                                                "file": (io.BytesIO(csv_bytes), "export.csv")},
                         content_type="multipart/form-data").get_data(as_text=True)
    assert "1 créé(s)" in page and "2 refusée(s)" in page
    assert "CLUB-29-0003 est hors de votre périmètre" in page and "adresse e-mail invalide" in page
    assert Member.select().where(Member.licence_number == "A-13-990001").exists()
    assert not Member.select().where(Member.licence_number == "A-29-990002").exists()


def test_audit_log_shows_staff_actions_and_is_scoped(regional, federal):
    ml = the_list("invites.ag2026")  # national: the regional staff must not see what happens to it
    federal.post(f"/admin/lists/{ml.id}/subscribers", data={
        "csrf_token": token_of(federal, f"/admin/lists/{ml.id}/subscribers"), "subscribers": "q@example.org"})
    mine = the_list("licencies.provence")
    regional.post(f"/admin/lists/{mine.id}", data={"csrf_token": token_of(regional, f"/admin/lists/{mine.id}"),
                                                   "name": "Licenciés de Provence", "reply_to": "author"})
    def rows(client, query: str = "") -> str:
        page = client.get(f"/admin/audit{query}").get_data(as_text=True)
        return re.search(r"<tbody>(.*)</tbody>", page, re.S).group(1)

    shown = rows(regional)
    assert "Réglages modifiés" in shown and "Abonnés modifiés" not in shown
    assert "champs : nom" in shown and "nom : Licenciés de Provence" in shown  # words, not {'name': …}
    shown = rows(federal, "?action=list.subscribers_replaced")
    assert "Abonnés modifiés" in shown and "Réglages modifiés" not in shown
    shown = rows(federal, "?action=list.")  # a family of actions
    assert "Abonnés modifiés" in shown and "Réglages modifiés" in shown
    assert "Benali" in rows(federal, f"?actor={demo.STAFF_LICENCE}")


def test_structures_used_in_tests_exist(app):
    assert Structure.select().where(Structure.code.in_(["CD-13", "CLUB-13-0001", "CLUB-29-0003", "CR-IDF"])
                                    ).count() == 4


def test_admin_pages_in_english(federal):
    page = federal.get("/admin/?lang=en").get_data(as_text=True)
    assert "<h1>Mailing lists</h1>" in page and "recipients" in federal.get(
        f"/admin/lists/{the_list('licencies.national').id}/recipients").get_data(as_text=True)
