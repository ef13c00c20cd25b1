"""Login, logout, rate limiting, sessions, `next`, forgotten password and activation, through the real app."""

from __future__ import annotations

import re

import pytest

from engine.directory import accounts
from engine.directory.models import Member
from engine.outbound.mail import read_captured
from portal import create_app
from portal.auth.views import is_local
from tests import factories as f
from tests.support.portal import csrf, submit_login

PASSWORD = "bonne-plongee-2026"


@pytest.fixture
def app(settings, db):
    f.cheap_password_hashing()
    return create_app(settings, config={"TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


login = submit_login  # the module's name for it


def test_login_by_licence_lands_on_mon_espace_and_home_redirects_there(client):
    member = f.member_with_password(first_name="Élodie")
    response = login(client, member.licence_number)
    assert response.status_code == 302 and response.headers["Location"] == "/espace/"
    assert "Élodie" in client.get("/espace/").get_data(as_text=True)
    assert client.get("/home").headers["Location"] == "/espace/"
    assert client.get("/login").headers["Location"] == "/espace/"


def test_login_by_an_address_one_member_uses(client):
    member = f.member_with_password(email="solo@example.org")
    assert login(client, "Solo@Example.org").headers["Location"] == "/espace/"
    assert member.licence_number in client.get("/espace/").get_data(as_text=True)


def test_a_shared_address_asks_for_the_licence_number_without_naming_anyone(client):
    a = f.member_with_password(email="famille@example.org", first_name="Aline", last_name="Dupuis")
    f.member_with_password(email="famille@example.org", first_name="Bruno", last_name="Dupuis")
    page = login(client, "famille@example.org").get_data(as_text=True)
    assert "saisissez votre numéro de licence" in page
    assert "Aline" not in page and "Bruno" not in page and "A-13" not in page
    assert login(client, a.licence_number).headers["Location"] == "/espace/"


def test_wrong_password_and_unknown_account_get_the_same_message(client):
    member = f.member_with_password()
    wrong = login(client, member.licence_number, "wrong-password")
    unknown = login(client, "Z-99-999999", "wrong-password")
    assert wrong.status_code == unknown.status_code == 200
    message = "Identifiant ou mot de passe incorrect."
    assert message in wrong.get_data(as_text=True) and message in unknown.get_data(as_text=True)
    assert client.get("/espace/").status_code == 302  # still anonymous


def test_login_rate_limiting_triggers_and_says_nothing_about_the_account(client):
    member = f.member_with_password()
    for _ in range(accounts.PAIR_LIMIT):
        assert login(client, member.licence_number, "wrong-password").status_code == 200
    blocked = login(client, member.licence_number)  # from this source, even the right password waits now
    assert blocked.status_code == 429 and "Trop de tentatives" in blocked.get_data(as_text=True)
    assert "Réessayez dans 15 minutes, à partir de" in blocked.get_data(as_text=True)  # when, not "a few minutes"
    assert blocked.headers["Retry-After"] == "900"
    for _ in range(accounts.PAIR_LIMIT):
        login(client, "Z-99-999999", "wrong-password")
    assert login(client, "Z-99-999999", "wrong-password").status_code == 429  # unknown: same behaviour


def test_login_rate_limiting_per_client_address(client):
    members = [f.member_with_password() for _ in range(accounts.ADDRESS_LIMIT // accounts.PAIR_LIMIT + 1)]
    for i in range(accounts.ADDRESS_LIMIT):
        login(client, members[i % len(members)].licence_number, "wrong-password")
    fresh = f.member_with_password()
    assert login(client, fresh.licence_number).status_code == 429


@pytest.mark.parametrize("target,expected", [
    ("/espace/#listes", "/espace/#listes"), ("https://evil.example/", "/espace/"), ("//evil.example", "/espace/"),
    ("/\\evil.example", "/espace/"), ("/\t/evil.example", "/espace/"), ("javascript:alert(1)", "/espace/"),
])
def test_next_redirects_only_to_local_paths(client, target, expected):
    member = f.member_with_password()
    from urllib.parse import quote

    response = login(client, member.licence_number, path="/login?next=" + quote(target, safe=""))
    assert response.headers["Location"] == expected


def test_is_local():
    assert is_local("/espace/") and not is_local("") and not is_local(None) and not is_local("///x")


def test_session_cookie_flags_remember_me_and_a_fresh_session_at_login(app, client):
    member = f.member_with_password()
    client.get("/login?lang=en")
    before = client.get_cookie("session").value
    response = login(client, member.licence_number, remember="y")
    cookies = response.headers.getlist("Set-Cookie")
    session_cookie = next(c for c in cookies if c.startswith("session="))
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie
    remember = next(c for c in cookies if c.startswith("remember_token="))
    assert "HttpOnly" in remember and "SameSite=Lax" in remember
    with client.session_transaction() as session:
        assert session["lang"] == "en"  # the language survives, nothing else from before login does
        assert session.get("_fresh") is True
    assert client.get_cookie("session").value != before
    secure = create_app(__import__("dataclasses").replace(app.extensions["palanquee.settings"],
                                                          secure_cookies=True), config={"TESTING": True})
    secure_client = secure.test_client()
    response = login(secure_client, member.licence_number)
    assert "Secure" in next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))


def test_remember_me_cookie_logs_back_in_until_the_password_changes(client):
    member = f.member_with_password()
    login(client, member.licence_number, remember="y")
    client.delete_cookie("session")
    assert client.get("/espace/").status_code == 200  # restored from the remember cookie
    Member.update(auth_version=Member.auth_version + 1).where(Member.id == member.id).execute()
    client.delete_cookie("session")
    assert client.get("/espace/").status_code == 302


def test_logout_is_a_post_and_ends_the_session(client):
    member = f.member_with_password()
    login(client, member.licence_number)
    assert client.get("/logout").status_code == 405
    token = csrf(client, "/espace/")
    assert client.post("/logout", data={"csrf_token": token}).headers["Location"] == "/login"
    assert client.get("/espace/").status_code == 302


def test_every_auth_form_rejects_a_missing_csrf_token(client):
    member = f.member_with_password(email="reset@example.org")
    assert client.post("/login", data={"identifier": member.licence_number, "password": PASSWORD}).status_code == 400
    assert client.post("/mot-de-passe-oublie", data={"identifier": member.licence_number}).status_code == 400
    assert client.post("/activation", data={"identifier": member.licence_number}).status_code == 400
    assert read_captured(client.application.extensions["palanquee.settings"].capture_dir) == []
    login(client, member.licence_number)
    assert client.post("/logout").status_code == 400
    assert client.get("/espace/").status_code == 200


def test_forgotten_password_by_mail_then_login_with_the_new_one(client, settings):
    member = f.member_with_password(email="reset@example.org")
    data = {"identifier": "reset@example.org", "csrf_token": csrf(client, "/mot-de-passe-oublie")}
    answer = client.post("/mot-de-passe-oublie", data=data, follow_redirects=True).get_data(as_text=True)
    unknown = {"identifier": "nobody@example.org", "csrf_token": csrf(client, "/mot-de-passe-oublie")}
    same = client.post("/mot-de-passe-oublie", data=unknown, follow_redirects=True).get_data(as_text=True)
    assert "Si ce compte existe" in answer and "Si ce compte existe" in same
    assert "Il est valable 2 heures." in answer  # what the mail says, not "peu de temps"
    [mail] = read_captured(settings.capture_dir)
    assert "valable 2 heures" in mail.get_content()
    path = re.search(r"https://listes\.example\.fr(/mot-de-passe/\S+)", mail.get_content()).group(1)
    form = {"password": "nouveau-mot-de-passe", "confirm": "autre-chose-encore", "csrf_token": csrf(client, path)}
    assert "Les deux mots de passe diffèrent" in client.post(path, data=form).get_data(as_text=True)
    form["confirm"] = form["password"]
    assert client.post(path, data=form).headers["Location"] == "/espace/"  # the link logs in
    assert member.licence_number in client.get("/espace/").get_data(as_text=True)
    client.post("/logout", data={"csrf_token": csrf(client, "/espace/")})
    assert login(client, member.licence_number, "nouveau-mot-de-passe").headers["Location"] == "/espace/"
    reused = client.get(path)
    assert reused.status_code == 410 and "déjà servi" in reused.get_data(as_text=True)
    assert client.get("/mot-de-passe/not-a-token").status_code == 404


def test_first_activation_for_an_imported_member(client, settings):
    member = f.member(email="nouveau@example.org")  # imported: no password
    data = {"identifier": member.licence_number, "csrf_token": csrf(client, "/activation")}
    client.post("/activation", data=data)
    [mail] = read_captured(settings.capture_dir)
    assert mail["Subject"] == "Activez votre compte Mon espace"
    path = re.search(r"https://listes\.example\.fr(/mot-de-passe/\S+)", mail.get_content()).group(1)
    form = {"password": "premier-mot-de-passe", "confirm": "premier-mot-de-passe", "csrf_token": csrf(client, path)}
    assert client.post(path, data=form).headers["Location"] == "/espace/"
    client.post("/logout", data={"csrf_token": csrf(client, "/espace/")})
    assert login(client, member.licence_number, "premier-mot-de-passe").headers["Location"] == "/espace/"


def test_the_login_page_speaks_english_on_request(client):
    page = client.get("/login", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Log in" in page and "Forgotten password?" in page


def test_wtforms_own_messages_follow_each_requests_language(client):
    """WTForms' built-in messages (its catalogue, parsed once per language) in the language of each request,
    French and English alternating on one client."""
    for language, message, other in (("fr", "Ce champ est requis.", "This field is required."),
                                     ("en", "This field is required.", "Ce champ est requis."),
                                     ("fr", "Ce champ est requis.", "This field is required.")):
        token = csrf(client, f"/login?lang={language}")
        page = client.post("/login", data={"identifier": "", "password": "", "csrf_token": token})
        text = page.get_data(as_text=True)
        assert page.status_code == 200 and text.count(message) == 2 and other not in text, text[:400]
