"""Accounts: login by licence or by an address one member uses, rate limiting, reset and activation links."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta

import pytest

from engine import clock, tokens
from engine.audit import AuditEvent
from engine.directory import accounts, passwords
from engine.directory.accounts import LoginStatus
from engine.directory.models import Member
from engine.outbound.mail import read_captured
from tests import factories as f

PASSWORD = "bonne-plongee-2026"
T0 = datetime(2026, 11, 23, 13, 0)


@pytest.fixture(autouse=True)
def cheap_hashing():
    f.cheap_password_hashing()


def test_login_by_licence_number_or_by_an_address_only_one_member_uses(db):
    member = f.member_with_password(email="Solo@Example.org")
    assert accounts.login(member.licence_number.lower(), PASSWORD).member == member
    assert accounts.login(" solo@example.ORG ", PASSWORD).member == member
    assert accounts.login(member.licence_number, "wrong-password").status is LoginStatus.FAILED


def test_a_shared_address_asks_for_the_licence_number(db):
    a = f.member_with_password(email="famille@example.org")
    f.member_with_password(email="Famille@example.org")
    assert accounts.login("famille@example.org", PASSWORD) == accounts.LoginResult(LoginStatus.AMBIGUOUS)
    assert accounts.login(a.licence_number, PASSWORD).member == a


def test_unknown_accounts_and_members_without_password_fail_alike(db):
    inactive = f.member()
    assert accounts.login(inactive.licence_number, "anything").status is LoginStatus.FAILED
    assert accounts.login("Z-99-999999", "anything").status is LoginStatus.FAILED
    assert accounts.login("nobody@example.org", "anything").status is LoginStatus.FAILED


def test_failed_logins_slow_the_source_not_the_owner(db):
    member = f.member_with_password()
    with clock.frozen(T0) as advance:
        for _ in range(accounts.PAIR_LIMIT):
            assert accounts.login(member.licence_number, "wrong", ip="203.0.113.1").status is LoginStatus.FAILED
        assert accounts.login(member.licence_number, PASSWORD, ip="203.0.113.1").status is LoginStatus.THROTTLED
        assert accounts.login(member.email, "wrong", ip="203.0.113.1").status is LoginStatus.THROTTLED  # other name
        assert accounts.login(member.licence_number, PASSWORD, ip="198.51.100.2").status is LoginStatus.OK
        advance(accounts.WINDOW)
        assert accounts.login(member.licence_number, PASSWORD, ip="203.0.113.1").status is LoginStatus.OK
    assert AuditEvent.select().where(AuditEvent.action == "login.throttled").count() == 2


def test_the_account_ceiling_holds_against_many_sources(db):
    member = f.member_with_password()
    with clock.frozen(T0):
        for i in range(accounts.ACCOUNT_LIMIT):
            accounts.login(member.licence_number, "wrong", ip=f"203.0.113.{i // accounts.PAIR_LIMIT}")
        assert accounts.login(member.licence_number, PASSWORD, ip="198.51.100.2").status is LoginStatus.THROTTLED


def test_unknown_identifiers_are_limited_exactly_like_accounts(db):
    for _ in range(accounts.PAIR_LIMIT):
        assert accounts.login("Z-99-999999", "x").status is LoginStatus.FAILED
    assert accounts.login("Z-99-999999", "x").status is LoginStatus.THROTTLED


def test_failed_logins_are_limited_per_client_address(db):
    members = [f.member_with_password() for _ in range(5)]
    victim = f.member_with_password()
    for i in range(accounts.ADDRESS_LIMIT):
        accounts.login(members[i % 5].licence_number if i % 2 else f"Z-{i}", "wrong", ip="203.0.113.9")
    assert accounts.login(victim.licence_number, PASSWORD, ip="203.0.113.9").status is LoginStatus.THROTTLED
    assert accounts.login(victim.licence_number, PASSWORD, ip="203.0.113.10").status is LoginStatus.OK


def test_a_success_clears_the_count_of_its_source(db):
    member = f.member_with_password()
    for _ in range(accounts.PAIR_LIMIT - 1):
        accounts.login(member.licence_number, "wrong")
    assert accounts.login(member.licence_number, PASSWORD).status is LoginStatus.OK
    assert accounts.login(member.licence_number, "wrong").status is LoginStatus.FAILED
    assert accounts.login(member.licence_number, PASSWORD).status is LoginStatus.OK


def reset_link(settings, to: str) -> str:
    [message] = [m for m in read_captured(settings.capture_dir) if m["To"] == to][-1:]
    return re.search(r"https://\S+/mot-de-passe/(\S+)", message.get_content()).group(1)


def test_a_reset_link_sets_a_new_password_once_and_signs_out_everywhere(settings, db):
    member = f.member_with_password(email="reset@example.org")
    assert passwords.request_reset(settings, member.licence_number) == 1
    [mail] = read_captured(settings.capture_dir)
    assert mail["Subject"] == "Nouveau mot de passe pour Mon espace"
    token = reset_link(settings, "reset@example.org")
    assert passwords.member_for_reset(settings, token) == member
    with pytest.raises(passwords.WeakPassword):
        passwords.set_password_with_token(settings, token, "short")
    passwords.set_password_with_token(settings, token, "un-nouveau-mot-de-passe")
    assert Member.get_by_id(member.id).auth_version == member.auth_version + 1
    assert accounts.login(member.licence_number, "un-nouveau-mot-de-passe").status is LoginStatus.OK
    with pytest.raises(passwords.ResetLinkError) as replay:
        passwords.set_password_with_token(settings, token, "encore-un-autre-mot")
    assert replay.value.reason == "used"


def test_reset_links_expire_and_refuse_foreign_keys(settings, db):
    member = f.member_with_password(email="reset@example.org")
    with clock.frozen(T0) as advance:
        passwords.request_reset(settings, "reset@example.org")
        token = reset_link(settings, "reset@example.org")
        advance(settings.password_reset_max_age + timedelta(seconds=1))
        with pytest.raises(passwords.ResetLinkError) as expired:
            passwords.member_for_reset(settings, token)
        assert expired.value.reason == "expired"
    other = dataclasses.replace(settings, secret_key="another-secret-key-entirely")
    forged = passwords.make_reset_token(other, member)
    wrong_purpose = tokens.dumps(settings, tokens.Purpose.EMAIL_CONFIRM, {"m": member.id, "v": 0, "t": 0})
    for bad in (forged, wrong_purpose, "nonsense"):
        with pytest.raises(passwords.ResetLinkError) as error:
            passwords.member_for_reset(settings, bad)
        assert error.value.reason == "invalid"


def test_first_activation_for_an_imported_member_and_one_link_per_family_member(settings, db):
    a = f.member(email="famille@example.org")
    b = f.member(email="famille@example.org")
    assert passwords.request_reset(settings, "famille@example.org") == 2
    mails = read_captured(settings.capture_dir)
    assert {m["Subject"] for m in mails} == {"Activez votre compte Mon espace"}
    assert {a.licence_number, b.licence_number} == {
        re.search(r"licence (\S+)", m.get_content()).group(1) for m in mails}
    token = reset_link(settings, "famille@example.org")
    activated = passwords.set_password_with_token(settings, token, "premier-mot-de-passe")
    assert AuditEvent.get(AuditEvent.action == "account.activated").object_id == activated.id


def test_reset_requests_reveal_nothing_and_are_rate_limited(settings, db):
    f.member_with_password(email="reset@example.org")
    assert passwords.request_reset(settings, "nobody@example.org") == 0
    assert passwords.request_reset(settings, "Z-00-000000") == 0
    sent = [passwords.request_reset(settings, "reset@example.org") for _ in range(5)]
    assert sent == [1, 1, 1, 0, 0]
