"""Bounces through the real pipeline: a post goes out over SMTP to the recording smarthost, real-shaped DSNs come
back over SMTP to the engine at the copy's own ``LIST-bounces+TOKEN@`` return path, and the address's score,
its disabling, the member's notice and the next expansion follow (../shared/DELIVERABILITY.md §7.3)."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from engine import clock
from engine.bounces.models import Bounce, BounceEvent
from engine.config import Settings
from engine.lists.resolve import resolve
from engine.outbound.models import Delivery
from engine.posting.models import Message, MessageState
from tests.engine.conftest import Federation, wait_until
from tests.engine.test_engine_e2e import post, send
from tests.support.sink import Received, Sink

CORPUS = Path(__file__).resolve().parent.parent / "data" / "dsn"
PLACEHOLDER = b"comite_directeur.comite-bounces+TOKEN@listes.example.fr"
ELODIE = "elodie.dupre@example.fr"
T0 = datetime(2026, 11, 24, 9, 0)  # 10 h in Paris


@pytest.fixture
def advance() -> Iterator[object]:
    with clock.frozen(T0) as move:
        yield move


def return_path(sink: Sink, address: str) -> str:
    [copy] = [r for r in sink.handler.received if address in r.rcpt_tos and "-bounces+" in r.mail_from]
    return copy.mail_from


def distribute(engine, sink: Sink) -> str:  # type: ignore[no-untyped-def]
    """Post to the board list; return Élodie's copy's return path once both copies reached the sink."""
    before = len(sink.handler.received)
    send(engine, post())
    wait_until(lambda: len(sink.handler.received) >= before + 2, what="two copies")
    wait_until(lambda: not Message.select().where(Message.state == MessageState.SENDING).exists(), what="done")
    return [r.mail_from for r in sink.handler.received[before:] if ELODIE in r.rcpt_tos][0]


def bounce(engine, verp: str, name: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """Send corpus file ``name`` back to the engine at ``verp`` with a null envelope sender, as an MTA does."""
    data = (CORPUS / name).read_bytes().replace(PLACEHOLDER, verp.encode()).replace(b"\n", b"\r\n")
    host, port = engine.bound["smtp"]
    with smtplib.SMTP(host, port, timeout=10) as client:
        return client.sendmail("", [verp], data)


def score() -> tuple[float, bool]:
    row = Bounce.get_or_none(Bounce.email_key == ELODIE)
    return (row.score, row.disabled_until is not None and row.disabled_until > clock.now()) if row else (0.0, False)


def notices_to(sink: Sink, address: str) -> list[str]:
    return [str(r.message["Subject"]) for r in sink.handler.received
            if address in r.rcpt_tos and "-bounces+" not in r.mail_from]


def test_hard_bounce_once_a_day_disables_on_the_fifth_day(start_engine, federation: Federation, sink: Sink,
                                                         advance) -> None:
    engine = start_engine()
    verp = distribute(engine, sink)
    for day in range(1, 6):
        assert bounce(engine, verp, "postfix-5.1.1-orange.eml") == {}
        assert bounce(engine, verp, "gmail-5.1.1-nosuchuser.eml") == {}  # the same day: counted once
        assert score() == (float(day), day == 5), f"day {day}"
        if day < 5:
            advance(timedelta(days=1))
    assert BounceEvent.select().where(BounceEvent.kind == "hard").count() == 10
    [notice] = notices_to(sink, ELODIE)
    assert "ne vous écrivent plus" in notice
    mail = [r for r in sink.handler.received if ELODIE in r.rcpt_tos and "-bounces+" not in r.mail_from][0]
    assert mail.mail_from == "<>"  # null envelope sender: nothing bounces back (RFC 5321 §4.5.5)
    body = mail.message.get_content()
    assert "https://listes.example.fr/espace/" in body and "OFR_416" in body
    # The next post reaches the family address only.
    assert [r.address for batch in resolve(federation.board_list) for r in batch] == ["Famille.Martin@example.fr"]
    before = len(sink.handler.received)
    send(engine, post(subject="Deuxième sortie"))
    wait_until(lambda: Message.select().where(Message.state == MessageState.DONE).count() == 2, what="second done")
    assert [r.rcpt_tos for r in sink.handler.received[before:]] == [["Famille.Martin@example.fr"]]


def test_a_gap_longer_than_the_stale_period_starts_the_score_again(start_engine, federation: Federation,
                                                                  sink: Sink, engine_settings: Settings,
                                                                  advance) -> None:
    engine = start_engine()
    verp = distribute(engine, sink)
    for _ in range(3):
        bounce(engine, verp, "sendmail-5.1.1.eml")
        advance(timedelta(days=1))
    assert score() == (3.0, False)
    advance(engine_settings.bounce_stale_after + timedelta(hours=1))
    bounce(engine, verp, "exim-text-5.1.1.eml")
    assert score() == (1.0, False)


@pytest.mark.parametrize(("name", "added"), [
    ("postfix-4.2.2-delayed.eml", 0.0),  # a delay warning: the relay is still trying
    ("postfix-5.7.1-gmail-spam.eml", 0.0),  # the sender's problem, never the member's
    ("outlook-com-5.7.1-s3150.eml", 0.0),
    ("gmail-5.7.26-dmarc.eml", 0.0),
    ("vacation-gmail.eml", 0.0),
    ("vacation-exchange-oof.eml", 0.0),
    ("gmail-5.2.2-overquota.eml", 0.5),  # soft: half
    ("postfix-5.1.1-orange-overquota.eml", 0.5),  # Orange's "552 5.1.1 … pleine" is a full mailbox
    ("provider-text-fr-adresse-inconnue.eml", 1.0),  # a provider's text-only bounce: hard
    ("lotus-domino-not-listed.eml", 1.0),
])
def test_what_each_kind_adds(start_engine, federation: Federation, sink: Sink, advance, name: str,
                             added: float) -> None:
    engine = start_engine()
    verp = distribute(engine, sink)
    assert bounce(engine, verp, name) == {}
    assert score() == (added, False)
    [event] = BounceEvent.select()
    assert event.weight == added and event.source == "dsn" and bytes(event.content).startswith(b"Return-Path")
    assert event.message_id == Message.get().id and Delivery.get_by_id(event.delivery_id).address == ELODIE


@pytest.mark.parametrize(("threshold", "disabling_day"), [(2.0, 2), (8.0, 8)])
def test_a_lists_own_threshold_decides_the_disabling_day(start_engine, federation: Federation, sink: Sink,
                                                         advance, threshold: float, disabling_day: int) -> None:
    """mailing_list.bounce_threshold (set on the list's statistics page) replaces PALANQUEE_BOUNCE_THRESHOLD (5)."""
    federation.board_list.bounce_threshold = threshold
    federation.board_list.save()
    engine = start_engine()
    verp = distribute(engine, sink)
    for day in range(1, disabling_day + 1):
        assert bounce(engine, verp, "postfix-5.1.1-orange.eml") == {}
        assert score() == (float(day), day == disabling_day), f"day {day}"
        advance(timedelta(days=1))
    assert len(notices_to(sink, ELODIE)) == 1


def test_soft_bounces_alone_never_disable(start_engine, federation: Federation, sink: Sink, advance) -> None:
    engine = start_engine()
    verp = distribute(engine, sink)
    for _ in range(12):
        bounce(engine, verp, "qmail-remote-quota.eml")
        advance(timedelta(days=1))
    assert score() == (6.0, False)
    bounce(engine, verp, "qmail-5.1.1.eml")  # the first hard bounce past the threshold does
    assert score() == (7.0, True)


def test_an_unrecognised_message_goes_to_the_owner_never_to_the_list(start_engine, federation: Federation,
                                                                     sink: Sink, advance) -> None:
    engine = start_engine()
    verp = distribute(engine, sink)
    before = len(sink.handler.received)
    assert bounce(engine, verp, "unknown-human-reply.eml") == {}
    forwarded = sink.handler.received[before:]
    # No owner and no moderator on this list: the administrator (engine_settings.admin_email) gets it.
    assert [r.rcpt_tos for r in forwarded] == [["webmaster@example.fr"]]
    message = forwarded[0].message
    assert "Message retourné non reconnu" in str(message["Subject"]) and forwarded[0].mail_from == "<>"
    [attached] = list(message.iter_attachments())
    assert b"deux blocs" in attached.get_payload(decode=True) or b"deux blocs" in attached.get_content()
    assert Message.select().count() == 1 and score() == (0.0, False)
    assert BounceEvent.get().forwarded


def test_forwards_to_the_owner_are_limited_per_day(start_engine, federation: Federation, sink: Sink,
                                                   advance) -> None:
    from engine.bounces.service import OWNER_FORWARDS_PER_DAY

    engine = start_engine()
    verp = distribute(engine, sink)
    before = len(sink.handler.received)
    for _ in range(OWNER_FORWARDS_PER_DAY + 3):
        bounce(engine, verp, "unknown-challenge-response.eml")
    assert len(sink.handler.received) - before == OWNER_FORWARDS_PER_DAY
    assert BounceEvent.select().count() == OWNER_FORWARDS_PER_DAY + 3  # all kept


def test_forged_bounces_are_refused_or_ignored(start_engine, federation: Federation, sink: Sink,
                                               advance) -> None:
    from tests import factories

    engine = start_engine()
    verp = distribute(engine, sink)
    local, _, domain = verp.partition("@")
    flipped = local[:-1] + ("0" if local[-1] != "0" else "1") + "@" + domain
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        bounce(engine, flipped, "postfix-5.1.1-orange.eml")
    assert refused.value.recipients[flipped][0] == 550
    # A genuine token sent to another list's bounce address names no delivery of that list: ignored.
    factories.mailing_list("bureau", federation.domain, structure=federation.region)
    other = "bureau-bounces+" + local.partition("+")[2] + "@" + domain
    assert bounce(engine, other, "postfix-5.1.1-orange.eml") == {}
    # Upper case (some MTAs change the case of local parts) still names the delivery.
    assert bounce(engine, verp.upper(), "postfix-5.1.1-orange.eml") == {}
    assert score() == (1.0, False) and BounceEvent.select().count() == 1


def test_a_synchronous_5xx_counts_like_a_bounce(start_engine, federation: Federation, sink: Sink,
                                                advance) -> None:
    sink.handler.script = lambda rcpt, attempt: (f"550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"
                                                 if rcpt == ELODIE else "250 OK")
    engine = start_engine()
    send(engine, post())
    wait_until(lambda: Message.select().where(Message.state == MessageState.DONE).exists(), what="done")
    wait_until(lambda: BounceEvent.select().exists(), what="the failure counted")
    [event] = BounceEvent.select()
    assert (event.source, event.kind, event.status, event.weight) == ("smtp", "hard", "5.1.1", 1.0)
    assert score() == (1.0, False)
    # A refusal of the message (policy) is recorded on the delivery but counts nothing.
    sink.handler.script = lambda rcpt, attempt: "554 5.7.1 Message refused as spam"
    send(engine, post(subject="Encore"))
    wait_until(lambda: Message.select().where(Message.state == MessageState.DONE).count() == 2, what="done")
    assert BounceEvent.select().count() == 1 and score() == (1.0, False)


def test_the_member_sees_the_warning_and_a_new_address_brings_the_mail_back(
        start_engine, federation: Federation, sink: Sink, engine_settings: Settings, advance) -> None:
    import re

    from portal import create_app
    from tests import factories
    from tests.portal.test_espace import csrf

    engine = start_engine()
    verp = distribute(engine, sink)
    for _ in range(5):
        bounce(engine, verp, "postfix-5.1.1-orange.eml")
        advance(timedelta(days=1))
    elodie = federation.board[0]
    factories.cheap_password_hashing()
    from engine.directory.passwords import hash_password

    elodie.password_hash = hash_password("bonne-plongee-2026")
    elodie.save()
    client = create_app(engine_settings, config={"TESTING": True}).test_client()
    client.post("/login", data={"identifier": elodie.licence_number, "password": "bonne-plongee-2026",
                                "csrf_token": csrf(client, "/login")})
    page = client.get("/espace/").get_data(as_text=True)
    assert "Vos messages ne sont plus distribués : votre adresse renvoie des erreurs." in page
    assert "Adresse d au moins un destinataire invalide" in page  # Orange's own words
    client.post("/espace/adresse", data={"csrf_token": csrf(client, "/espace/adresse"),
                                         "email": "elodie.dupre@exemple.net"})
    [confirmation] = [r for r in sink.handler.received if r.rcpt_tos == ["elodie.dupre@exemple.net"]]
    path = re.search(r"https://listes\.example\.fr(/\S+)", confirmation.message.get_content()).group(1)
    client.post(path, data={"csrf_token": csrf(client, path)})  # PALANQUEE_PROPAGATION_DELAY=0 in the tests
    assert "renvoie des erreurs" not in client.get("/espace/").get_data(as_text=True)
    before = len(sink.handler.received)
    send(engine, post(author="Famille.Martin@example.fr", subject="Après le changement"),
         sender="Famille.Martin@example.fr")
    wait_until(lambda: len(sink.handler.received) >= before + 2, what="two copies")
    assert sorted(r.rcpt_tos[0] for r in sink.handler.received[before:]) == [
        "Famille.Martin@example.fr", "elodie.dupre@exemple.net"]


def test_a_temporary_failure_until_the_retry_lifetime_counts_half(start_engine, federation: Federation,
                                                                  sink: Sink, engine_settings: Settings) -> None:
    import dataclasses

    sink.handler.script = lambda rcpt, attempt: "452 4.2.2 Mailbox full" if rcpt == ELODIE else "250 OK"
    engine = start_engine(dataclasses.replace(engine_settings, retry_lifetime=timedelta(seconds=1)))
    send(engine, post())
    wait_until(lambda: BounceEvent.select().exists(), what="the expired copy counted")
    [event] = BounceEvent.select()
    assert (event.source, event.kind, event.status, event.weight, event.final) == ("smtp", "soft", "4.2.2", 0.5, True)
    assert score() == (0.5, False)
    assert Delivery.get(Delivery.address == ELODIE).state == "failed"


def owner_notices(sink: Sink, owner: str) -> list[Received]:
    return [r for r in sink.handler.received if r.rcpt_tos == [owner]]


def test_the_owner_is_told_once_when_bounces_disable_an_address(start_engine, federation: Federation, sink: Sink,
                                                                advance) -> None:
    """DELIVERABILITY.md §7.3 "owner notification generated on suspension": who, which address, why, what the
    member sees; from the list's -bounces address, Auto-Submitted; one per address and list."""
    owner = federation.outsider  # moderator_addresses(): no moderator, so the owner
    federation.board_list.owner = owner
    federation.board_list.save()
    engine = start_engine()
    verp = distribute(engine, sink)
    for day in range(1, 8):  # disabled on the fifth day; two more hard bounces change nothing
        assert bounce(engine, verp, "postfix-5.1.1-orange.eml") == {}
        assert owner_notices(sink, owner.email) == [] or day >= 5, f"day {day}"
        advance(timedelta(days=1))
    [notice] = owner_notices(sink, owner.email)
    message = notice.message
    assert notice.mail_from == "comite_directeur.comite-bounces@listes.example.fr"  # a bounce of it is only logged
    assert message["Auto-Submitted"] == "auto-generated"  # RFC 3834: no auto-reply, no list takes it as a post
    assert str(message["Subject"]) == ("Liste comite_directeur.comite@listes.example.fr : l’adresse "
                                       "elodie.dupre@example.fr est suspendue")  # French first
    body = message.get_content()
    elodie = federation.board[0]
    assert f"Élodie Dupré (licence {elodie.licence_number})" in body and "Comité directeur – Provence" in body
    assert "Adresse d au moins un destinataire invalide" in body and "5.1.1" in body  # why: Orange's words
    assert "« Vos messages ne sont plus distribués : votre adresse renvoie des erreurs. »" in body
    assert f"https://listes.example.fr/admin/messages/listes/{federation.board_list.id}" in body
    assert not [r for r in sink.handler.received if federation.board_list.address in r.rcpt_tos]  # never the list


def test_the_owner_hears_of_a_disabling_by_a_synchronous_5xx_and_of_a_subscriber_without_account(
        start_engine, federation: Federation, sink: Sink, advance) -> None:
    from engine.lists.models import ListModerator, Subscription

    federation.board_list.bounce_threshold = 1
    federation.board_list.save()
    ListModerator.create(mailing_list=federation.board_list, email="moderatrice@example.org")
    for careless in (federation.board_list.address, "Comite_Directeur.Comite-owner@listes.example.fr"):
        ListModerator.create(mailing_list=federation.board_list, email=careless)  # a loop: never mailed
    Subscription.create(mailing_list=federation.board_list, email="ancien.club@example.org",  # no member uses it
                        email_key="ancien.club@example.org", created_at=clock.now())
    sink.handler.script = lambda rcpt, attempt: (f"550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"
                                                 if rcpt in (ELODIE, "ancien.club@example.org") else "250 OK")
    engine = start_engine()
    send(engine, post())
    wait_until(lambda: len(owner_notices(sink, "moderatrice@example.org")) == 2, what="two owner notices")
    bodies = {str(r.message["Subject"]).split("l’adresse ")[1]: r.message.get_content()
              for r in owner_notices(sink, "moderatrice@example.org")}
    assert set(bodies) == {"elodie.dupre@example.fr est suspendue", "ancien.club@example.org est suspendue"}
    assert "Élodie Dupré" in bodies["elodie.dupre@example.fr est suspendue"]
    assert "n’a pas de compte licencié" in bodies["ancien.club@example.org est suspendue"]
    assert "User unknown" in bodies["ancien.club@example.org est suspendue"]
    assert not [r for r in sink.handler.received if "listes.example.fr" in " ".join(r.rcpt_tos)]



def test_owner_notices_are_one_per_address_and_list_a_day(start_engine, federation: Federation, sink: Sink,
                                                          advance) -> None:
    """Staff re-enable an address that bounces again at once: disabled again, the owner not told twice that day."""
    from engine.bounces import scoring

    federation.board_list.bounce_threshold = 1
    federation.board_list.save()
    engine = start_engine()
    verp = distribute(engine, sink)
    admin = "webmaster@example.fr"  # no moderator, no owner: the administrator (engine_settings.admin_email)
    for told in (1, 1, 2):
        assert bounce(engine, verp, "gmail-5.1.1-nosuchuser.eml") == {}
        assert score()[1] and len(owner_notices(sink, admin)) == told
        assert scoring.clear(ELODIE, how="staff")
        advance(timedelta(hours=13))  # the second bounce the same day (23 h in Paris), the third the next
    assert len(notices_to(sink, ELODIE)) == 3  # the member is told at every disabling
