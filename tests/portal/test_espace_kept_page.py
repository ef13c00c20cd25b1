"""Mon espace's whole page kept per value of what it shows (portal/espace/page.py, issue 14): seen again, it is not
rendered again, yet it follows every change it shows (the pencil and the change's dates, the address applied, the
bounce warning, roles, lists, opt-outs, staff links, the language), each member sees only their own page, and the
CSRF token spliced into it is the session's own and still checked."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from flask import template_rendered

from engine import clock
from engine.directory import email_change
from engine.directory.models import StaffScope, Structure
from engine.lists.models import OptOut
from tests import factories as f
from tests.portal import test_espace
from tests.portal.test_espace import link, log_in, make_client, post
from tests.portal.test_espace_bounces import WARNING, disable

elodie = test_espace.elodie  # the fixture: a member on a role-based list
delayed = test_espace.delayed
T0 = datetime(2026, 11, 23, 13, 0)  # 14 h 00 in Paris
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def rendered() -> Iterator[list[str]]:
    """The names of the templates rendered, as Flask signals them."""
    names: list[str] = []

    def record(sender: Any, template: Any, context: Any, **extra: Any) -> None:
        names.append(template.name)

    template_rendered.connect(record)
    yield names
    template_rendered.disconnect(record)


def page(client: Any) -> str:
    answer = client.get("/espace/")
    assert answer.status_code == 200
    return str(answer.get_data(as_text=True))


def tokens(html: str) -> set[str]:
    return set(TOKEN.findall(html))


def test_a_page_seen_again_is_not_rendered_again_and_each_member_sees_their_own(settings, elodie, rendered):
    member, _ml = elodie
    other = f.member_with_password(first_name="Bruno", last_name="Autre", email="bruno@example.org",
                                   club=member.club, licence_number="B-13-000002")
    client, second = make_client(settings), make_client(settings)
    log_in(client, member)
    log_in(second, other)
    first = page(client)
    assert "espace/index.html" in rendered
    rendered.clear()
    again = page(client)
    assert "espace/index.html" not in rendered and again == first  # kept, token included
    theirs = page(second)
    assert "Bruno" in theirs and "bruno@example.org" in theirs
    assert "Élodie" not in theirs and "elodie@example.org" not in theirs
    assert len(tokens(first)) == 1 and len(tokens(theirs)) == 1 and tokens(first) != tokens(theirs)


def test_the_kept_token_is_the_sessions_own_and_still_checked(settings, elodie):
    member, ml = elodie
    client, thief = make_client(settings), make_client(settings)
    log_in(client, member)
    log_in(thief, member)  # the same member in another browser: another session, another token
    mine, theirs = tokens(page(client)), tokens(page(thief))
    assert mine == tokens(page(client)) and mine != theirs
    assert client.post(f"/espace/listes/{ml.id}/quitter", data={"csrf_token": theirs.pop()}).status_code == 400
    assert OptOut.select().count() == 0
    answer = client.post(f"/espace/listes/{ml.id}/quitter", data={"csrf_token": mine.pop()})
    assert answer.status_code == 302 and OptOut.select().count() == 1


def test_the_kept_page_follows_the_pencil_its_dates_and_the_address_applied(delayed, elodie):
    member, _ml = elodie
    client = make_client(delayed)
    log_in(client, member)
    with clock.frozen(T0) as advance:
        assert "Nouvelle adresse" not in page(client)
        post(client, "/espace/adresse", "/espace/adresse", email="elodie.new@example.org")
        shown = page(client)  # with the flashed message: shown once
        assert "Un lien de confirmation vient d’être envoyé" in shown and "En attente de confirmation" in shown
        again = page(client)
        assert "Un lien de confirmation" not in again and "En attente de confirmation" in again
        confirm = link(delayed, "elodie.new@example.org")
        post(client, confirm, confirm)
        page(client)  # its flashed message
        assert "Prise en compte par les listes le 26 novembre 2026 à 14 h 00" in page(client)
        advance(timedelta(hours=72))
        assert email_change.apply_due_changes() == 1
        shown = page(client)
    assert "Prise en compte" not in shown and "Nouvelle adresse" not in shown
    assert re.search(r'id="adresse-actuelle">elodie\.new@example\.org<', shown)


def test_the_kept_page_follows_the_bounce_warning(settings, elodie):
    member, _ml = elodie
    client = make_client(settings)
    log_in(client, member)
    assert WARNING not in page(client)
    disable(settings)
    assert WARNING in page(client)


def test_the_kept_page_follows_roles_lists_opt_outs_staff_links_and_the_language(settings, elodie):
    member, ml = elodie
    client = make_client(settings)
    log_in(client, member)
    before = page(client)
    assert "Moniteur" not in before and "Club — sorties" not in before and 'href="/admin/"' not in before
    f.mandate(member, f.role("instructor", "Moniteur", category="teaching"), member.club, starts_on=date(2025, 1, 1))
    assert "Moniteur" in page(client)
    club_list = f.mailing_list("sorties", ml.domain, member.club, name="Club — sorties")
    f.criterion(club_list, member.club, [])
    assert "Club — sorties" in page(client)
    post(client, f"/espace/listes/{club_list.id}/quitter")
    page(client)  # the confirmation, in the list's row
    assert 'aria-label="Rejoindre la liste Club — sorties"' in page(client)
    OptOut.delete().execute()  # removed elsewhere (staff, a rejoin link): the page follows
    assert 'aria-label="Quitter la liste Club — sorties"' in page(client)
    StaffScope.create(member=member, structure=Structure.get(Structure.depth == 0), granted_at=clock.now())
    assert 'href="/admin/"' in page(client)
    english = client.get("/espace/?lang=en").get_data(as_text=True)
    assert "My lists" in english and "Mes listes" not in english


def test_the_kept_pages_are_bounded(settings, elodie, rendered, monkeypatch):
    from portal.espace import page as kept

    member, _ml = elodie
    other = f.member_with_password(first_name="Bruno", club=member.club, licence_number="B-13-000002")
    client = make_client(settings)
    second = client.application.test_client()  # the same app: its kept pages
    log_in(client, member)
    log_in(second, other)
    monkeypatch.setattr(kept, "CHARACTERS_KEPT", 1)  # room for one page: the next one forgets it
    first = page(client)
    page(second)
    rendered.clear()
    assert page(client) == first and "espace/index.html" in rendered
