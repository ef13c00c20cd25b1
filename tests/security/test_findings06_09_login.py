"""Findings 6, 7 and 9: login throttling raced, locked the owner out, and skipped shared family addresses."""

from __future__ import annotations

import re
import threading

import pytest
from argon2 import PasswordHasher, profiles
from flask import Flask

from engine.directory import accounts, passwords
from engine.directory.models import Member
from engine.outbound.mail import read_captured
from portal import create_app
from tests import factories as f
from tests.security.browser import Visitor
from tests.security.conftest import log_in, token_of

PASSWORD = "bonne-plongee-2026"


@pytest.fixture
def app(settings, db) -> Flask:  # type: ignore[no-untyped-def]
    """The portal on an empty directory (the members are made by each test)."""
    f.cheap_password_hashing()
    return create_app(settings, config={"TESTING": True})


class HeldHasher(PasswordHasher):
    """The cheapest argon2, counting its password checks and holding each one until the test releases them.

    Holding the checks reproduces the reviewer's timing (a real argon2 check takes ~150 ms, during which the
    other requests arrive) without depending on the machine's speed.
    """

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.checks = 0
        self.changed = threading.Condition()
        self.release = threading.Event()

    def verify(self, hash, password) -> bool:  # type: ignore[no-untyped-def,override]
        with self.changed:
            self.checks += 1
            self.changed.notify_all()
        self.release.wait(60)
        return super().verify(hash, password)


def test_finding6_a_burst_of_60_concurrent_attempts_checks_the_password_at_most_the_limit(app, live_url):
    member = f.member_with_password()
    hasher = HeldHasher.from_parameters(profiles.CHEAPEST)
    passwords.configure(hasher)
    visitors = [Visitor(live_url) for _ in range(60)]
    tokens = [v.csrf("/login") for v in visitors]  # each has its session and form, as 60 browsers would
    start = threading.Barrier(len(visitors))
    statuses: list[int] = []

    def attempt(visitor: Visitor, token: str) -> None:
        start.wait()
        status, _ = visitor.request("/login", {"identifier": member.licence_number, "password": "wrong-password",
                                               "csrf_token": token})
        with hasher.changed:
            statuses.append(status)
            hasher.changed.notify_all()

    threads = [threading.Thread(target=attempt, args=pair) for pair in zip(visitors, tokens, strict=True)]
    for thread in threads:
        thread.start()
    with hasher.changed:  # every request is either answered or inside a password check
        assert hasher.changed.wait_for(lambda: hasher.checks + len(statuses) >= 60, timeout=120)
    hasher.release.set()
    for thread in threads:
        thread.join(120)
    assert len(statuses) == 60 and set(statuses) <= {200, 429}
    assert hasher.checks <= accounts.PAIR_LIMIT, f"{hasher.checks} password checks for a limit of {accounts.PAIR_LIMIT}"
    assert statuses.count(200) == hasher.checks and statuses.count(429) >= 60 - accounts.PAIR_LIMIT


def post_login(client, identifier: str, password: str, ip: str, token: str) -> int:  # type: ignore[no-untyped-def]
    return int(client.post("/login", data={"identifier": identifier, "password": password, "csrf_token": token},
                           environ_base={"REMOTE_ADDR": ip}).status_code)


def test_finding7_wrong_passwords_from_elsewhere_do_not_lock_the_owner_out(app: Flask):
    owner = f.member_with_password()
    attacker = app.test_client()
    token = token_of(attacker, "/login")
    answers = [post_login(attacker, owner.licence_number, "wrong-password", "203.0.113.66", token) for _ in range(8)]
    assert answers == [200] * accounts.PAIR_LIMIT + [429] * (8 - accounts.PAIR_LIMIT)  # the source is slowed
    own = app.test_client()
    own_token = token_of(own, "/login")
    assert post_login(own, owner.licence_number, PASSWORD, "198.51.100.7", own_token) == 302
    assert own.get("/espace/", environ_base={"REMOTE_ADDR": "198.51.100.7"}).status_code == 200


def test_finding7_past_the_account_ceiling_the_reset_link_still_lets_the_owner_in(app: Flask, settings):
    owner = f.member_with_password(email="proprietaire@example.org")
    botnet = app.test_client()
    token = token_of(botnet, "/login")
    for i in range(accounts.ACCOUNT_LIMIT):  # spread over many sources, five attempts each
        post_login(botnet, owner.licence_number, "wrong-password", f"203.0.113.{i // accounts.PAIR_LIMIT}", token)
    mine = app.test_client()
    assert post_login(mine, owner.licence_number, PASSWORD, "198.51.100.7", token_of(mine, "/login")) == 429
    mine.post("/mot-de-passe-oublie", data={"identifier": owner.licence_number,
                                             "csrf_token": token_of(mine, "/mot-de-passe-oublie")},
              environ_base={"REMOTE_ADDR": "198.51.100.7"})
    [mail] = [m for m in read_captured(settings.capture_dir) if m["To"] == "proprietaire@example.org"]
    path = re.search(r"https://listes\.example\.fr(/mot-de-passe/\S+)", mail.get_content()).group(1)
    done = mine.post(path, data={"password": "un-mot-de-passe-neuf", "confirm": "un-mot-de-passe-neuf",
                                 "csrf_token": token_of(mine, path)}, environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert done.status_code == 302 and done.headers["Location"] == "/espace/"
    page = mine.get("/espace/", environ_base={"REMOTE_ADDR": "198.51.100.7"}).get_data(as_text=True)
    assert owner.licence_number in page  # logged in by the link


def test_finding9_probing_a_shared_family_address_is_counted_like_any_attempt(app: Flask):
    for _ in range(2):
        f.member_with_password(email="famille@example.org")
    prober = app.test_client()
    token = token_of(prober, "/login")
    answers = [post_login(prober, "famille@example.org", "any", "203.0.113.9", token) for _ in range(7)]
    assert answers == [200] * accounts.PAIR_LIMIT + [429, 429]
    # and across many addresses, the client address's own limit holds
    for n in range(accounts.ADDRESS_LIMIT):
        for _ in range(2):
            f.member(email=f"famille{n}@example.org")
    answers = [post_login(prober, f"famille{n}@example.org", "any", "203.0.113.10", token)
               for n in range(accounts.ADDRESS_LIMIT)]
    assert answers.count(429) == 0
    assert post_login(prober, "famille0@example.org", "any", "203.0.113.10", token) == 429
    page = prober.get("/login").get_data(as_text=True)
    assert "Plusieurs licenciés" not in page


def test_finding9_the_shared_answer_names_nobody_and_still_lets_members_in_by_licence(app: Flask):
    a = f.member_with_password(email="famille@example.org")
    f.member_with_password(email="famille@example.org")
    client = app.test_client()
    page = log_in(client, "famille@example.org", PASSWORD).get_data(as_text=True)
    assert "saisissez votre numéro de licence" in page and a.licence_number not in page
    assert log_in(client, a.licence_number, PASSWORD).status_code == 302
    assert Member.get_by_id(a.id).licence_number in client.get("/espace/").get_data(as_text=True)


def test_finding7_an_ipv6_source_is_its_whole_64(app: Flask):
    """One line holds a /64: a fresh address in it is the same source (else 2^64 fresh starts)."""
    member = f.member_with_password()
    client = app.test_client()
    token = token_of(client, "/login")
    answers = [post_login(client, member.licence_number, "wrong-password", f"2001:db8:1:2::{n:x}", token)
               for n in range(accounts.PAIR_LIMIT + 1)]
    assert answers[-1] == 429
    assert post_login(client, member.licence_number, "wrong-password", "2001:db8:1:3::1", token) == 200
    assert post_login(client, member.licence_number, "wrong-password", "::ffff:198.51.100.7", token) == 200
