"""Finding 8: logging out revoked nothing; a remember-me cookie worked from anywhere until the password changed."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from engine import clock
from portal import create_app
from tests import factories as f
from tests.security.conftest import log_in, token_of

PASSWORD = "bonne-plongee-2026"
T0 = datetime(2026, 11, 23, 13, 0)


@pytest.fixture
def app(settings, db) -> Flask:  # type: ignore[no-untyped-def]
    f.cheap_password_hashing()
    return create_app(settings, config={"TESTING": True})


def cookie(client: FlaskClient, name: str) -> str:
    found = client.get_cookie(name)
    assert found is not None, name
    return found.value


def replay(app: Flask, **cookies: str) -> int:
    """A fresh browser holding only the copied cookies: the status of Mon espace (200 in, 302 out)."""
    thief = app.test_client()
    for name, value in cookies.items():
        thief.set_cookie(name, value)
    return int(thief.get("/espace/").status_code)


def log_out(client: FlaskClient) -> None:
    assert client.post("/logout", data={"csrf_token": token_of(client, "/espace/")}).status_code == 302


def test_finding8_a_session_cookie_copied_before_logout_is_dead_after_it(app):
    member = f.member_with_password()
    owner = app.test_client()
    log_in(owner, member.licence_number, PASSWORD)
    stolen = cookie(owner, "session")
    assert replay(app, session=stolen) == 200  # the copy works while the session lasts ...
    log_out(owner)
    assert replay(app, session=stolen) == 302  # ... and not after the owner logs out


def test_finding8_a_remember_cookie_copied_before_logout_is_dead_after_it(app):
    member = f.member_with_password()
    owner = app.test_client()
    response = log_in(owner, member.licence_number, PASSWORD, remember="y")
    assert any(c.startswith("remember_token=") for c in response.headers.getlist("Set-Cookie"))
    stolen = cookie(owner, "remember_token")
    assert replay(app, remember_token=stolen) == 200
    log_out(owner)
    assert owner.get_cookie("remember_token") is None  # the browser is told to drop it
    assert replay(app, remember_token=stolen) == 302


def test_finding8_remember_me_ends_on_the_server_after_its_lifetime(app, settings):
    member = f.member_with_password()
    with clock.frozen(T0) as advance:
        owner = app.test_client()
        log_in(owner, member.licence_number, PASSWORD, remember="y")
        stolen = cookie(owner, "remember_token")
        advance(settings.remember_max_age - timedelta(minutes=1))
        assert replay(app, remember_token=stolen) == 200
        advance(timedelta(minutes=2))
        assert replay(app, remember_token=stolen) == 302


def test_finding8_a_plain_session_ends_on_the_server_after_its_lifetime(app, settings):
    member = f.member_with_password()
    with clock.frozen(T0) as advance:
        owner = app.test_client()
        log_in(owner, member.licence_number, PASSWORD)
        assert owner.get("/espace/").status_code == 200
        advance(settings.session_max_age + timedelta(minutes=1))
        assert owner.get("/espace/").status_code == 302


def test_finding8_logging_out_on_one_device_keeps_the_others(app):
    member = f.member_with_password()
    phone, laptop = app.test_client(), app.test_client()
    log_in(phone, member.licence_number, PASSWORD)
    log_in(laptop, member.licence_number, PASSWORD)
    log_out(phone)
    assert phone.get("/espace/").status_code == 302 and laptop.get("/espace/").status_code == 200


def test_finding8_a_forged_or_old_style_session_identity_is_anonymous(app, settings):
    member = f.member_with_password()
    client = app.test_client()
    log_in(client, member.licence_number, PASSWORD)
    for identity in (f"{member.id}:{member.auth_version}", "forged-key", "x" * 500, ""):
        with client.session_transaction() as session:  # "id:auth_version" is what the cookie held before
            session["_user_id"] = identity
        assert client.get("/espace/").status_code == 302, identity
