"""The path of an address change: request, confirmation, cancellation, and the job that applies due changes."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner
from itsdangerous import URLSafeTimedSerializer

from engine import clock, tokens
from engine import db as engine_db
from engine.audit import AuditEvent
from engine.directory import email_change as ec
from engine.directory.models import EmailChange, Member
from engine.lists.models import Subscription
from engine.lists.resolve import resolve
from engine.outbound.mail import read_captured
from tests import factories as f

T0 = datetime(2026, 11, 23, 13, 0)  # 14 h 00 in Paris


@pytest.fixture
def delayed(settings):
    return dataclasses.replace(settings, propagation_delay=timedelta(hours=72))


def links(settings, to: str) -> list[str]:
    found = []
    for message in read_captured(settings.capture_dir):
        if message["To"] == to:
            found += re.findall(r"https://listes\.example\.fr/\S+", message.get_content())
    return found


def token_of(link: str) -> str:
    return link.rsplit("/", 1)[1]


def actions(change: EmailChange) -> list[str]:
    return [e.action for e in AuditEvent.select().where(
        (AuditEvent.object_type == "email_change") & (AuditEvent.object_id == change.id)).order_by(AuditEvent.id)]


def recipients(ml) -> set[str]:
    return {r.address for batch in resolve(ml) for r in batch}


def test_request_mails_a_link_to_the_new_address_and_a_cancel_link_to_the_old(delayed, db):
    member = f.member(email="Elodie@Orange.fr")
    with clock.frozen(T0):
        change = ec.request_change(delayed, member, "  elodie.new@Example.org ", ip="203.0.113.5")
        assert ec.pending_change(delayed, member) == change
    assert (change.old_email, change.new_email, change.verified_at) == ("Elodie@Orange.fr", "elodie.new@example.org",
                                                                         None)
    assert Member.get_by_id(member.id).email == "Elodie@Orange.fr"  # nothing changes until confirmed
    confirm, notice = read_captured(delayed.capture_dir)
    assert confirm["To"] == "elodie.new@example.org" and confirm["Subject"] == "Confirmez votre nouvelle adresse e-mail"
    assert "/espace/adresse/confirmer/" in confirm.get_content() and "3 jours" in confirm.get_content()
    assert notice["To"] == "Elodie@Orange.fr" and "/espace/adresse/annuler/" in notice.get_content()
    assert "elodie.new@example.org" in notice.get_content()
    assert actions(change) == ["email_change.requested"]


@pytest.mark.parametrize("raw", ["", "not-an-address", "a@b", "two@@example.org", "x@example.org\nBcc: y@z.org"])
def test_invalid_addresses_are_refused(settings, db, raw):
    member = f.member()
    with pytest.raises(ec.InvalidAddress):
        ec.request_change(settings, member, raw)
    assert EmailChange.select().count() == 0 and read_captured(settings.capture_dir) == []


def test_the_same_address_in_other_case_is_refused_but_a_shared_one_is_accepted(settings, db):
    member = f.member(email="Camille@Example.org")
    f.member(email="famille@example.org")
    with pytest.raises(ec.SameAddress):
        ec.request_change(settings, member, "camille@EXAMPLE.org")
    change = ec.request_change(settings, member, "famille@example.org")  # a family address: allowed
    assert change.new_email == "famille@example.org"


def test_confirmation_sets_the_effective_time_and_the_job_applies_it_then(delayed, db):
    member = f.member(email="old@example.org")
    ml = f.board_list(member)
    with clock.frozen(T0) as advance:
        ec.request_change(delayed, member, "new@example.org")
        advance(timedelta(hours=1))
        change = ec.confirm(delayed, token_of(links(delayed, "new@example.org")[0]), ip="203.0.113.5")
        assert change.verified_at == T0 + timedelta(hours=1)
        assert change.effective_at == T0 + timedelta(hours=73)
        assert ec.apply_due_changes() == 0
        assert recipients(ml) == {"old@example.org"}
        advance(timedelta(hours=72) - timedelta(seconds=1))
        assert ec.apply_due_changes() == 0
        advance(timedelta(seconds=1))
        assert ec.apply_due_changes() == 1
        assert ec.apply_due_changes() == 0  # idempotent
    member = Member.get_by_id(member.id)
    assert (member.email, member.email_key) == ("new@example.org", "new@example.org")
    assert member.email_set_by_member_at == T0 + timedelta(hours=73)
    assert recipients(ml) == {"new@example.org"}
    assert actions(change) == ["email_change.requested", "email_change.confirmed", "email_change.applied"]
    assert ec.pending_change(delayed, member) is None


def test_with_no_delay_the_confirmed_address_is_used_at_once(settings, db):
    member = f.member(email="old@example.org")
    ml = f.board_list(member)
    ec.request_change(settings, member, "new@example.org")
    change = ec.confirm(settings, token_of(links(settings, "new@example.org")[0]))
    assert EmailChange.get_by_id(change.id).applied_at is not None  # reloaded: as stored, not as returned
    assert recipients(ml) == {"new@example.org"}


def test_apply_due_changes_takes_an_explicit_now_and_skips_cancelled_and_unconfirmed(delayed, db):
    a, b, c = f.member(email="a@example.org"), f.member(email="b@example.org"), f.member(email="c@example.org")
    with clock.frozen(T0):
        ec.request_change(delayed, a, "a2@example.org")
        ec.confirm(delayed, token_of(links(delayed, "a2@example.org")[0]))
        ec.request_change(delayed, b, "b2@example.org")
        ec.confirm(delayed, token_of(links(delayed, "b2@example.org")[0]))
        ec.cancel_pending(delayed, b)
        ec.request_change(delayed, c, "c2@example.org")  # never confirmed
    assert ec.apply_due_changes(T0 + timedelta(hours=71)) == 0
    assert ec.apply_due_changes(T0 + timedelta(days=30)) == 1
    assert [m.email for m in Member.select().order_by(Member.id)] == ["a2@example.org", "b@example.org",
                                                                     "c@example.org"]


def test_a_confirmation_link_works_once_and_expires(delayed, db):
    member = f.member(email="old@example.org")
    with clock.frozen(T0) as advance:
        ec.request_change(delayed, member, "new@example.org")
        token = token_of(links(delayed, "new@example.org")[0])
        ec.confirm(delayed, token)
        with pytest.raises(ec.ChangeLinkError) as replay:
            ec.confirm(delayed, token)
        assert replay.value.reason == "used"
        ec.request_change(delayed, member, "newer@example.org")  # replaces the confirmed one in progress
        late = token_of(links(delayed, "newer@example.org")[0])
        advance(delayed.email_change_max_age + timedelta(seconds=1))
        with pytest.raises(ec.ChangeLinkError) as expired:
            ec.confirm(delayed, late)
        assert expired.value.reason == "expired"
        assert ec.apply_due_changes(T0 + timedelta(days=10)) == 0  # the first was superseded
    assert Member.get_by_id(member.id).email == "old@example.org"


def test_forged_foreign_or_cross_purpose_tokens_are_refused(settings, db):
    victim = f.member(email="victim@example.org")
    change = ec.request_change(settings, victim, "attacker@example.org")
    other_key = dataclasses.replace(settings, secret_key="another-secret-key-entirely")
    foreign = token_of(ec.confirm_url(other_key, change))
    cancel = token_of(ec.cancel_url(settings, change))  # a cancel token is not a confirmation
    wrong_member = URLSafeTimedSerializer(settings.secret_key, salt="wrong").dumps({"c": change.id, "m": victim.id})
    forged_member = tokens.dumps(settings, tokens.Purpose.EMAIL_CONFIRM, {"c": change.id, "m": victim.id + 1})
    for token in (foreign, cancel, wrong_member, forged_member, "garbage", token_of(ec.confirm_url(settings, change))
                  [:-3] + "abc"):
        with pytest.raises(ec.ChangeLinkError) as error:
            ec.confirm(settings, token)
        assert error.value.reason == "invalid"
    assert Member.get_by_id(victim.id).email == "victim@example.org"


def test_a_logged_in_member_cannot_confirm_or_cancel_someone_elses_change(settings, db):
    a, b = f.member(email="a@example.org"), f.member(email="b@example.org")
    change = ec.request_change(settings, b, "b2@example.org")
    with pytest.raises(ec.ChangeLinkError) as error:
        ec.confirm(settings, token_of(ec.confirm_url(settings, change)), member=a)
    assert error.value.reason == "other_member"
    with pytest.raises(ec.ChangeLinkError):
        ec.cancel_with_token(settings, token_of(ec.cancel_url(settings, change)), member=a)
    assert ec.pending_change(settings, b) == change and ec.cancel_pending(settings, a) is None


def test_this_was_not_me_cancels_and_signs_the_member_out_everywhere(delayed, db):
    member = f.member(email="old@example.org")
    version = member.auth_version
    ec.request_change(delayed, member, "thief@example.org")
    cancel = token_of(links(delayed, "old@example.org")[0])
    ec.confirm(delayed, token_of(links(delayed, "thief@example.org")[0]))
    change = ec.cancel_with_token(delayed, cancel, ip="198.51.100.7")
    assert EmailChange.get_by_id(change.id).cancelled_at is not None  # reloaded: as stored, not as returned
    assert Member.get_by_id(member.id).auth_version == version + 1
    assert ec.apply_due_changes(clock.now() + timedelta(days=30)) == 0
    assert Member.get_by_id(member.id).email == "old@example.org"
    with pytest.raises(ec.ChangeLinkError) as again:
        ec.cancel_with_token(delayed, cancel)
    assert again.value.reason == "cancelled"
    assert actions(change)[-1] == "email_change.cancelled"


def test_a_cancel_link_is_too_late_once_the_change_is_applied(settings, db):
    member = f.member(email="old@example.org")
    ec.request_change(settings, member, "new@example.org")
    ec.confirm(settings, token_of(links(settings, "new@example.org")[0]))
    with pytest.raises(ec.ChangeLinkError) as error:
        ec.cancel_with_token(settings, token_of(links(settings, "old@example.org")[0]))
    assert error.value.reason == "applied"


def test_linked_static_subscriptions_follow_the_address(settings, db):
    member = f.member(email="old@example.org")
    dom = f.domain(structure=f.structure("Fédération", "federation"))
    guests = f.mailing_list("invites", dom, kind="static")
    Subscription.create(mailing_list=guests, email="old@example.org", email_key="old@example.org", member=member,
                        created_at=clock.now())
    ec.request_change(settings, member, "New@example.org")
    ec.confirm(settings, token_of(links(settings, "New@example.org")[0]))
    assert recipients(guests) == {"New@example.org"}


def test_palanquee_propagate_applies_due_changes(delayed, db, db_url, monkeypatch):
    from portal.cli import cli

    member = f.member(email="old@example.org")
    with clock.frozen(T0):
        ec.request_change(delayed, member, "new@example.org")
        ec.confirm(delayed, token_of(links(delayed, "new@example.org")[0]))
    for name, value in {"PALANQUEE_DATABASE_URL": db_url, "PALANQUEE_SECRET_KEY": "k" * 32,
                        "PALANQUEE_INSTANCE": str(delayed.instance)}.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["propagate"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "1 address change(s) applied"
    engine_db.bind(db)  # the command bound the models to its own (now closed) database
    assert Member.get_by_id(member.id).email == "new@example.org"
