"""Error pages of our own: every error status answers in the user's language, inside the site's layout, with
a way on; 405 keeps its Allow header, 429 says when to try again, an expired form says nothing was saved."""

from __future__ import annotations

import re

import pytest
from werkzeug.exceptions import Conflict, Gone, RequestEntityTooLarge, TooManyRequests

from engine import demo
from portal import create_app
from tests import factories as f

FRENCH = {400: "Demande incorrecte", 403: "Accès refusé", 404: "Page introuvable",
          405: "Action impossible à cette adresse", 409: "Déjà fait", 410: "Plus disponible",
          413: "Envoi trop volumineux", 429: "Trop de demandes", 500: "Erreur du portail"}
ENGLISH = {400: "Bad request", 403: "Access refused", 404: "Page not found", 405: "Not possible at this address",
           409: "Already done", 410: "No longer available", 413: "Too large", 429: "Too many requests",
           500: "Portal error"}



@pytest.fixture
def app(settings, db):
    app = create_app(settings)  # not TESTING: a view that raises must answer 500, not propagate

    def raise_(error: Exception):  # type: ignore[no-untyped-def]
        def view():  # type: ignore[no-untyped-def]
            raise error
        return view

    for code, error in ((409, Conflict()), (410, Gone()), (413, RequestEntityTooLarge()),
                        (429, TooManyRequests(retry_after=900)), (500, RuntimeError("a bug"))):
        app.add_url_rule(f"/test-error/{code}", f"error_{code}", raise_(error))
    return app


def heading(html: str) -> str:
    return re.search(r"<h1[^>]*>(.*?)</h1>", html, re.S).group(1).strip()


def paths(app) -> dict[int, tuple[str, str]]:
    """(method, path) answering each status through the real app."""
    return {400: ("POST", "/espace/listes/1/quitter"), 404: ("GET", "/pas-de-page"), 405: ("POST", "/"),
            403: ("GET", "/admin/"), 409: ("GET", "/test-error/409"), 410: ("GET", "/test-error/410"),
            413: ("GET", "/test-error/413"), 429: ("GET", "/test-error/429"), 500: ("GET", "/test-error/500")}


def member_client(app, settings):
    f.cheap_password_hashing()
    member = f.member_with_password(licence_number="A-13-424242")
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    client.post("/login", data={"identifier": member.licence_number, "password": "bonne-plongee-2026",
                                "csrf_token": token})
    return client


@pytest.mark.parametrize("language", ["fr", "en"])
def test_every_error_answers_in_the_users_language_inside_the_layout(app, settings, language):
    client = member_client(app, settings)
    client.get(f"/?lang={language}")
    expected = FRENCH if language == "fr" else ENGLISH
    for code, (method, path) in paths(app).items():
        if code == 400:  # the CSRF of the leave button: an expired form
            continue
        response = client.open(path, method=method)
        html = response.get_data(as_text=True)
        assert response.status_code == code, (code, path)
        assert response.mimetype == "text/html"
        assert heading(html) == expected[code], (code, html[:300])
        assert f'<html lang="{language}">' in html and 'class="site-header"' in html  # the site's layout
        assert 'href="/espace/"' in html and 'href="/"' in html  # where to go next
        assert "Werkzeug" not in html and "The server" not in html and "Bad Request" not in html


def test_405_keeps_allow_and_429_says_when_to_try_again(app, settings):
    client = app.test_client()
    not_allowed = client.post("/")
    assert not_allowed.status_code == 405 and set(not_allowed.headers["Allow"].split(", ")) >= {"GET", "HEAD"}
    from engine import clock

    with clock.frozen(f.at(2026, 11, 26, 13)):
        busy = client.get("/test-error/429")
    assert busy.status_code == 429 and busy.headers["Retry-After"] == "900"
    assert "Réessayez dans 15 minutes, à partir de 26 novembre 2026 à 14 h 15." in busy.get_data(as_text=True)


def test_an_expired_form_says_nothing_was_saved_and_links_back_to_it(app, settings):
    client = app.test_client()
    response = client.post("/login", data={"identifier": "A-13-000001", "password": "x"})  # no session, no token
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and heading(html) == "Le formulaire a expiré"
    assert "Rien n’a été enregistré" in html and 'href="/login"' in html


def test_a_server_error_is_our_page_and_json_clients_get_json(app, settings, caplog):
    client = app.test_client()
    response = client.get("/test-error/500")
    assert response.status_code == 500 and heading(response.get_data(as_text=True)) == "Erreur du portail"
    assert "a bug" in caplog.text  # logged for the team, never shown
    assert "a bug" not in response.get_data(as_text=True)
    as_json = client.get("/pas-de-page", headers={"Accept": "application/json"})
    assert as_json.status_code == 404 and as_json.json["error"] == 404


def test_the_staff_403_of_a_list_outside_the_scope_is_our_page(settings, db):
    f.cheap_password_hashing()
    demo.build(settings, members=10)
    app = create_app(settings)
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    client.post("/login", data={"identifier": demo.MEMBER_LICENCE, "password": demo.DEMO_PASSWORD,
                                "csrf_token": token})
    response = client.get("/admin/")
    assert response.status_code == 403 and heading(response.get_data(as_text=True)) == "Accès refusé"
