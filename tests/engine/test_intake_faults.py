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
