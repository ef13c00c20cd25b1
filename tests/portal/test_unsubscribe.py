"""Public unsubscribe pages: GET changes nothing, the button and the RFC 8058 one-click POST unsubscribe,
a family token opts out everyone it names, tokens survive address changes and refuse other keys."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta

import pytest
from itsdangerous import URLSafeSerializer

from engine import clock, tokens
from engine.audit import AuditEvent
from engine.directory import email_change
from engine.directory.models import StructureKind
from engine.lists.models import OptOut, Subscription
from engine.lists.resolve import resolve
from portal import create_app
from tests import factories as f


@pytest.fixture
def client(settings, db):
    return create_app(settings, config={"TESTING": True}).test_client()


@pytest.fixture
def family(db):
    """Two members sharing one address, both on a role-based list; a third member on it alone."""
    fed = f.structure("Fédération", StructureKind.FEDERATION)
    club = f.structure("Club des Calanques", StructureKind.CLUB, fed)
    board = f.role("board_member", "Membre du comité directeur")
    a = f.member(email="famille@example.org", club=club)
    b = f.member(email="Famille@example.org", club=club)
    c = f.member(email="seul@example.org", club=club)
    for m in (a, b, c):
        f.mandate(m, board, club)
    ml = f.mailing_list("cd.club", f.domain(structure=fed), club, name="Comité directeur du club")
    f.criterion(ml, club, [board])
    return ml, a, b, c


def addresses(ml) -> list[str]:
    return [r.email_key for batch in resolve(ml) for r in batch]


def path_for(settings, ml, *member_ids, email_key=None) -> str:
    return tokens.unsubscribe_url(settings, ml.id, member_ids, email_key).replace(settings.base_url, "")


def form_token(client, path: str) -> str:
    """The hidden field of the page's one button (no session: any client may read it and use it)."""
    return re.search(r'name="form_token" value="([^"]+)"', client.get(path).get_data(as_text=True)).group(1)


def csrf(client, path: str) -> dict[str, str]:
    return {"form_token": form_token(client, path)}


def test_get_shows_the_list_and_a_button_and_changes_nothing(client, settings, family):
    ml, a, b, _c = family
    path = path_for(settings, ml, a.id, b.id)
    for _ in range(3):  # a mail scanner following the link, several times
        response = client.get(path)
        assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Comité directeur du club" in page and "Confirmer le désabonnement" in page
    assert a.last_name not in page and "famille@example.org" not in page  # a forwarded mail leaks nobody
    assert OptOut.select().count() == 0
    assert addresses(ml) == ["famille@example.org", "seul@example.org"]


def test_the_confirm_button_unsubscribes_the_whole_family_once(client, settings, family):
    ml, a, b, _c = family
    path = path_for(settings, ml, a.id, b.id)
    page = client.post(path, data=csrf(client, path)).get_data(as_text=True)
    assert "Désabonnement enregistré" in page and "Me réabonner" in page
    assert {(o.member_id, o.source) for o in OptOut.select()} == {(a.id, "footer"), (b.id, "footer")}
    assert addresses(ml) == ["seul@example.org"]
    client.post(path, data=csrf(client, path))  # idempotent
    assert OptOut.select().count() == 2
    assert "déjà désabonné" in client.get(path).get_data(as_text=True)
    assert AuditEvent.select().where(AuditEvent.action == "list.left").count() == 2


def test_the_confirm_button_works_without_any_cookie(settings, family):
    """A tab restored after a browser restart, a mail app that blocks cookies: the link's token is the proof."""
    ml, a, _b, _c = family
    path = path_for(settings, ml, a.id)
    reader = create_app(settings, config={"TESTING": True}).test_client(use_cookies=False)
    page = reader.get(path)
    assert "Set-Cookie" not in page.headers  # the page needs no session
    token = re.search(r'name="form_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    response = reader.post(path, data={"form_token": token})
    assert response.status_code == 200 and "Désabonnement enregistré" in response.get_data(as_text=True)
    assert [(o.member_id, o.source) for o in OptOut.select()] == [(a.id, "footer")]
    token = re.search(r'name="form_token" value="([^"]+)"', response.get_data(as_text=True)).group(1)
    again = reader.post(path + "/reabonnement", data={"form_token": token})
    assert "Réabonnement enregistré" in again.get_data(as_text=True) and OptOut.select().count() == 0


def test_a_missing_forged_or_stale_form_token_shows_the_page_again_with_a_fresh_one(client, settings, family):
    ml, a, b, _c = family
    path, other = path_for(settings, ml, a.id), path_for(settings, ml, b.id)
    with clock.frozen(clock.now()) as advance:
        stale = form_token(client, path)
        advance(timedelta(days=1, minutes=1))
        for data in ({}, {"form_token": "forged"}, {"form_token": stale}, {"form_token": form_token(client, other)},
                     {"csrf_token": "a leftover of the old form"}):
            response = client.post(path, data=data)
            page = response.get_data(as_text=True)
            assert response.status_code == 200, data
            assert "Confirmez de nouveau" in page and "Confirmer le désabonnement" in page
            fresh = re.search(r'name="form_token" value="([^"]+)"', page).group(1)
            assert fresh != stale
        assert OptOut.select().count() == 0
        rejoin = client.post(path + "/reabonnement", data={"form_token": form_token(client, path)})  # a leave token
        assert "Confirmez de nouveau" in rejoin.get_data(as_text=True)
        assert "Désabonnement enregistré" in client.post(path, data={"form_token": fresh}).get_data(as_text=True)
    assert [o.member_id for o in OptOut.select()] == [a.id]


def test_one_click_post_unsubscribes_at_once_without_cookie_or_csrf(settings, family):
    ml, _a, _b, c = family
    client = create_app(settings, config={"TESTING": True}).test_client(use_cookies=False)
    response = client.post(path_for(settings, ml, c.id), data="List-Unsubscribe=One-Click",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert [(o.member_id, o.source) for o in OptOut.select()] == [(c.id, "one-click")]
    assert addresses(ml) == ["famille@example.org"]
    again = client.post(path_for(settings, ml, c.id), data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200 and OptOut.select().count() == 1


def test_one_click_with_a_bad_token_is_refused(settings, family):
    ml, _a, _b, c = family
    client = create_app(settings, config={"TESTING": True}).test_client(use_cookies=False)
    other = dataclasses.replace(settings, secret_key="another-secret-key-entirely")
    forged_purpose = URLSafeSerializer(settings.secret_key, salt=tokens.Purpose.EMAIL_CONFIRM).dumps([ml.id, [c.id]])
    for path in (path_for(other, ml, c.id), f"/u/{forged_purpose}", "/u/garbage",
                 path_for(settings, ml, c.id)[:-4] + "AAAA", path_for(settings, type(ml)(id=999999), c.id)):
        response = client.post(path, data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 404, path
    assert OptOut.select().count() == 0


def test_bad_links_show_a_clear_page(client, settings, family):
    ml, _a, _b, c = family
    other = dataclasses.replace(settings, secret_key="another-secret-key-entirely")
    for path in ("/u/garbage", path_for(other, ml, c.id)):
        response = client.get(path)
        assert response.status_code == 404
        assert "ne peut pas servir" in response.get_data(as_text=True)


def test_the_token_keeps_working_after_an_address_change(client, settings, family):
    ml, _a, _b, c = family
    path = path_for(settings, ml, c.id)
    email_change.request_change(settings, c, "nouvelle@example.org")
    change = email_change.pending_change(settings, c)
    email_change.confirm(settings, email_change.confirm_url(settings, change).rsplit("/", 1)[1])
    assert "nouvelle@example.org" in addresses(ml)
    client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert addresses(ml) == ["famille@example.org"]


def test_a_bare_address_token_and_rejoin_from_the_done_page(client, settings, db):
    fed = f.structure("Fédération", StructureKind.FEDERATION)
    guests = f.mailing_list("invites", f.domain(structure=fed), name="Invités de l'AG", kind="static")
    Subscription.create(mailing_list=guests, email="presse@ville.fr", email_key="presse@ville.fr",
                        created_at=clock.now())
    path = path_for(settings, guests, email_key="presse@ville.fr")
    client.post(path, data=csrf(client, path))
    assert [(o.email_key, o.source) for o in OptOut.select()] == [("presse@ville.fr", "footer")]
    assert addresses(guests) == []
    page = client.post(path + "/reabonnement", data=csrf(client, path)).get_data(as_text=True)
    assert "Réabonnement enregistré" in page
    assert addresses(guests) == ["presse@ville.fr"]
