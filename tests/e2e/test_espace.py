"""Mon espace in headless Chromium, as a member would: log in, click the pencil, type the new address, open
the confirmation link from the captured mail, and read the pending address with its effective date."""

from __future__ import annotations

import dataclasses
import re
from datetime import date, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from engine import clock
from engine.directory.models import Member, StructureKind
from engine.lists.resolve import resolve
from engine.outbound.mail import read_captured
from tests import factories as f
from tests.support.browser import log_in as log_in_with

pytestmark = pytest.mark.browser

PASSWORD = "bonne-plongee-2026"
T0 = datetime(2026, 11, 23, 13, 0)  # 14 h 00 in Paris


@pytest.fixture
def member_and_list(db):
    fed = f.structure("Fédération", StructureKind.FEDERATION)
    region = f.structure("Comité régional Provence", StructureKind.REGIONAL, fed)
    club = f.structure("Club des Calanques", StructureKind.CLUB, region)
    member = f.member_with_password(first_name="Élodie", last_name="Marchetti", email="elodie@example.org",
                                    club=club, licence_number="A-13-000001", valid_until=date(2027, 9, 14))
    board = f.role("board_member", "Membre du comité directeur")
    f.mandate(member, board, region)
    ml = f.mailing_list("comite.provence", f.domain(structure=fed), region, name="Comité directeur — Provence")
    f.criterion(ml, region, [board])
    return member, ml


def log_in(page: Page, url: str, licence: str = "A-13-000001") -> None:
    log_in_with(page, url, licence, PASSWORD)
    expect(page.get_by_role("heading", level=1)).to_have_text("Mon espace")


def change_address(page: Page, new: str) -> None:
    page.get_by_role("link", name="Modifier l’adresse e-mail").click()
    page.get_by_label("Nouvelle adresse e-mail").fill(new)
    page.get_by_role("button", name="Envoyer le lien de confirmation").click()
    expect(page.locator(".flash")).to_contain_text("Un lien de confirmation vient d’être envoyé")


def mailed_link(settings, to: str) -> str:
    mails = [m for m in read_captured(settings.capture_dir) if m["To"] == to]
    assert mails, f"no mail to {to}"
    return re.search(r"https://listes\.example\.fr(/\S+)", mails[-1].get_content()).group(1)


@pytest.fixture
def settings(settings):
    return dataclasses.replace(settings, propagation_delay=timedelta(hours=72))


def test_pencil_confirmation_and_the_effective_date(page: Page, live_server, member_and_list):
    with clock.frozen(T0):
        log_in(page, live_server.url)
        expect(page.locator("#adresse-actuelle")).to_have_text("elodie@example.org")
        change_address(page, "elodie.nouvelle@example.org")
        page.goto(live_server.url + mailed_link(live_server.settings, "elodie.nouvelle@example.org"))
        page.get_by_role("button", name="Confirmer cette adresse").click()
        pending = page.locator(".pending")
        expect(pending).to_contain_text("elodie.nouvelle@example.org")
        expect(pending).to_contain_text("Prise en compte par les listes le 26 novembre 2026 à 14 h 00")
        expect(page.locator("#adresse-actuelle")).to_have_text("elodie@example.org")


def test_the_pencil_works_from_the_keyboard(page: Page, live_server, member_and_list):
    log_in(page, live_server.url)
    page.get_by_role("link", name="Modifier l’adresse e-mail").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Changer mon adresse e-mail")
    assert page.url.endswith("/espace/adresse")  # no stray "?"


def test_cancel_from_the_old_address_link(page: Page, live_server, member_and_list):
    member, _ml = member_and_list
    log_in(page, live_server.url)
    change_address(page, "pirate@example.org")
    page.goto(live_server.url + mailed_link(live_server.settings, "elodie@example.org"))
    page.get_by_role("button", name="Ce n’était pas moi : annuler le changement").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Changement annulé")
    page.goto(live_server.url + mailed_link(live_server.settings, "pirate@example.org"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Ce lien ne peut pas servir")
    expect(page.locator("main")).to_contain_text("a été annulé")
    assert Member.get_by_id(member.id).email == "elodie@example.org"


def test_wrong_and_expired_links_show_a_clear_page(page: Page, live_server, member_and_list):
    page.goto(live_server.url + "/espace/adresse/confirmer/pas-un-vrai-jeton")
    expect(page.get_by_role("heading", level=1)).to_have_text("Ce lien ne peut pas servir")
    expect(page.locator("main")).to_contain_text("incorrect ou incomplet")
    with clock.frozen(T0) as advance:
        log_in(page, live_server.url)
        change_address(page, "tardive@example.org")
        advance(timedelta(days=3))
        page.goto(live_server.url + mailed_link(live_server.settings, "tardive@example.org"))
        expect(page.get_by_role("heading", level=1)).to_have_text("Ce lien ne peut pas servir")
        expect(page.locator("main")).to_contain_text("a expiré")


def test_leave_and_rejoin_from_mes_listes(page: Page, live_server, member_and_list):
    log_in(page, live_server.url)
    page.get_by_role("button", name="Quitter la liste Comité directeur — Provence").click()
    expect(page.locator("#listes")).to_contain_text("Vous l’avez quittée le")
    page.get_by_role("button", name="Rejoindre la liste Comité directeur — Provence").click()
    expect(page.get_by_role("button", name="Quitter la liste Comité directeur — Provence")).to_be_visible()


class TestWithoutDelay:
    @pytest.fixture
    def settings(self, settings):
        return dataclasses.replace(settings, propagation_delay=timedelta(0))

    def test_the_engine_uses_the_new_address_at_once(self, page: Page, live_server, member_and_list):
        _member, ml = member_and_list
        log_in(page, live_server.url)
        change_address(page, "elodie.tout-de-suite@example.org")
        page.goto(live_server.url + mailed_link(live_server.settings, "elodie.tout-de-suite@example.org"))
        page.get_by_role("button", name="Confirmer cette adresse").click()
        expect(page.locator("#adresse-actuelle")).to_have_text("elodie.tout-de-suite@example.org")
        assert [r.address for batch in resolve(ml) for r in batch] == ["elodie.tout-de-suite@example.org"]
