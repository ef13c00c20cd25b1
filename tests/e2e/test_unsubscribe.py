"""The public unsubscribe page in headless Chromium: opening the link changes nothing, the button does."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from engine import tokens
from engine.directory.models import StructureKind
from engine.lists.models import OptOut
from tests import factories as f

pytestmark = pytest.mark.browser


def test_open_the_link_then_confirm_then_undo(page: Page, live_server, db):
    fed = f.structure("Fédération", StructureKind.FEDERATION)
    board = f.role("board_member", "Membre du comité directeur")
    member = f.member(email="lecteur@example.org", club=fed)
    f.mandate(member, board, fed)
    ml = f.mailing_list("bureau", f.domain(structure=fed), fed, name="Bureau fédéral")
    f.criterion(ml, fed, [board])
    url = tokens.unsubscribe_url(live_server.settings, ml.id, (member.id,))
    page.goto(url.replace(live_server.settings.base_url, live_server.url))
    expect(page.get_by_role("heading", level=1)).to_have_text("Se désabonner")
    expect(page.locator("main")).to_contain_text("Bureau fédéral")
    assert OptOut.select().count() == 0
    page.get_by_role("button", name="Confirmer le désabonnement").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Désabonnement enregistré")
    assert [(o.member_id, o.source) for o in OptOut.select()] == [(member.id, "footer")]
    page.get_by_role("button", name="Me réabonner").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Réabonnement enregistré")
    assert OptOut.select().count() == 0
