"""Issue 16, the intake's protocol faults, each against a running engine over SMTP: wrapped posts reach
readers byte for byte, every address the engine sends from is one it accepts, and human posts that
merely look automatic are held for moderation instead of vanishing."""

from __future__ import annotations

import smtplib

import pytest

from engine.posting.models import Message, MessageState
from tests.engine.conftest import Federation, wait_until
from tests.engine.test_engine_e2e import post, send
from tests.support.sink import Sink

LIST = "comite_directeur.comite@listes.example.fr"
AUTHOR = "elodie.dupre@example.fr"


def _copies(sink: Sink) -> list[bytes]:
    return [item.data for item in sink.handler.received if b"\r\nList-Id: " in item.data]


# --- a wrapped post reaches readers as it arrived ---

OUTLOOK_BOUNDARY = (  # unquoted, with an "=": invalid (RFC 2045 §5.1), yet what some clients write
    b"Content-Type: multipart/mixed; boundary=----=_NextPart_000_0001\r\n\r\n"
    b"This is a multi-part message in MIME format.\r\n\r\n"
    b"------=_NextPart_000_0001\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nLe programme est joint.\r\n\r\n"
    b"------=_NextPart_000_0001\r\nContent-Type: application/pdf; name=programme.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=programme.pdf\r\n\r\n"
    b"JVBERi0xLjQKJcOkw7zDtsOf\r\n\r\n------=_NextPart_000_0001--\r\n")
KLINGON = b"Content-Type: text/plain; charset=x-klingon\r\nContent-Transfer-Encoding: 8bit\r\n\r\nQapla\xff!\r\n"


@pytest.mark.parametrize("body", [OUTLOOK_BOUNDARY, KLINGON], ids=["invalid unquoted boundary", "unknown charset"])
def test_issue16_a_wrapped_post_reaches_readers_byte_for_byte(start_engine, federation: Federation, sink: Sink,
                                                              body: bytes) -> None:
    engine = start_engine()
    raw = (b"From: " + AUTHOR.encode() + b"\r\nTo: " + LIST.encode() + b"\r\nSubject: programme\r\n"
           b"MIME-Version: 1.0\r\n" + body)
    host, port = engine.bound["smtp"]
    with smtplib.SMTP(host, port) as client:
        assert client.sendmail(AUTHOR, [LIST], raw) == {}
    wait_until(lambda: len(_copies(sink)) == 2, what="two copies")
    for copy in _copies(sink):
        head, _, wrapped = body.partition(b"\r\n\r\n")
        assert b"\r\n" + head + b"\r\n\r\n" + wrapped.rstrip(b"\r\n") + b"\r\n--=_palanquee_" in copy


# --- human posts that only look automatic are held, with the reason ---

@pytest.mark.parametrize("headers, author", [
    ({"Precedence": "bulk"}, AUTHOR),
    ({"Precedence": "list"}, AUTHOR),  # a forward from another list, a cross-post
    ({"Precedence": "junk"}, AUTHOR),
    ({}, "noreply@example.fr"),  # an automaton's name, but a real return path and no Auto-Submitted
])
def test_issue16_a_post_that_only_looks_automatic_is_held_with_the_reason(start_engine, federation: Federation,
                                                                          sink: Sink, headers: dict[str, str],
                                                                          author: str) -> None:
    engine = start_engine()
    assert send(engine, post(author=author, **headers), sender=AUTHOR) == {}
    held = Message.get()
    assert held.state == MessageState.HELD
    assert "held for moderation" in held.reason and ("Precedence" in held.reason or "automaton" in held.reason)
    wait_until(lambda: any(r.rcpt_tos == ["webmaster@example.fr"] for r in sink.handler.received),
               what="the moderation request")
    assert _copies(sink) == []


# --- every address the engine sends from is one it accepts ---

def test_issue16_every_envelope_sender_the_engine_uses_is_accepted_by_its_own_intake(
        start_engine, federation: Federation, sink: Sink, engine_settings) -> None:  # type: ignore[no-untyped-def]
    from email.message import EmailMessage

    from engine.lists.models import ListModerator
    from engine.posting import moderation

    ListModerator.create(mailing_list=federation.board_list, member=federation.board[0])
    engine = start_engine()
    send(engine, post())  # copies (VERP return paths)
    send(engine, post(author="paul.durand@example.fr"), sender="paul.durand@example.fr")  # request + pending
    moderation.reject(engine_settings, Message.get(Message.state == MessageState.HELD), None, "hors sujet")
    for companion, author in (("-request", "paul.durand@example.fr"), ("-owner", "paul.durand@example.fr"),
                              ("-unsubscribe", AUTHOR)):
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = author, f"comite_directeur.comite{companion}@listes.example.fr", "?"
        mail.set_content("bonjour\n")
        send(engine, mail, sender=author, recipients=[mail["To"]])
    wait_until(lambda: len(_copies(sink)) == 2, what="the copies")  # notices went before each 250
    senders = {item.mail_from for item in sink.handler.received}
    assert len(senders) >= 3  # two VERP addresses and the list's -bounces address at least
    host, port = engine.bound["smtp"]
    for sender in sorted(senders):
        dsn = EmailMessage()
        dsn["From"], dsn["To"], dsn["Subject"] = "MAILER-DAEMON@mx.example.org", sender, "Undelivered Mail"
        dsn.set_content("550 5.1.1 user unknown\n")
        with smtplib.SMTP(host, port) as client:
            assert client.send_message(dsn, from_addr="", to_addrs=[sender]) == {}, sender
