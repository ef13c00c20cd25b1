"""Finding 11 (portal half): the pencil of Mon espace mailed a confirmation link to any address, without limit."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from engine import clock
from engine.directory import throttle
from engine.outbound.mail import read_captured
from portal import create_app
from tests import factories as f
from tests.security.conftest import log_in, token_of

PASSWORD = "bonne-plongee-2026"
T0 = datetime(2026, 11, 23, 9, 0)
VICTIM = "victime@example.net"


@pytest.fixture
def app(settings, db) -> Flask:  # type: ignore[no-untyped-def]
    f.cheap_password_hashing()
    return create_app(settings, config={"TESTING": True})


def member_client(app: Flask, ip: str = "127.0.0.1") -> FlaskClient:
    member = f.member_with_password()
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    assert log_in(client, member.licence_number, PASSWORD).status_code == 302
    return client


def ask(client: FlaskClient, address: str) -> int:
    return int(client.post("/espace/adresse", data={"email": address,
                                                     "csrf_token": token_of(client, "/espace/adresse")}).status_code)


def mails_to(app: Flask, address: str) -> int:
    return sum(1 for m in read_captured(app.extensions["palanquee.settings"].capture_dir) if m["To"] == address)


def test_finding11_twenty_requests_for_one_address_mail_it_three_times_at_most(app):
    with clock.frozen(T0):
        client = member_client(app)
        answers = [ask(client, VICTIM) for _ in range(20)]
        others = [ask(member_client(app, f"198.51.100.{n}"), VICTIM) for n in range(3)]  # other members too
        page = client.post("/espace/adresse", data={"email": VICTIM,
                                                    "csrf_token": token_of(client, "/espace/adresse")})
    limit = throttle.ADDRESS_CHANGE_TARGET.limit
    assert mails_to(app, VICTIM) == limit == answers.count(302)
    assert set(answers[limit:]) == {429} and others == [429, 429, 429]
    assert "réessayez demain" in page.get_data(as_text=True)


def test_finding11_one_member_cannot_mail_many_addresses(app):
    with clock.frozen(T0):
        client = member_client(app)
        answers = [ask(client, f"cible{n}@example.net") for n in range(8)]
    limit = throttle.ADDRESS_CHANGE_MEMBER.limit
    assert answers == [302] * limit + [429] * (8 - limit)
    assert sum(mails_to(app, f"cible{n}@example.net") for n in range(8)) == limit


def test_finding11_many_accounts_from_one_client_address_are_limited_too(app):
    with clock.frozen(T0):
        answers = [ask(member_client(app, "203.0.113.5"), f"cible{n}@example.net")
                   for n in range(throttle.ADDRESS_CHANGE_ADDRESS.limit + 2)]
    assert answers.count(429) == 2 and answers[-1] == 429


def test_finding11_the_limits_are_per_day(app):
    with clock.frozen(T0) as advance:
        client = member_client(app)
        for _ in range(3):
            ask(client, VICTIM)
        assert ask(client, VICTIM) == 429
        advance(timedelta(days=1, minutes=1))
        assert ask(member_client(app), VICTIM) == 302
    assert mails_to(app, VICTIM) == 4
