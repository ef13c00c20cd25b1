"""axe-core's WCAG 2.2 AA rules on the pages people use most: the login page, Mon espace, the unsubscribe pages,
the lists page, a list's settings, criteria and subscribers pages, and the messages page. Any violation fails."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from engine import clock, demo, tokens
from engine.directory.models import Member
from engine.lists.models import MailingList
from engine.posting.models import Message, MessageState
from tests import factories as f
from tests.e2e.axe import assert_no_violations

pytestmark = pytest.mark.browser



@pytest.fixture
def federation(settings, db):
    f.cheap_password_hashing()
    demo.build(settings, members=300)
    ml = MailingList.get(MailingList.local_part == "comite_directeur.comite")
    Message.create(mailing_list=ml, author="inconnu@example.org", envelope_sender="inconnu@example.org",
                   subject="Sortie du dimanche", content=b"From: inconnu@example.org\r\nSubject: Sortie\r\n\r\nBonjour\r\n",
                   size=60, state=MessageState.HELD, reason="sender not allowed to post: held for moderation",
                   received_at=clock.now())
    return settings


def log_in(page: Page, url: str, licence: str) -> None:
    page.goto(url + "/login")
    page.get_by_label("Numéro de licence ou adresse e-mail").fill(licence)
    page.get_by_label("Mot de passe").fill(demo.DEMO_PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Mon espace")


@pytest.mark.parametrize("language", ["fr", "en"])
def test_member_pages(federation, live_server, page: Page, language):
    page.goto(f"{live_server.url}/login?lang={language}")
    assert_no_violations(page, "the login page")
    page.goto(f"{live_server.url}/login?lang=fr")
    log_in(page, live_server.url, demo.MEMBER_LICENCE)
    page.goto(f"{live_server.url}/espace/?lang={language}")
    assert_no_violations(page, "Mon espace")
    page.goto(f"{live_server.url}/espace/adresse")
    assert_no_violations(page, "the pencil's form")


def test_unsubscribe_pages(federation, live_server, page: Page):
    member = Member.get(Member.licence_number == demo.MEMBER_LICENCE)
    ml = MailingList.get(MailingList.local_part == "comite_directeur.comite")
    url = tokens.unsubscribe_url(live_server.settings, ml.id, (member.id,))
    page.goto(url.replace(live_server.settings.base_url, live_server.url))
    assert_no_violations(page, "the unsubscribe confirmation page")
    page.get_by_role("button", name="Confirmer le désabonnement").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Désabonnement enregistré")
    assert_no_violations(page, "the unsubscribed page")
    page.get_by_role("button", name="Me réabonner").click()
    assert_no_violations(page, "the rejoined page")
    page.goto(live_server.url + "/u/not-a-token")
    assert_no_violations(page, "the invalid-link page")


def test_staff_pages(federation, live_server, page: Page):
    ml = MailingList.get(MailingList.local_part == "comite_directeur.comite")
    static = MailingList.get(MailingList.local_part == "invites.ag2026")
    log_in(page, live_server.url, demo.ADMIN_LICENCE)
    for path, what in (("/admin/", "the lists page"), (f"/admin/lists/{ml.id}", "a list's settings"),
                       (f"/admin/lists/{ml.id}/criteria", "a list's criteria"),
                       (f"/admin/lists/{static.id}/subscribers", "a list's subscribers"),
                       ("/admin/messages/", "the messages page"), ("/admin/lists/new", "the creation form"),
                       ("/admin/domains", "the domains page"), ("/admin/audit", "the journal")):
        page.goto(live_server.url + path)
        assert_no_violations(page, what)


def test_error_page(federation, live_server, page: Page):
    page.goto(live_server.url + "/pas-de-page")
    assert_no_violations(page, "the 404 page")


CONTRAST = """([a, b]) => {
  const rgb = s => s.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number);
  const lum = c => { const v = rgb(c).map(x => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; });
                     return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
  const [l1, l2] = [lum(a), lum(b)].sort((x, y) => y - x);
  return (l1 + 0.05) / (l2 + 0.05);
}"""
BACKGROUND = """el => { let n = el.parentElement; while (n) { const c = getComputedStyle(n).backgroundColor;
  if (c && c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent') return c; n = n.parentElement; } return 'rgb(255, 255, 255)'; }"""


def contrast(page: Page, a: str, b: str) -> float:
    return float(page.evaluate(CONTRAST, [a, b]))


def test_focus_ring_and_field_borders_reach_3_to_1(live_server, page: Page):
    """WCAG 2.2 1.4.11 and 2.4.13 (axe does not measure them): the ring of the focused control and the borders of
    fields against what surrounds them, on a card and in the blue header."""
    page.goto(live_server.url + "/")
    page.keyboard.press("Tab")  # the skip link comes first, and leads to the content
    skip = page.get_by_role("link", name="Aller au contenu")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.get_by_role("main")).to_be_focused()
    page.goto(live_server.url + "/login")
    field = page.get_by_role("textbox", name="Numéro de licence ou adresse e-mail")
    field.focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # by keyboard: :focus-visible
    expect(field).to_be_focused()
    ring = field.evaluate("el => getComputedStyle(el).outlineColor")
    around = field.evaluate(BACKGROUND)
    assert field.evaluate("el => getComputedStyle(el).outlineStyle") == "solid"
    assert contrast(page, ring, around) >= 3, (ring, around)
    border = page.get_by_role("textbox", name="Mot de passe").evaluate("el => getComputedStyle(el).borderTopColor")
    assert contrast(page, border, around) >= 3, (border, around)
    brand = page.get_by_role("banner").get_by_role("link", name="Palanquée")
    brand.focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    expect(brand).to_be_focused()
    ring, header = brand.evaluate("el => getComputedStyle(el).outlineColor"), brand.evaluate(BACKGROUND)
    assert contrast(page, ring, header) >= 3, (ring, header)
