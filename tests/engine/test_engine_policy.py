"""What the intake refuses, discards or holds, over real SMTP: relays, loops, bounces, non-members, sizes."""

from __future__ import annotations

import dataclasses
import smtplib
from email.message import EmailMessage

import pytest

from engine.config import Settings
from engine.lists.models import ListModerator
from engine.posting import moderation
from engine.posting.models import Message, MessageState
from tests import factories
from tests.engine.conftest import Federation, settle, wait_until, without_marker
from tests.engine.test_engine_e2e import post, send
from tests.support.sink import Sink

LIST = "comite_directeur.comite@listes.example.fr"


def rcpt(engine, address: str) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
    host, port = engine.bound["smtp"]
    with smtplib.SMTP(host, port) as client:
        client.ehlo("test")
        client.mail("someone@example.org")
        return client.rcpt(address)


def test_open_relay_and_unknown_addresses_are_refused_at_rcpt(start_engine, federation: Federation,
                                                               sink: Sink) -> None:
    engine = start_engine()
    assert rcpt(engine, "victim@gmail.com")[0] == 550
    assert b"Relaying denied" in rcpt(engine, "victim@gmail.com")[1]
    code, text = rcpt(engine, "nosuchlist@listes.example.fr")
    assert (code, b"5.1.1" in text) == (550, True)
    assert rcpt(engine, "comite_directeur.comite-bounces+garbage.aaaaaaaa@listes.example.fr")[0] == 550
    for companion in ("", "-request", "-owner", "-unsubscribe"):
        assert rcpt(engine, f"comite_directeur.comite{companion}@listes.example.fr")[0] == 250
    assert Message.select().count() == 0 and sink.handler.received == []


def test_disabled_domain_and_deleted_list_are_refused_with_the_reason(start_engine, federation: Federation) -> None:
    engine = start_engine()
    other = factories.domain("listes.codep13.fr", structure=federation.region, enabled=False)
    factories.mailing_list("bureau", other)
    code, text = rcpt(engine, "bureau@listes.codep13.fr")
    assert code == 550 and b"switched off" in text
    from engine import clock

    federation.board_list.deleted_at = clock.now()
    federation.board_list.save()
    code, text = rcpt(engine, LIST)
    assert code == 550 and b"deleted" in text


def test_a_loop_is_refused(start_engine, federation: Federation, sink: Sink) -> None:
    engine = start_engine()
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(engine, post(X_Loop=LIST))
    assert refused.value.smtp_code == 550 and b"loop" in refused.value.smtp_error
    with pytest.raises(smtplib.SMTPDataError):
        send(engine, post(List_Id="Board <comite_directeur.comite.listes.example.fr>"))
    assert Message.select().count() == 0


@pytest.mark.parametrize("author", [
    "Élodie Dupré <elodie.dupre@example.fr>, Paul Durand <paul.durand@example.fr>",
    "elodie.dupre@example.fr, escroc@evil.example",
    "Élodie Dupré <elodie.dupre@example.fr>, <elodie.dupre@example.fr>",  # the same mailbox twice is two
])
def test_a_from_with_two_mailboxes_is_refused_even_on_a_list_that_never_rewrites(
        start_engine, federation: Federation, sink: Sink, author: str) -> None:
    # RFC 5322 §3.6.2: several authors need a Sender, and the posting rules would judge the first only.
    federation.board_list.dmarc_mode = "never"
    federation.board_list.save()
    engine = start_engine()
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(engine, post(author=author))
    assert refused.value.smtp_code == 550 and b"5.6.0" in refused.value.smtp_error
    assert b"one From header with one address" in refused.value.smtp_error
    assert Message.select().count() == 0
    # A comma in an unquoted display name is careless, not a second author: that post goes out.
    assert send(engine, post(author="Dupré, Élodie <elodie.dupre@example.fr>")) == {}
    wait_until(lambda: len(without_marker(sink.handler.received)) == 2, what="two copies")
    assert all("Dupré, Élodie <elodie.dupre@example.fr>" in str(r.message["From"])
               for r in without_marker(sink.handler.received))


@pytest.mark.parametrize("sender, headers", [
    ("", {}),  # a bounce: null reverse-path
    ("elodie.dupre@example.fr", {"Auto-Submitted": "auto-replied"}),
    ("elodie.dupre@example.fr", {"Auto-Submitted": "auto-generated", "Precedence": "bulk"}),
])
def test_bounces_and_auto_replies_to_the_list_are_not_distributed(start_engine, federation: Federation, sink: Sink,
                                                                    sender: str, headers: dict[str, str]) -> None:
    engine = start_engine()
    message = post(author=sender or "MAILER-DAEMON@mx.example.org", **{k.replace("-", "_"): v
                                                                      for k, v in headers.items()})
    assert send(engine, message, sender=sender) == {}
    stored = Message.get()
    assert stored.state == MessageState.DISCARDED and stored.reason
    settle(engine, federation, sink)  # the engine has now been past it: an absence means something
    assert without_marker(sink.handler.received) == []
    assert Message.get_by_id(stored.id).state == MessageState.DISCARDED


def test_non_member_is_held_then_approved(start_engine, federation: Federation, sink: Sink,
                                          engine_settings: Settings) -> None:
    ListModerator.create(mailing_list=federation.board_list, member=federation.board[0])
    engine = start_engine()
    send(engine, post(author="Paul Durand <paul.durand@example.fr>"), sender="paul.durand@example.fr")
    held = Message.get()
    assert held.state == MessageState.HELD
    # Notices go out through the same smarthost as list mail.
    mails = {rcpt: copies[0].message for rcpt, copies in sink.handler.by_recipient().items()}
    assert sorted(mails) == ["elodie.dupre@example.fr", "paul.durand@example.fr"]
    request = mails["elodie.dupre@example.fr"]
    assert request["Auto-Submitted"] == "auto-generated"
    import re

    links = re.findall(r"(https://listes\.example\.fr/moderation/[^?\s]+)\?decision=(approve|reject)",
                       request.get_content())
    assert [decision for _, decision in links] == ["approve", "reject"]
    url = links[0][0].rsplit("/", 1)[1]
    assert moderation.load_moderation_token(engine_settings, url).id == held.id
    assert "attend une modération" in mails["paul.durand@example.fr"]["Subject"]
    settle(engine, federation, sink)
    assert not any(r.message["List-Id"] for r in without_marker(sink.handler.received))
    assert Message.get_by_id(held.id).state == MessageState.HELD
    moderation.approve(engine_settings, moderation.load_moderation_token(engine_settings, url), None)
    wait_until(lambda: len(without_marker(sink.handler.received)) == 4, what="copies after approval")
    assert sum(1 for r in without_marker(sink.handler.received) if r.message["List-Id"]) == 2
    with pytest.raises(moderation.NotHeld):
        moderation.reject(engine_settings, Message.get(), None)


def test_refusing_list_answers_550_to_a_non_member(start_engine, federation: Federation) -> None:
    federation.board_list.hold_unauthorised = False
    federation.board_list.save()
    engine = start_engine()
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(engine, post(author="paul.durand@example.fr"), sender="paul.durand@example.fr")
    assert refused.value.smtp_code == 550 and b"not allowed" in refused.value.smtp_error
    assert Message.select().count() == 0


def test_oversized_message_gets_552(start_engine, federation: Federation, engine_settings: Settings) -> None:
    engine = start_engine(dataclasses.replace(engine_settings, max_message_size=20_000))
    big = EmailMessage()
    big["From"], big["To"], big["Subject"] = "elodie.dupre@example.fr", LIST, "gros"
    big.set_content("x" * 60 + "\n" * 1000)
    big.add_attachment(b"\0" * 30_000, maintype="application", subtype="octet-stream", filename="big.bin")
    with pytest.raises((smtplib.SMTPDataError, smtplib.SMTPSenderRefused)) as refused:
        send(engine, big)
    assert refused.value.smtp_code == 552
    assert Message.select().count() == 0


def test_mailto_unsubscribe_with_the_token_removes_exactly_that_copy(start_engine, federation: Federation,
                                                                     sink: Sink) -> None:
    from engine.lists.models import OptOut

    engine = start_engine()
    send(engine, post())
    wait_until(lambda: len(sink.handler.received) == 2)
    family = sink.handler.by_recipient()["Famille.Martin@example.fr"][0].message
    mailto = family["List-Unsubscribe"].split("<mailto:")[1].rstrip(">")
    address, _, query = mailto.partition("?subject=")
    leave = EmailMessage()
    leave["From"], leave["To"], leave["Subject"] = "famille.martin@example.fr", address, query
    leave.set_content("")
    send(engine, leave, sender="famille.martin@example.fr")
    assert sorted(o.member_id for o in OptOut.select()) == sorted(m.id for m in federation.board[1:])


def test_a_bounce_to_a_copys_verp_address_is_recorded(start_engine, federation: Federation, sink: Sink) -> None:
    from engine.bounces.models import Bounce

    engine = start_engine()
    send(engine, post())
    wait_until(lambda: len(sink.handler.received) == 2)
    copy = sink.handler.by_recipient()["elodie.dupre@example.fr"][0]
    assert rcpt(engine, copy.mail_from)[0] == 250
    dsn = EmailMessage()
    dsn["From"], dsn["To"], dsn["Subject"] = "MAILER-DAEMON@mx.example.fr", copy.mail_from, "Undelivered Mail"
    dsn.set_content("550 5.1.1 <elodie.dupre@example.fr>: Recipient address rejected\n")
    send(engine, dsn, sender="", recipients=[copy.mail_from])
    bounce = Bounce.get(Bounce.email_key == "elodie.dupre@example.fr")
    assert bounce.bounce_count == 1
    assert Message.select().count() == 1  # the bounce is not a post


def test_at_most_ten_held_notices_a_day_to_one_sender(start_engine, federation: Federation, sink: Sink) -> None:
    engine = start_engine()
    for _ in range(12):
        send(engine, post(author="paul.durand@example.fr"), sender="paul.durand@example.fr")
    assert Message.select().where(Message.state == MessageState.HELD).count() == 12
    notices = sink.handler.by_recipient().get("paul.durand@example.fr", [])
    assert len(notices) == 10
    assert all(n.message["Auto-Submitted"] == "auto-generated" for n in notices)


def test_without_moderator_owner_or_administrator_the_nearest_staff_is_asked(federation: Federation,
                                                                             engine_settings: Settings) -> None:
    import dataclasses

    from engine import clock
    from engine.directory.models import StaffScope

    settings = dataclasses.replace(engine_settings, admin_email="")
    assert moderation.moderator_addresses(settings, federation.board_list) == []
    regional = factories.member("Karim", "Benali", email="karim@example.fr")
    StaffScope.create(member=regional, structure=federation.region, granted_at=clock.now())
    national_staff = factories.member("Sophie", "Lemoine", email="sophie@example.fr")
    StaffScope.create(member=national_staff, structure=federation.region.parent, granted_at=clock.now())
    assert moderation.moderator_addresses(settings, federation.board_list) == ["karim@example.fr"]
    ListModerator.create(mailing_list=federation.board_list, email="moderation@example.fr")
    assert moderation.moderator_addresses(settings, federation.board_list) == ["moderation@example.fr"]
