"""Issue 13's journeys in headless Chromium, asserting what people see by accessible role and name: leaving a
list with cookies cleared, French error pages inside the layout, a staff form that keeps everything typed, bad
lines kept after a creation, the domain selector's states, and a confirmation that lands in view."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from engine import clock, demo, tokens
from engine.directory import accounts
from engine.directory.models import Member
from engine.lists import subscribers
from engine.lists.models import Domain, MailingList, OptOut
from tests import factories as f

pytestmark = pytest.mark.browser



@pytest.fixture
def federation(settings, db):
    f.cheap_password_hashing()
    demo.build(settings, members=300)
    return settings


def log_in(page: Page, url: str, licence: str) -> None:
    page.goto(url + "/login")
    page.get_by_role("textbox", name="Numéro de licence ou adresse e-mail").fill(licence)
    page.get_by_role("textbox", name="Mot de passe").fill(demo.DEMO_PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Mon espace")


def expect_error_page(page: Page, title: str) -> None:
    """Our page, in French, inside the site's layout, with somewhere to go next."""
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    expect(page.get_by_role("banner").get_by_role("link", name="Palanquée")).to_be_visible()
    expect(page.get_by_role("main").get_by_role("link", name="Accueil")).to_be_visible()


def test_unsubscribing_works_with_cookies_cleared_and_a_stale_page(federation, live_server, page: Page):
    member = Member.get(Member.licence_number == demo.MEMBER_LICENCE)
    ml = MailingList.get(MailingList.local_part == "comite_directeur.comite")
    url = tokens.unsubscribe_url(live_server.settings, ml.id, (member.id,))
    with clock.frozen(clock.now()) as advance:
        page.goto(url.replace(live_server.settings.base_url, live_server.url))
        expect(page.get_by_role("heading", level=1)).to_have_text("Se désabonner")
        page.context.clear_cookies()  # a tab restored after a restart, a mail app without cookies
        advance(timedelta(days=2))  # and the page was left open
        page.get_by_role("button", name="Confirmer le désabonnement").click()
        expect(page.get_by_role("status")).to_contain_text("Confirmez de nouveau")  # the page again, not an error
        assert OptOut.select().count() == 0
        page.get_by_role("button", name="Confirmer le désabonnement").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Désabonnement enregistré")
    assert [(o.member_id, o.source) for o in OptOut.select()] == [(member.id, "footer")]
    assert page.context.cookies() == []  # nothing needed a session


def test_error_pages_are_french_inside_the_layout(federation, live_server, page: Page):
    page.goto(live_server.url + "/une-page-qui-n-existe-pas")
    expect_error_page(page, "Page introuvable")
    page.goto(live_server.url + "/logout")  # a button's address opened as a link
    expect_error_page(page, "Action impossible à cette adresse")
    page.goto(live_server.url + "/login")
    page.context.clear_cookies()  # the session the form belonged to is gone
    page.get_by_role("textbox", name="Numéro de licence ou adresse e-mail").fill(demo.MEMBER_LICENCE)
    page.get_by_role("textbox", name="Mot de passe").fill(demo.DEMO_PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    expect_error_page(page, "Le formulaire a expiré")
    page.get_by_role("link", name="Rouvrir le formulaire").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Connexion")
    log_in(page, live_server.url, demo.MEMBER_LICENCE)
    page.goto(live_server.url + "/admin/")
    expect_error_page(page, "Accès refusé")
    page.get_by_role("button", name="Se déconnecter").click()
    for _ in range(accounts.ACCOUNT_LIMIT):
        page.get_by_role("textbox", name="Numéro de licence ou adresse e-mail").fill(demo.MEMBER_LICENCE)
        page.get_by_role("textbox", name="Mot de passe").fill("pas-le-bon")
        page.get_by_role("button", name="Se connecter").click()
    page.get_by_role("textbox", name="Mot de passe").fill("pas-le-bon")
    page.get_by_role("button", name="Se connecter").click()
    expect(page.get_by_role("alert")).to_contain_text(re.compile(r"Réessayez dans 15 minutes, à partir de .+ h \d\d"))


def test_an_out_of_scope_structure_keeps_everything_typed(federation, live_server, page: Page):
    log_in(page, live_server.url, demo.STAFF_LICENCE)
    page.goto(live_server.url + "/admin/lists/new")
    page.get_by_role("textbox", name="Adresse de la liste (avant le @)").fill("sorties.idf")
    page.get_by_role("textbox", name="Nom de la liste").fill("Sorties en Île-de-France")
    structure = page.get_by_role("combobox", name="Structure de la liste")
    structure.fill("CR-IDF")
    page.get_by_role("textbox", name="Abonnés (une adresse par ligne)").fill("un@example.org\ndeux@example.org")
    page.get_by_role("checkbox", name="Notifier l’administrateur de la création de la liste").check()
    page.get_by_role("button", name="Créer la liste").click()
    expect(structure).to_have_accessible_description(re.compile("Île-de-France \\(CR-IDF\\) est hors de votre périmètre"))
    expect(structure).to_have_attribute("aria-invalid", "true")
    expect(structure).to_have_value("CR-IDF")
    expect(page.get_by_role("textbox", name="Adresse de la liste (avant le @)")).to_have_value("sorties.idf")
    expect(page.get_by_role("textbox", name="Nom de la liste")).to_have_value("Sorties en Île-de-France")
    expect(page.get_by_role("textbox", name="Abonnés (une adresse par ligne)")).to_have_value(
        "un@example.org\ndeux@example.org")
    expect(page.get_by_role("checkbox", name="Notifier l’administrateur de la création de la liste")).to_be_checked()
    assert not MailingList.select().where(MailingList.local_part == "sorties.idf").exists()
    structure.fill("CD-13 — Comité départemental 13")  # picked from what the staff member manages
    page.get_by_role("button", name="Créer la liste").click()
    expect(page.get_by_role("status").filter(has_text="La liste sorties.idf@")).to_be_visible()


def test_bad_lines_stay_in_the_field_after_creation(federation, live_server, page: Page):
    log_in(page, live_server.url, demo.ADMIN_LICENCE)
    page.goto(live_server.url + "/admin/lists/new")
    page.get_by_role("textbox", name="Adresse de la liste (avant le @)").fill("invites.gala")
    page.get_by_role("combobox", name="Structure de la liste").fill("FFESSM")
    page.get_by_role("textbox", name="Abonnés (une adresse par ligne)").fill(
        "un@example.org\nceci n'est pas une adresse\ndeux@example.org")
    page.get_by_role("button", name="Créer la liste").click()
    expect(page.get_by_role("status").filter(has_text="est créée")).to_be_visible()
    box = page.get_by_role("textbox", name="Abonnés (une adresse par ligne)")
    expect(box).to_have_value("ceci n'est pas une adresse\ndeux@example.org\nun@example.org")
    expect(box).to_have_attribute("aria-invalid", "true")
    expect(box).to_have_accessible_description(re.compile("ligne 1 : « ceci n'est pas une adresse »"))
    ml = MailingList.get(MailingList.local_part == "invites.gala")
    assert subscribers.subscriber_count(ml) == 2
    box.fill("deux@example.org\nun@example.org\ntrois@example.org")  # corrected: saved on the list's own page
    page.get_by_role("button", name="Enregistrer les abonnés").click()
    expect(page.get_by_role("status").filter(has_text="1 ajouté(s)")).to_be_visible()
    assert subscribers.subscriber_count(ml) == 3


def test_a_switched_off_domain_is_marked_and_never_the_default(federation, live_server, page: Page):
    log_in(page, live_server.url, demo.STAFF_LICENCE)
    page.goto(live_server.url + "/admin/lists/new")
    domain = page.get_by_role("combobox", name="Domaine")
    on, off = Domain.get(Domain.name == demo.LIST_DOMAIN), Domain.get(Domain.name == demo.OFF_DOMAIN)
    expect(domain).to_have_value(str(on.id))
    expect(domain.get_by_role("option", name=re.compile(re.escape(demo.OFF_DOMAIN)))).to_have_text(
        re.compile("listes désactivées"))
    expect(domain.get_by_role("option", name=re.compile(re.escape(demo.LIST_DOMAIN)))).to_have_text(
        re.compile("listes activées"))
    assert off.name < on.name  # the first alphabetically is not chosen for being first


def test_the_confirmation_after_leaving_is_in_view_and_focused(federation, live_server, page: Page):
    page.set_viewport_size({"width": 1000, "height": 600})
    log_in(page, live_server.url, demo.MEMBER_LICENCE)
    buttons = page.get_by_role("button", name=re.compile("^Quitter la liste "))
    assert buttons.count() >= 3
    last = buttons.last
    name = last.get_attribute("aria-label").removeprefix("Quitter la liste ")
    last.click()
    confirmation = page.get_by_role("status").filter(has_text=f"Vous avez quitté la liste « {name} ».")
    expect(confirmation).to_be_in_viewport()
    expect(confirmation).to_be_focused()  # read out by screen readers
    expect(page.get_by_role("button", name=f"Rejoindre la liste {name}")).to_be_in_viewport()
