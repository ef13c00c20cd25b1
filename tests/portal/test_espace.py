"""Mon espace through the real app: the profile, the pencil and the address change, Mes listes, and isolation
between members (forged ids, replayed tokens, tokens of another key, missing CSRF tokens)."""

from __future__ import annotations

import dataclasses
import re
from datetime import date, datetime, timedelta

import pytest

from engine import clock
from engine.directory import email_change
from engine.directory.models import EmailChange, Member, StructureKind
from engine.lists.models import OptOut
from engine.lists.resolve import resolve
from engine.outbound.mail import read_captured
from portal import create_app
from tests import factories as f
from tests.support.portal import csrf, logged_in

PASSWORD = "bonne-plongee-2026"
T0 = datetime(2026, 11, 23, 13, 0)  # 14 h 00 in Paris


def make_client(settings):
    f.cheap_password_hashing()
    return create_app(settings, config={"TESTING": True}).test_client()


@pytest.fixture
def delayed(settings):
    return dataclasses.replace(settings, propagation_delay=timedelta(hours=72))


def log_in(client, member) -> None:
    logged_in(client, member.licence_number, PASSWORD)


def post(client, path: str, form_page: str = "/espace/", **data):
    return client.post(path, data={"csrf_token": csrf(client, form_page), **data})


def link(settings, to: str) -> str:
    mails = [m for m in read_captured(settings.capture_dir) if m["To"] == to]
    return re.search(r"https://listes\.example\.fr(/\S+)", mails[-1].get_content()).group(1)


@pytest.fixture
def elodie(db):
    fed = f.structure("Fédération", StructureKind.FEDERATION)
    region = f.structure("Comité régional Provence", StructureKind.REGIONAL, fed)
    codep = f.structure("Comité départemental 13", StructureKind.DEPARTMENTAL, region)
    club = f.structure("Club des Calanques", StructureKind.CLUB, codep)
    member = f.member_with_password(first_name="Élodie", last_name="Marchetti", email="elodie@example.org",
                                    club=club, licence_number="A-13-000001", valid_until=date(2027, 9, 14))
    board = f.role("board_member", "Membre du comité directeur", name_en="Board member")
    f.mandate(member, board, region, starts_on=date(2025, 3, 1))
    dom = f.domain(structure=fed)
    ml = f.mailing_list("comite.provence", dom, region, name="Comité directeur — Provence")
    f.criterion(ml, region, [board])
    return member, ml


def test_mon_espace_shows_the_profile_mandates_address_pencil_and_lists(settings, elodie):
    member, ml = elodie
    client = make_client(settings)
    assert client.get("/espace/").headers["Location"].startswith("/login?next=")
    log_in(client, member)
    with clock.frozen(T0):
        page = client.get("/espace/").get_data(as_text=True)
    for text in ("Élodie", "Marchetti", "A-13-000001", "Club des Calanques", "Comité départemental 13",
                 "saison 2026-2027, jusqu’au 14 septembre 2027", "Membre du comité directeur",
                 "depuis le 1 mars 2025", "elodie@example.org", "Comité directeur — Provence",
                 "Membre du comité directeur — Comité régional Provence"):
        assert text in page, text
    # the pencil leads to /espace/adresse itself (a GET form led to "/espace/adresse?")
    assert re.search(r'<a class="icon-button" href="/espace/adresse" aria-label="Modifier l’adresse e-mail"', page)
    assert "<svg" in page and 'aria-label="Quitter la liste Comité directeur — Provence"' in page


def test_a_lapsed_licence_says_so(settings, db):
    member = f.member_with_password(valid_until=date(2025, 9, 14))
    client = make_client(settings)
    log_in(client, member)
    with clock.frozen(T0):
        assert "non renouvelée" in client.get("/espace/").get_data(as_text=True)


def test_the_pencil_then_confirmation_then_the_effective_date_in_french(delayed, elodie):
    member, ml = elodie
    client = make_client(delayed)
    log_in(client, member)
    with clock.frozen(T0) as advance:
        assert "Nouvelle adresse e-mail" in client.get("/espace/adresse").get_data(as_text=True)
        response = post(client, "/espace/adresse", "/espace/adresse", email="Elodie.New@Example.org")
        assert response.headers["Location"] == "/espace/"
        assert Member.get_by_id(member.id).email == "elodie@example.org"
        confirm_path = link(delayed, "Elodie.New@example.org")
        assert client.get(confirm_path).status_code == 200  # shows a button, changes nothing
        assert EmailChange.get().verified_at is None
        assert post(client, confirm_path, confirm_path).headers["Location"] == "/espace/"
        page = client.get("/espace/").get_data(as_text=True)
        assert "Elodie.New@example.org" in page
        assert "Prise en compte par les listes le 26 novembre 2026 à 14 h 00" in page
        english = client.get("/espace/?lang=en").get_data(as_text=True)
        assert "Used by the lists from 26 November 2026 at 14:00" in english, re.findall(r"Used by[^<]*", english)
        client.get("/espace/?lang=fr")
        advance(timedelta(hours=72))
        assert email_change.apply_due_changes() == 1
        page = client.get("/espace/").get_data(as_text=True)
    assert "Prise en compte" not in page
    assert [r.address for batch in resolve(ml) for r in batch] == ["Elodie.New@example.org"]


def test_the_address_form_validates(settings, elodie):
    member, _ml = elodie
    client = make_client(settings)
    log_in(client, member)
    page = post(client, "/espace/adresse", "/espace/adresse", email="pas-une-adresse").get_data(as_text=True)
    assert "Cette adresse n’est pas valide." in page
    page = post(client, "/espace/adresse", "/espace/adresse", email="ELODIE@example.org").get_data(as_text=True)
    assert "C’est déjà l’adresse utilisée par les listes." in page
    assert EmailChange.select().count() == 0 and read_captured(settings.capture_dir) == []


def test_a_shared_family_address_is_accepted_without_naming_who_uses_it(settings, elodie):
    member, _ml = elodie
    f.member(first_name="Bruno", last_name="Secret", email="famille@example.org", licence_number="B-13-424242")
    client = make_client(settings)
    log_in(client, member)
    response = post(client, "/espace/adresse", "/espace/adresse", email="famille@example.org")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "famille@example.org" in page and "Bruno" not in page and "B-13-424242" not in page
    assert all("Bruno" not in m.get_content() for m in read_captured(settings.capture_dir))


def test_cancel_from_mon_espace(delayed, elodie):
    member, _ml = elodie
    client = make_client(delayed)
    log_in(client, member)
    post(client, "/espace/adresse", "/espace/adresse", email="new@example.org")
    assert post(client, "/espace/adresse/annulation").headers["Location"] == "/espace/"
    assert EmailChange.get().cancelled_at is not None
    assert client.get(link(delayed, "new@example.org")).status_code == 409  # its confirmation link is dead


def test_cancel_from_the_old_address_link_signs_out(delayed, elodie):
    member, _ml = elodie
    client = make_client(delayed)
    log_in(client, member)
    post(client, "/espace/adresse", "/espace/adresse", email="thief@example.org")
    stranger = make_client(delayed)  # the old mailbox's owner, not logged in
    cancel_path = link(delayed, "elodie@example.org")
    assert "Ce n’était pas moi" in stranger.get(cancel_path).get_data(as_text=True)
    assert EmailChange.get().cancelled_at is None
    assert "Changement annulé" in post(stranger, cancel_path, cancel_path).get_data(as_text=True)
    assert EmailChange.get().cancelled_at is not None
    assert client.get("/espace/").status_code == 302  # the session that asked is signed out


def test_wrong_expired_and_replayed_links_show_a_clear_page(delayed, elodie):
    member, _ml = elodie
    client = make_client(delayed)
    log_in(client, member)
    with clock.frozen(T0) as advance:
        post(client, "/espace/adresse", "/espace/adresse", email="new@example.org")
        confirm_path = link(delayed, "new@example.org")
        wrong = client.get("/espace/adresse/confirmer/not-a-real-token")
        assert wrong.status_code == 404 and "incorrect ou incomplet" in wrong.get_data(as_text=True)
        other_key = dataclasses.replace(delayed, secret_key="another-secret-key-entirely")
        foreign = email_change.confirm_url(other_key, EmailChange.get()).replace("https://listes.example.fr", "")
        assert client.get(foreign).status_code == 404
        post(client, confirm_path, confirm_path)
        replay = client.get(confirm_path)
        assert replay.status_code == 409 and "déjà servi" in replay.get_data(as_text=True)
        post(client, "/espace/adresse", "/espace/adresse", email="newer@example.org")
        late_path = link(delayed, "newer@example.org")
        advance(delayed.email_change_max_age + timedelta(minutes=1))
        late = client.get(late_path)
    assert late.status_code == 410 and "a expiré" in late.get_data(as_text=True)


def test_member_a_cannot_use_member_bs_links_or_lists(settings, elodie):
    member_b, ml = elodie
    member_a = f.member_with_password(email="a@example.org")
    client_b, client_a = make_client(settings), make_client(settings)
    log_in(client_b, member_b)
    post(client_b, "/espace/adresse", "/espace/adresse", email="b-new@example.org")
    confirm_path = link(settings, "b-new@example.org")
    cancel_path = link(settings, "elodie@example.org")
    log_in(client_a, member_a)
    page_a = client_a.get("/espace/").get_data(as_text=True)
    assert "Marchetti" not in page_a and "elodie@example.org" not in page_a and "b-new@example.org" not in page_a
    assert client_a.get(confirm_path).status_code == 403
    assert post(client_a, confirm_path, "/espace/").status_code == 403
    assert post(client_a, cancel_path, "/espace/").status_code == 403
    change = EmailChange.get()
    assert change.verified_at is None and change.cancelled_at is None
    # forged list ids: A is not on B's list, and a list that does not exist is the same answer
    assert post(client_a, f"/espace/listes/{ml.id}/quitter").status_code == 404
    assert post(client_a, f"/espace/listes/{ml.id}/rejoindre").status_code == 404
    assert post(client_a, "/espace/listes/999999/quitter").status_code == 404
    assert OptOut.select().count() == 0
    # A's own cancel button touches only A's (absent) change
    post(client_a, "/espace/adresse/annulation")
    assert EmailChange.get().cancelled_at is None


def test_leave_and_rejoin_a_role_based_list(settings, elodie):
    member, ml = elodie
    client = make_client(settings)
    log_in(client, member)
    assert post(client, f"/espace/listes/{ml.id}/quitter").headers["Location"] == f"/espace/#liste-{ml.id}"
    opt_out = OptOut.get()
    assert (opt_out.member_id, opt_out.source) == (member.id, "espace")
    assert [r for batch in resolve(ml) for r in batch] == []
    page = client.get("/espace/").get_data(as_text=True)
    assert "Vous l’avez quittée le" in page and "depuis Mon espace" in page
    # the confirmation sits in the list's own row (where the page lands), once
    row = re.search(rf'<li class="list-row list-left" id="liste-{ml.id}">(.*?)<button', page, re.S).group(1)
    assert '<p class="confirmation" role="status" tabindex="-1" id="confirmation" autofocus>Vous avez quitté la liste' in row
    assert "Vous avez quitté la liste" not in client.get("/espace/").get_data(as_text=True)
    assert 'aria-label="Rejoindre la liste Comité directeur — Provence"' in page
    assert post(client, f"/espace/listes/{ml.id}/rejoindre").status_code == 302
    assert OptOut.select().count() == 0
    assert [r.address for batch in resolve(ml) for r in batch] == ["elodie@example.org"]


def test_a_left_list_stays_visible_after_the_role_ends(settings, elodie):
    member, ml = elodie
    client = make_client(settings)
    log_in(client, member)
    post(client, f"/espace/listes/{ml.id}/quitter")
    member.mandates[0].delete_instance()
    page = client.get("/espace/").get_data(as_text=True)
    assert "Comité directeur — Provence" in page and "ne remplissez plus les conditions" in page


def test_every_espace_form_rejects_a_missing_csrf_token(settings, elodie):
    member, ml = elodie
    client = make_client(settings)
    log_in(client, member)
    assert client.post("/espace/adresse", data={"email": "new@example.org"}).status_code == 400
    assert EmailChange.select().count() == 0
    post(client, "/espace/adresse", "/espace/adresse", email="new@example.org")
    confirm_path, cancel_path = link(settings, "new@example.org"), link(settings, "elodie@example.org")
    assert client.post(confirm_path).status_code == 400
    assert client.post(cancel_path).status_code == 400
    assert client.post("/espace/adresse/annulation").status_code == 400
    assert client.post(f"/espace/listes/{ml.id}/quitter").status_code == 400
    assert client.post(f"/espace/listes/{ml.id}/rejoindre").status_code == 400
    change = EmailChange.get()
    assert change.verified_at is None and change.cancelled_at is None and OptOut.select().count() == 0
