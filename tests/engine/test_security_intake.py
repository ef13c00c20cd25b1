"""Security review, issue 11, the list engine's findings 3, 4, 5, 10 and 11: each attack replayed over SMTP
or LMTP against a running engine (the test names give the finding's number)."""

from __future__ import annotations

import dataclasses
import re
import smtplib
from datetime import timedelta
from email import policy as email_policy
from email.message import EmailMessage

import pytest

from engine.config import Settings
from engine.lists.models import OptOut
from engine.outbound.models import Delivery
from engine.posting.models import Message
from tests import factories
from tests.engine.conftest import Federation, wait_until
from tests.engine.test_engine_e2e import post, send
from tests.support.sink import Sink, reserve

LIST = "comite_directeur.comite@listes.example.fr"


# --- finding 3: repeated RCPT multiplies a post ---

def test_finding_3_repeated_rcpt_makes_one_post_with_one_copy_per_member(start_engine, federation: Federation,
                                                                          sink: Sink) -> None:
    engine = start_engine()
    host, port = engine.bound["smtp"]
    with smtplib.SMTP(host, port) as client:
        client.ehlo("test")
        assert client.mail("elodie.dupre@example.fr")[0] == 250
        for address in [LIST] * 4 + [LIST.upper(), "Comite_Directeur.Comite@Listes.Example.FR"]:
            assert client.rcpt(address)[0] == 250
        assert client.data(post().as_bytes(policy=email_policy.SMTP))[0] == 250
    assert Message.select().count() == 1
    wait_until(lambda: Delivery.select().where(Delivery.state == "sent").count() == 2, what="two copies sent")
    assert sorted(r for item in sink.handler.received for r in item.rcpt_tos) == [
        "Famille.Martin@example.fr", "elodie.dupre@example.fr"]


def test_finding_3_lmtp_repeated_rcpt_makes_one_post_and_answers_each_rcpt(start_engine, federation: Federation,
                                                                           sink: Sink) -> None:
    engine = start_engine()
    host, port = engine.bound["lmtp"]
    with smtplib.LMTP(host, port, timeout=10) as client:
        client.ehlo("test")
        assert client.mail("elodie.dupre@example.fr")[0] == 250
        for _ in range(3):
            assert client.rcpt(LIST)[0] == 250
        replies = [client.data(post().as_bytes(policy=email_policy.SMTP)), client.getreply(), client.getreply()]
    assert [code for code, _ in replies] == [250, 250, 250]  # RFC 2033: one reply per accepted RCPT
    assert Message.select().count() == 1
    wait_until(lambda: len(sink.handler.received) == 2, what="two copies")


def test_finding_3_recipients_past_the_maximum_get_452(start_engine, federation: Federation,
                                                       engine_settings: Settings, sink: Sink) -> None:
    engine = start_engine(dataclasses.replace(engine_settings, max_recipients=3))
    for kind, client_class in (("smtp", smtplib.SMTP), ("lmtp", smtplib.LMTP)):
        host, port = engine.bound[kind]
        with client_class(host, port, timeout=10) as client:
            client.ehlo("test")
            assert client.mail("elodie.dupre@example.fr")[0] == 250
            for companion in ("", "-request", "-owner"):
                assert client.rcpt(f"comite_directeur.comite{companion}@listes.example.fr")[0] == 250
            code, text = client.rcpt(LIST)
            assert (code, b"4.5.3" in text) == (452, True)  # RFC 5321 §4.5.3.1.10
            assert client.rcpt(LIST)[0] == 452
            client.rset()
            assert client.mail("elodie.dupre@example.fr")[0] == 250
            assert client.rcpt(LIST)[0] == 250  # a new transaction starts from zero


# --- finding 4: anyone can unsubscribe anyone by mail ---

UNSUBSCRIBE = "comite_directeur.comite-unsubscribe@listes.example.fr"


def _leave_mail(author: str, subject: str = "unsubscribe", **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = author, UNSUBSCRIBE, subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content("please remove me\n")
    return message


def test_finding_4_mailto_without_token_only_mails_a_link_to_the_address_and_the_link_unsubscribes(
        start_engine, federation: Federation, sink: Sink, engine_settings: Settings) -> None:
    from portal import create_app

    engine = start_engine()
    # The attack: a forged From, an envelope of the attacker's own.
    send(engine, _leave_mail("Élodie Dupré <elodie.dupre@example.fr>"), sender="attacker@evil.example",
         recipients=[UNSUBSCRIBE])
    assert OptOut.select().count() == 0
    [confirmation] = sink.handler.received
    assert confirmation.rcpt_tos == ["elodie.dupre@example.fr"]  # never the attacker
    assert confirmation.mail_from == "comite_directeur.comite-bounces@listes.example.fr"
    assert confirmation.message["Auto-Submitted"] == "auto-generated"
    [link] = re.findall(r"https://listes\.example\.fr/u/\S+", confirmation.message.get_content())
    client = create_app(engine_settings, config={"TESTING": True}).test_client()
    assert client.get(link.removeprefix(engine_settings.base_url)).status_code == 200
    assert OptOut.select().count() == 0  # opening the link changes nothing
    client.post(link.removeprefix(engine_settings.base_url), data="List-Unsubscribe=One-Click",
                content_type="application/x-www-form-urlencoded")
    assert [o.member_id for o in OptOut.select()] == [federation.board[0].id]
    from engine.db import database

    database.obj.close()  # the app bound the models to its own database object


@pytest.mark.parametrize("author", [
    "paul.durand@example.fr",  # a member who is not on the list
    "stranger@example.org",  # nobody
    "=HYPERLINK(\"https://evil.example\")@evil.example",  # a spreadsheet formula
    "not an address",
])
def test_finding_4_mailto_for_an_address_not_on_the_list_stores_and_sends_nothing(
        start_engine, federation: Federation, sink: Sink, author: str) -> None:
    from engine.audit import AuditEvent

    engine = start_engine()
    events = AuditEvent.select().count()
    send(engine, _leave_mail(author), sender="stranger@example.org", recipients=[UNSUBSCRIBE])
    assert OptOut.select().count() == 0 and AuditEvent.select().count() == events
    assert sink.handler.received == []


def test_finding_4_confirmations_are_limited_per_address_and_never_sent_to_automata(
        start_engine, federation: Federation, sink: Sink) -> None:
    from engine.lists import mailto_unsubscribe

    engine = start_engine()
    send(engine, _leave_mail("elodie.dupre@example.fr", Auto_Submitted="auto-replied"), recipients=[UNSUBSCRIBE])
    send(engine, _leave_mail("elodie.dupre@example.fr"), sender="", recipients=[UNSUBSCRIBE])
    assert sink.handler.received == []
    for _ in range(mailto_unsubscribe.CONFIRMATIONS_PER_ADDRESS_PER_DAY + 3):
        send(engine, _leave_mail("elodie.dupre@example.fr"), sender="attacker@evil.example", recipients=[UNSUBSCRIBE])
    assert len(sink.handler.received) == mailto_unsubscribe.CONFIRMATIONS_PER_ADDRESS_PER_DAY
    assert OptOut.select().count() == 0


# --- finding 5: a forged From passes the members rule ---

def _set_policy(federation: Federation, policy: str) -> None:
    from engine.lists.models import ListModerator, PostingPermission

    federation.board_list.post_policy = policy
    federation.board_list.save()
    if policy == "roles":
        PostingPermission.create(mailing_list=federation.board_list, role=factories.role("membre_cd"),
                                 structure=federation.region)
    if policy == "moderators":
        ListModerator.create(mailing_list=federation.board_list, member=federation.board[0])


@pytest.mark.parametrize("policy", ["members", "roles", "moderators"])
def test_finding_5_a_members_from_with_an_outside_envelope_is_held(start_engine, federation: Federation,
                                                                   sink: Sink, policy: str) -> None:
    _set_policy(federation, policy)
    engine = start_engine()
    send(engine, post(author="Élodie Dupré <elodie.dupre@example.fr>"), sender="attacker@evil.example")
    held = Message.get()
    assert held.state == "held" and "envelope sender" in held.reason
    assert not any(r.message["List-Id"] for r in sink.handler.received)  # nothing reached the board


def test_finding_5_the_members_known_addresses_are_accepted_as_envelope(start_engine, federation: Federation,
                                                                         sink: Sink) -> None:
    from engine import clock
    from engine.directory.models import EmailChange
    from engine.lists.models import Subscription

    federation.board_list.post_policy = "members"
    federation.board_list.save()
    elodie = federation.board[0]
    now = clock.now()
    EmailChange.create(member=elodie, old_email="elodie@ancien.example", new_email=elodie.email,
                       requested_at=now, verified_at=now, effective_at=now, applied_at=now)
    EmailChange.create(member=elodie, old_email=elodie.email, new_email="elodie@nouveau.example",
                       requested_at=now, verified_at=now, effective_at=now + timedelta(days=3))  # not yet in use
    EmailChange.create(member=elodie, old_email=elodie.email, new_email="elodie@annule.example",
                       requested_at=now, verified_at=now, cancelled_at=now)
    Subscription.create(mailing_list=factories.mailing_list("autre", federation.domain), email="elodie@club.example",
                        email_key="elodie@club.example", member=elodie, created_at=now)
    engine = start_engine()
    for sender in ("ELODIE.DUPRE@example.fr", "elodie@ancien.example", "elodie@nouveau.example",
                   "elodie@club.example", "elodie@annule.example"):
        send(engine, post(author="elodie.dupre@example.fr", subject=sender), sender=sender)
    states = {m.subject: m.state for m in Message.select()}
    assert states.pop("elodie@annule.example") == "held"  # a cancelled change proves nothing
    assert "held" not in states.values() and len(states) == 4


# --- finding 10: a 4xx after the commit duplicates held posts ---

@pytest.mark.parametrize("author", [
    b"Dupont, Jean <jean.dupont@example.org>",  # an unquoted comma: the old code read "dupont" as the author
    "Éloïse <éloïse@exemple.fr>".encode(),  # a UTF-8 address the notice cannot be written to
])
def test_finding_10_a_held_post_is_answered_250_once_whatever_its_notices_do(
        start_engine, federation: Federation, sink: Sink, author: bytes) -> None:
    engine = start_engine()
    raw = (b"From: " + author + b"\r\nTo: " + LIST.encode() + b"\r\nSubject: hors liste\r\n\r\nbonjour\r\n")
    host, port = engine.bound["smtp"]
    with smtplib.SMTP(host, port) as client:
        assert client.sendmail("someone@example.org", [LIST], raw, mail_options=["SMTPUTF8"]) == {}
    [held] = Message.select()
    assert held.state == "held"
    assert [r.rcpt_tos for r in sink.handler.received][:1] == [["webmaster@example.fr"]]  # the moderators heard


def test_finding_10_a_held_post_is_answered_250_when_no_notice_can_be_sent(
        start_engine, federation: Federation, engine_settings: Settings) -> None:
    down = reserve()  # bound, never listening: the smarthost refuses connections, and nobody can take its port
    try:
        engine = start_engine(dataclasses.replace(engine_settings,
                                                  smarthost=f"smtp://127.0.0.1:{down.getsockname()[1]}"))
        assert send(engine, post(author="paul.durand@example.fr"), sender="paul.durand@example.fr") == {}
        assert [m.state for m in Message.select()] == ["held"]
    finally:
        down.close()


# --- finding 11 (engine half): LIST-request@ answers anyone without limit ---

REQUEST = "comite_directeur.comite-request@listes.example.fr"


def _help_request(author: str, **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = author, REQUEST, "help"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content("help\n")
    return message


def test_finding_11_list_request_answers_a_sender_at_most_three_times_a_day(start_engine, federation: Federation,
                                                                           sink: Sink) -> None:
    from engine.posting import moderation

    engine = start_engine()
    for _ in range(moderation.HELP_REPLIES_PER_SENDER_PER_DAY + 4):
        send(engine, _help_request("victim@example.org"), sender="victim@example.org", recipients=[REQUEST])
    replies = sink.handler.received
    assert len(replies) == moderation.HELP_REPLIES_PER_SENDER_PER_DAY
    assert {r.rcpt_tos[0] for r in replies} == {"victim@example.org"}
    assert {r.mail_from for r in replies} == {"comite_directeur.comite-bounces@listes.example.fr"}
    assert all(r.message["Auto-Submitted"] == "auto-replied" for r in replies)


def test_finding_11_list_request_answers_many_forged_senders_at_most_the_list_limit(
        start_engine, federation: Federation, sink: Sink, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.posting import moderation

    monkeypatch.setattr(moderation, "HELP_REPLIES_PER_LIST_PER_DAY", 4)
    engine = start_engine()
    for n in range(7):
        send(engine, _help_request(f"victim{n}@example.org"), sender=f"victim{n}@example.org", recipients=[REQUEST])
    assert len(sink.handler.received) == 4


@pytest.mark.parametrize("sender, headers", [
    ("", {}),  # a bounce
    ("someone@example.org", {"Auto_Submitted": "auto-replied"}),
    ("someone@example.org", {"Precedence": "bulk"}),
    ("someone@example.org", {"List_Id": "<other.lists.example.org>"}),
    ("someone@example.org", {"X_Auto_Response_Suppress": "All"}),
    ("MAILER-DAEMON@mx.example.org", {}),
    ("owner-other@lists.example.org", {}),
    ("other-request@lists.example.org", {}),
    ("nodomain", {}),  # not an address a reply could reach
])
def test_finding_11_list_request_never_answers_what_looks_automated(start_engine, federation: Federation,
                                                                     sink: Sink, sender: str,
                                                                     headers: dict[str, str]) -> None:
    engine = start_engine()
    host, port = engine.bound["smtp"]
    with smtplib.SMTP(host, port) as client:
        client.ehlo("test")
        assert client.mail(f"<{sender}>")[0] == 250
        assert client.rcpt(REQUEST)[0] == 250
        message = _help_request(sender if "@" in sender else "x@example.org", **headers)
        assert client.data(message.as_bytes(policy=email_policy.SMTP))[0] == 250
    assert sink.handler.received == []
