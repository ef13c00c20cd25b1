"""Mon espace in headless Chromium when the member's address bounces: real-shaped DSNs go through the engine's
bounce handling (engine/bounces/service.py), then the member sees the warning beside the address with the
pencil, asks for a test message and opens its link, and the warning is gone."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from engine import clock
from engine.bounces import service
from engine.outbound.models import Delivery
from engine.posting.models import Message, MessageState
from tests.e2e import test_espace
from tests.e2e.test_espace import log_in, mailed_link

pytestmark = pytest.mark.browser
member_and_list = test_espace.member_and_list  # the fixture: Élodie on the Provence board's list

DSN = Path(__file__).resolve().parent.parent / "data" / "dsn"
T0 = datetime(2026, 11, 23, 13, 0)
WARNING = "Vos messages ne sont plus distribués : votre adresse renvoie des erreurs."



def bounce_five_days(settings, ml, address: str) -> None:  # type: ignore[no-untyped-def]
    data = (DSN / "postfix-5.1.1-orange.eml").read_bytes().replace(b"jm.roux@orange.fr", address.encode())
    with clock.frozen(T0) as advance:
        message = Message.create(mailing_list=ml, content=b"Subject: x\r\n\r\nx\r\n", size=10, state=MessageState.DONE,
                                 received_at=clock.now(), recipient_count=1)
        copy = Delivery.create(message=message, address=address, state="sent", next_attempt_at=clock.now(),
                               updated_at=clock.now())
        for _ in range(5):
            service.receive(settings, ml.id, copy.id, data)
            advance(timedelta(days=1))


def test_the_warning_and_the_pencil_then_the_test_message(page: Page, live_server, member_and_list) -> None:  # type: ignore[no-untyped-def]
    _member, ml = member_and_list
    bounce_five_days(live_server.settings, ml, "elodie@example.org")
    log_in(page, live_server.url)
    warning = page.get_by_role("alert")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text(WARNING)
    pencil = page.get_by_role("link", name="Modifier l’adresse e-mail")
    expect(pencil).to_be_visible()
    # beside the address: the pencil on the address line, the warning right under it
    address_box = page.locator("#adresse-actuelle").bounding_box()
    pencil_box, warning_box = pencil.bounding_box(), warning.bounding_box()
    assert address_box and pencil_box and warning_box
    assert abs(pencil_box["y"] - address_box["y"]) < 30 and 0 <= warning_box["y"] - address_box["y"] < 150
    page.get_by_role("button", name="M’envoyer un message de test").click()
    expect(page.locator(".flash")).to_contain_text("Un message de test vient d’être envoyé")
    page.goto(live_server.url + mailed_link(live_server.settings, "elodie@example.org"))
    page.get_by_role("button", name="Recevoir à nouveau les messages").click()
    expect(page.locator(".flash")).to_contain_text("Votre adresse reçoit à nouveau les messages des listes.")
    expect(page.get_by_role("alert")).to_have_count(0)


def test_the_pencil_from_the_warning_leads_to_the_address_form(page: Page, live_server, member_and_list) -> None:  # type: ignore[no-untyped-def]
    _member, ml = member_and_list
    bounce_five_days(live_server.settings, ml, "elodie@example.org")
    log_in(page, live_server.url)
    expect(page.get_by_role("alert")).to_contain_text("renvoie des erreurs")
    page.get_by_role("link", name="Modifier l’adresse e-mail").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Changer mon adresse e-mail")


def test_the_bounce_pages_pass_axe(page: Page, live_server, member_and_list) -> None:  # type: ignore[no-untyped-def]
    from engine.directory.models import StaffScope, Structure
    from tests.e2e.axe import assert_no_violations

    member, ml = member_and_list
    StaffScope.create(member=member, structure=Structure.get(Structure.parent.is_null()), granted_at=clock.now())
    bounce_five_days(live_server.settings, ml, "elodie@example.org")
    log_in(page, live_server.url)
    expect(page.get_by_role("alert")).to_be_visible()
    assert_no_violations(page, "Mon espace with the bounce warning")
    page.get_by_role("button", name="M’envoyer un message de test").click()
    page.goto(live_server.url + mailed_link(live_server.settings, "elodie@example.org"))
    assert_no_violations(page, "the test message's page")
    page.goto(f"{live_server.url}/admin/messages/listes/{ml.id}")
    expect(page.get_by_role("heading", name="Adresses en erreur")).to_be_visible()
    assert_no_violations(page, "a list's statistics")
    page.goto(f"{live_server.url}/admin/messages/{Message.get().id}")
    assert_no_violations(page, "a message's statistics")
