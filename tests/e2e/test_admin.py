"""Staff administration in headless Chromium: create a list with notice, edit subscribers, a role-based list's
live count against resolve(), delete two lists with confirmation, switch a domain's list service off and on."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from engine import demo
from engine.directory.models import Member, Role, Structure
from engine.lists import admin, preview, subscribers
from engine.lists.models import Domain, ListKind, MailingList
from engine.lists.resolve import count_recipients, resolve
from engine.outbound.mail import read_captured
from tests import factories as f
from tests.support.browser import log_in as log_in_with

pytestmark = pytest.mark.browser


@pytest.fixture
def federation(settings, db):
    f.cheap_password_hashing()
    demo.build(settings, members=300)
    return settings


def log_in(page: Page, url: str, licence: str = demo.ADMIN_LICENCE) -> None:
    log_in_with(page, url, licence, demo.DEMO_PASSWORD)
    page.goto(url + "/admin/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Listes de diffusion")


def test_create_a_list_under_the_second_domain_with_notice(federation, live_server, page: Page):
    log_in(page, live_server.url)
    page.get_by_role("link", name="Créer une liste").first.click()
    page.get_by_label("Adresse de la liste (avant le @)").fill("sorties.ete")
    domain = page.get_by_label("Domaine")
    expect(domain.locator("option")).to_have_count(2)
    second = Domain.get(Domain.name == demo.OFF_DOMAIN)
    domain.select_option(value=str(second.id))
    page.get_by_label("Nom de la liste").fill("Sorties de l'été")
    page.get_by_label("Structure de la liste").fill("CD-13")
    page.get_by_label("Abonnés (une adresse par ligne)").fill("un@example.org\ndeux@example.org\ntrois@example.org")
    page.get_by_label("Notifier l’administrateur de la création de la liste").check()
    page.get_by_role("button", name="Créer la liste").click()
    expect(page.get_by_text(f"La liste sorties.ete@{second.name} est créée.")).to_be_visible()
    expect(page.get_by_text("3 abonnés saisis")).to_be_visible()
    expect(page.get_by_text("Prévenu(s) de la création : Karim Benali (karim.benali@free.fr")).to_be_visible()
    ml = MailingList.get(MailingList.local_part == "sorties.ete")
    assert ml.domain.name == second.name and subscribers.subscriber_count(ml) == 3
    about = [m for m in read_captured(federation.capture_dir) if f"sorties.ete@{second.name}" in m["Subject"]]
    welcomes = [m for m in about if m["Subject"].startswith("Vous êtes inscrit(e)")]  # DELIVERABILITY.md §9.4
    assert len(welcomes) == 3
    notices = [m for m in about if m not in welcomes]
    assert len(notices) == 1 and notices[0]["To"] == "karim.benali@free.fr"  # above CD-13; never the creator


def test_edit_subscribers_with_one_invalid_line(federation, live_server, page: Page):
    ml = MailingList.get(MailingList.local_part == "invites.ag2026")
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/admin/lists/{ml.id}/subscribers")
    box = page.get_by_label("Abonnés (une adresse par ligne)")
    box.fill("presse@ville-marseille.fr\nnouvelle@example.org\nceci n'est pas une adresse\nautre@example.org")
    page.get_by_role("button", name="Enregistrer les abonnés").click()
    expect(page.get_by_role("alert")).to_have_text("1 ligne refusée : elle reste en tête du champ, à corriger.")
    box = page.get_by_role("textbox", name="Abonnés (une adresse par ligne)")
    expect(box).to_have_accessible_description(re.compile("ligne 1 : « ceci n'est pas une adresse » : adresse invalide"))
    expect(box).to_have_value("ceci n'est pas une adresse\nautre@example.org\nnouvelle@example.org\n"
                              "presse@ville-marseille.fr")
    assert subscribers.subscribers_text(ml) == "autre@example.org\nnouvelle@example.org\npresse@ville-marseille.fr"
    expect(page.get_by_role("cell", name="nouvelle@example.org")).to_be_visible()


def test_role_based_list_live_count_matches_resolve(federation, live_server, page: Page):
    provence = Structure.get(Structure.code == "CR-PROV")
    domain = Domain.get(Domain.name == demo.LIST_DOMAIN)
    created = admin.create_list(federation, None, admin.NewList(domain.id, "presidents.provence", "Présidents",
                                                                provence.id, kind=ListKind.ROLE))
    ml = created.mailing_list
    log_in(page, live_server.url, demo.STAFF_LICENCE)
    page.goto(f"{live_server.url}/admin/lists/{ml.id}/criteria")
    count = page.get_by_test_id("recipient-count")
    expect(count).to_have_text("0")
    page.locator("#criteria-0-structure").fill("CR-PROV")
    page.locator("#criteria-0-include_subtree").check()
    page.get_by_role("group", name="Critère 1").get_by_role("checkbox", name="Président(e)", exact=True).check()
    # What the page must show once its last preview landed, computed here (nothing saved), never read from the page.
    president = Role.get(Role.code == "president")
    shown = preview.preview(None, ml, [preview.CriterionSpec(provence.id, (president.id,), include_subtree=True)]).count
    assert shown > 0
    expect(count).to_have_text(str(shown))  # the live preview caught up with the last change (no fixed wait)
    expect(page.locator("#preview").get_by_text("Président(e) — ").first).to_be_visible()  # the reason shown
    page.get_by_role("button", name="Enregistrer les critères").click()
    expect(page.get_by_text("Critères enregistrés.")).to_be_visible()
    ml = MailingList.get_by_id(ml.id)
    assert count_recipients(ml) == shown == sum(len(batch) for batch in resolve(ml))
    expect(page.get_by_test_id("recipient-count")).to_have_text(str(shown))


def test_delete_two_lists_with_confirmation(federation, live_server, page: Page):
    log_in(page, live_server.url)
    for address in ("invites.ag2026@", "commission.technique@"):
        page.get_by_label(f"Sélectionner {address}").check()
    page.get_by_role("button", name="Supprimer").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Supprimer ces listes ?")
    assert MailingList.select().where(MailingList.deleted_at.is_null(False)).count() == 0  # not yet
    page.get_by_role("button", name="Oui").click()
    expect(page.get_by_text("Listes supprimées")).to_be_visible()
    deleted = {ml.local_part for ml in MailingList.select().where(MailingList.deleted_at.is_null(False))}
    assert deleted == {"invites.ag2026", "commission.technique"}
    expect(page.get_by_role("link", name="invites.ag2026@listes.ffessm-demo.fr")).to_have_count(0)
    expect(page.get_by_role("link", name="licencies.national@listes.ffessm-demo.fr")).to_be_visible()


def test_switch_a_domains_list_service_off_and_on(federation, live_server, page: Page):
    log_in(page, live_server.url)
    page.get_by_role("link", name="Paramètres de la messagerie").click()
    page.get_by_role("button", name=f"Désactiver les listes de diffusion de {demo.LIST_DOMAIN}").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Désactiver les listes de diffusion de {demo.LIST_DOMAIN} ?")
    expect(page.get_by_text("Cela arrête 7 listes, qui atteignent ensemble aujourd’hui")).to_be_visible()
    assert Domain.get(Domain.name == demo.LIST_DOMAIN).lists_enabled is True  # not before "Oui"
    page.get_by_role("button", name=f"Oui, désactiver les listes de {demo.LIST_DOMAIN}").click()
    expect(page.get_by_text(f"Listes de diffusion désactivées pour {demo.LIST_DOMAIN}")).to_be_visible()
    assert Domain.get(Domain.name == demo.LIST_DOMAIN).lists_enabled is False
    assert MailingList.select().join(Domain).where(Domain.name == demo.LIST_DOMAIN).count() == 7  # intact
    page.get_by_role("button", name=f"Activer les listes de diffusion de {demo.LIST_DOMAIN}").click()
    expect(page.get_by_text(f"Listes de diffusion activées pour {demo.LIST_DOMAIN}")).to_be_visible()
    assert Domain.get(Domain.name == demo.LIST_DOMAIN).lists_enabled is True
    assert Member.select().count() > 0
