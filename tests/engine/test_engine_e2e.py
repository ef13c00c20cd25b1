"""The whole path over real sockets: a post over SMTP/LMTP to the engine, copies at the recording smarthost."""

from __future__ import annotations

import re
import smtplib
import subprocess
from email import policy as email_policy
from email.message import EmailMessage

from engine.bounces import verp
from engine.config import Settings
from engine.lists.models import OptOut
from engine.lists.resolve import resolve
from engine.outbound.models import Delivery, DeliveryState
from engine.posting.models import Message, MessageState
from engine.tokens import load_unsubscribe_token
from tests import factories
from tests.engine.conftest import Federation, settle, wait_until, without_marker
from tests.support.sink import Sink

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


def post(author: str = "Élodie Dupré <elodie.dupre@example.fr>", to: str = "comite_directeur.comite@listes.example.fr",
         subject: str = "Sortie à Cassis", **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = author
    message["To"] = to
    message["Subject"] = subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content("Bonjour à tous,\nrendez-vous samedi au port.\n")
    message.add_alternative("<html><body><p>Bonjour à tous,</p><p>rendez-vous samedi.</p></body></html>",
                            subtype="html")
    message.add_attachment(PDF, maintype="application", subtype="pdf", filename="programme.pdf")
    return message


def send(engine, message: EmailMessage, sender: str = "elodie.dupre@example.fr",  # type: ignore[no-untyped-def]
         recipients: list[str] | None = None) -> dict:  # type: ignore[type-arg]
    host, port = engine.bound["smtp"]
    with smtplib.SMTP(host, port) as client:
        return client.send_message(message, from_addr=sender, to_addrs=recipients or [message["To"]])


def test_post_reaches_every_member_once_personalised(start_engine, federation: Federation, sink: Sink,
                                                       engine_settings: Settings) -> None:
    engine = start_engine()
    inbound = post(List_Unsubscribe="<https://evil.example/u>", List_Id="<other.example.org>")
    assert send(engine, inbound) == {}
    wait_until(lambda: len(sink.handler.received) == 2, what="two copies")
    by_rcpt = sink.handler.by_recipient()
    # The family shares one address: one copy for both, at the address as typed first (case kept).
    assert sorted(by_rcpt) == ["Famille.Martin@example.fr", "elodie.dupre@example.fr"]
    assert all(len(copies) == 1 for copies in by_rcpt.values())
    key = verp.signing_key(engine_settings)
    senders = set()
    for rcpt, [copy] in by_rcpt.items():
        message = copy.message
        for name in ("From", "Date", "Message-ID", "Subject", "List-Id", "List-Unsubscribe",
                     "List-Unsubscribe-Post", "List-Post", "Precedence"):
            assert len(message.get_all(name, [])) == 1, name
        assert message["List-Id"].endswith("<comite_directeur.comite.listes.example.fr>")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        urls = re.findall(r"<(https://[^>]+)>", message["List-Unsubscribe"])
        assert len(urls) == 1 and "evil" not in message["List-Unsubscribe"]
        assert "<mailto:comite_directeur.comite-unsubscribe@listes.example.fr?subject=" in message["List-Unsubscribe"]
        assert max(len(line) for line in copy.data.split(b"\r\n")) <= 998
        text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
        assert text.startswith("Bonjour à tous,\nrendez-vous samedi au port.\n")
        assert urls[0] in text and urls[0] in message.get_body(("html",)).get_content()
        [attachment] = list(message.iter_attachments())
        assert attachment.get_content() == PDF
        local, _, domain = copy.mail_from.partition("@")
        assert domain == "listes.example.fr" and len(local) <= 64
        delivery_id = verp.read_token(key, local.partition("+")[2])
        assert Delivery.get_by_id(delivery_id).address == rcpt
        senders.add(copy.mail_from)
        target = load_unsubscribe_token(engine_settings, urls[0].rsplit("/", 1)[1])
        assert target.list_id == federation.board_list.id
        if rcpt.startswith("Famille"):
            assert sorted(target.member_ids) == sorted(m.id for m in federation.board[1:])
            assert "partagée par 2 licenciés" in text
    assert len(senders) == 2
    wait_until(lambda: Message.get().state == MessageState.DONE, what="message done")
    assert {d.state for d in Delivery.select()} == {DeliveryState.SENT}


def test_role_change_a_moment_before_the_post_is_honoured(start_engine, federation: Federation, sink: Sink) -> None:
    engine = start_engine()
    factories.mandate(federation.outsider, factories.role("membre_cd"), federation.region)
    send(engine, post())
    wait_until(lambda: len(sink.handler.received) == 3, what="three copies")
    assert "paul.durand@example.fr" in sink.handler.by_recipient()


def test_lmtp_answers_once_per_recipient(start_engine, federation: Federation, sink: Sink) -> None:
    # Two lists in one LMTP transaction: RFC 2033 wants one reply per accepted recipient after DATA
    # (smtplib.LMTP reads only the first; the second is read by hand).
    closed = factories.mailing_list("bureau", federation.domain, structure=federation.region,
                                    post_policy="members", hold_unauthorised=False)
    factories.criterion(closed, federation.region, [factories.role("membre_cd")])
    engine = start_engine()
    host, port = engine.bound["lmtp"]
    with smtplib.LMTP(host, port, timeout=10) as client:
        client.ehlo("test")
        assert client.mail("paul.durand@example.fr")[0] == 250
        assert client.rcpt("comite_directeur.comite@listes.example.fr")[0] == 250
        assert client.rcpt("bureau@listes.example.fr")[0] == 250
        assert client.rcpt("x@elsewhere.example")[0] == 550
        first = client.data(post(author="paul.durand@example.fr").as_bytes(policy=email_policy.SMTP))
        second = client.getreply()
    assert first[0] == 250  # the board list holds a non-member's post for moderation
    assert second[0] == 550 and b"not allowed" in second[1]  # the other list refuses it
    held = Message.get()
    assert held.state == MessageState.HELD and held.mailing_list_id == federation.board_list.id
    settle(engine, federation, sink)
    assert not any(r.message["List-Id"] for r in without_marker(sink.handler.received))


def test_swaks_posts_to_the_list(start_engine, federation: Federation, sink: Sink) -> None:
    engine = start_engine()
    host, port = engine.bound["smtp"]
    result = subprocess.run(
        ["swaks", "--server", host, "--port", str(port), "--from", "elodie.dupre@example.fr",
         "--to", "comite_directeur.comite@listes.example.fr", "--header", "Subject: Essai swaks",
         "--h-From", "elodie.dupre@example.fr", "--body", "Corps du message", "--timeout", "10"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 Message accepted" in result.stdout
    wait_until(lambda: len(sink.handler.received) == 2, what="two copies")
    assert all("Essai swaks" in r.message["Subject"] for r in sink.handler.received)


def test_opted_out_member_gets_nothing_next_time(start_engine, federation: Federation, sink: Sink,
                                                   engine_settings: Settings) -> None:
    from engine.lists.optouts import leave

    leave(federation.board_list, member=federation.board[0], source="footer")
    engine = start_engine()
    send(engine, post(author="jean@example.fr"), sender="jean@example.fr")
    wait_until(lambda: Message.select().where(Message.state == MessageState.HELD).exists(), what="held")
    send(engine, post(author="Famille.Martin@example.fr"), sender="Famille.Martin@example.fr")
    wait_until(lambda: len(sink.handler.received) >= 1, what="a copy")
    wait_until(lambda: Message.select().where(Message.state == MessageState.DONE).exists(), what="done")
    assert list(resolve(federation.board_list))[0][0].address == "Famille.Martin@example.fr"
    assert "elodie.dupre@example.fr" not in sink.handler.by_recipient()
    assert OptOut.select().count() == 1


def test_footer_link_unsubscribes_through_the_portal(start_engine, federation: Federation, sink: Sink,
                                                     engine_settings: Settings) -> None:
    from portal import create_app

    engine = start_engine()
    send(engine, post())
    wait_until(lambda: len(sink.handler.received) == 2, what="two copies")
    copy = sink.handler.by_recipient()["elodie.dupre@example.fr"][0].message
    text = copy.get_body(("plain",)).get_content()
    [link] = re.findall(r"Se désabonner : (\S+)", text)
    assert link == re.findall(r"<(https://[^>]+)>", copy["List-Unsubscribe"])[0]
    path = link.removeprefix(engine_settings.base_url)
    client = create_app(engine_settings, config={"TESTING": True}).test_client()
    page = client.get(path)
    assert page.status_code == 200 and "Comité directeur" in page.get_data(as_text=True)
    assert OptOut.select().count() == 0  # the GET (a mail scanner) changes nothing
    # What a mailbox provider does for the one-click header (RFC 8058): a bare POST, no cookie.
    response = client.post(path, data="List-Unsubscribe=One-Click",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert [o.member_id for o in OptOut.select()] == [federation.board[0].id]
    send(engine, post(author="Famille.Martin@example.fr"), sender="Famille.Martin@example.fr")
    wait_until(lambda: len(sink.handler.received) == 3, what="the next post")
    assert sink.handler.received[-1].rcpt_tos == ["Famille.Martin@example.fr"]
    from engine.db import database

    database.obj.close()  # the app bound the models to its own database object; this thread used it


def test_copies_go_to_the_effective_address_before_and_after_a_change(start_engine, federation: Federation,
                                                                        sink: Sink, engine_settings: Settings) -> None:
    """A confirmed change reaches the lists only at its effective time; the engine follows it then."""
    import dataclasses
    from datetime import timedelta

    from engine import clock
    from engine.directory import email_change

    delayed = dataclasses.replace(engine_settings, propagation_delay=timedelta(days=3))
    president = federation.board[0]
    change = email_change.request_change(delayed, president, "elodie@nouvelle-adresse.fr")
    email_change.confirm(delayed, email_change.confirm_url(delayed, change).rsplit("/", 1)[1])
    engine = start_engine()
    send(engine, post(author="Famille.Martin@example.fr"), sender="Famille.Martin@example.fr")
    wait_until(lambda: len([r for r in sink.handler.received if r.message["List-Id"]]) == 2, what="first post")
    assert "elodie.dupre@example.fr" in sink.handler.by_recipient()
    assert email_change.apply_due_changes(clock.now() + timedelta(days=3, minutes=1)) == 1
    send(engine, post(author="Famille.Martin@example.fr"), sender="Famille.Martin@example.fr")
    wait_until(lambda: len([r for r in sink.handler.received if r.message["List-Id"]]) == 4, what="second post")
    last_two = [r.rcpt_tos[0] for r in sink.handler.received if r.message["List-Id"]][-2:]
    assert sorted(last_two) == ["Famille.Martin@example.fr", "elodie@nouvelle-adresse.fr"]


def test_without_a_smarthost_copies_land_in_the_capture_as_a_mailbox_stores_them(
        start_engine, federation: Federation, engine_settings: Settings) -> None:
    import dataclasses

    from engine.outbound.mail import read_captured

    settings = dataclasses.replace(engine_settings, smarthost="")
    engine = start_engine(settings)
    message = post()
    message.get_body(("plain",)).set_content(".Ligne qui commence par un point\n..et deux\n")
    send(engine, message)
    wait_until(lambda: len(read_captured(settings.capture_dir)) == 2, what="two captured copies")
    copies = {m["Delivered-To"]: m for m in read_captured(settings.capture_dir)}
    assert sorted(copies) == ["Famille.Martin@example.fr", "elodie.dupre@example.fr"]
    copy = copies["elodie.dupre@example.fr"]
    assert copy["Return-Path"].startswith("<comite_directeur.comite-bounces+")
    text = copy.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.startswith(".Ligne qui commence par un point\n..et deux\n")  # stored, not dot-stuffed
