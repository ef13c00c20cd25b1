"""Issue 16's outbound protocol faults, against a real SMTP server (aiosmtpd) through a running engine:
idle connections the relay closed, connections that die before any reply."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta

import pytest

from engine.config import Settings
from engine.outbound.models import Delivery, DeliveryState
from engine.posting.models import Message, MessageState
from tests.engine.conftest import Federation, wait_until
from tests.engine.test_engine_e2e import post, send
from tests.support.sink import Sink, SinkHandler


@pytest.fixture
def closing_sink() -> Iterator[Sink]:
    """A relay that closes sessions left silent for half a second (a short ``smtpd_timeout``)."""
    server = Sink(SinkHandler(), idle_timeout=0.5)
    server.start()
    yield server
    server.stop()


def _all_sent_at_first_attempt() -> bool:
    rows = list(Delivery.select())
    return bool(rows) and all(d.state == DeliveryState.SENT and d.attempts == 1 for d in rows)


def _done(count: int) -> bool:
    return Message.select().where(Message.state == MessageState.DONE).count() == count


def test_issue_16_a_connection_the_relay_closed_while_idle_is_replaced_not_deferred(
        start_engine, federation: Federation, closing_sink: Sink, engine_settings: Settings) -> None:
    engine = start_engine(dataclasses.replace(engine_settings, smarthost=closing_sink.url))
    send(engine, post(subject="Premier"))
    wait_until(lambda: _done(1), what="first post done")
    wait_until(lambda: closing_sink.handler.sessions == 0, what="the relay closing the idle sessions")
    send(engine, post(subject="Second"))
    wait_until(lambda: _done(2), what="second post done")
    assert _all_sent_at_first_attempt(), [(d.address, d.attempts, d.last_reply) for d in Delivery.select()]
    assert all(len(copies) == 2 for copies in closing_sink.handler.by_recipient().values())


def test_issue_16_copies_on_a_connection_that_died_before_any_reply_go_at_once_on_a_new_one(
        start_engine, federation: Federation, sink: Sink) -> None:
    engine = start_engine()
    send(engine, post(subject="Premier"))
    wait_until(lambda: _done(1), what="first post done")
    sink.handler.drop_at_mail = 1  # the reused connection dies at the next MAIL, before any reply
    send(engine, post(subject="Second"))
    wait_until(lambda: _done(2), what="second post done")
    assert sink.handler.drop_at_mail == 0
    assert _all_sent_at_first_attempt(), [(d.address, d.attempts, d.last_reply) for d in Delivery.select()]
    assert all(len(copies) == 2 for copies in sink.handler.by_recipient().values())  # none lost, none twice


def test_issue_16_a_connection_left_idle_is_checked_with_noop_before_reuse(
        start_engine, federation: Federation, sink: Sink, engine_settings: Settings) -> None:
    engine = start_engine(dataclasses.replace(engine_settings, delivery_idle_check=timedelta(0)))
    send(engine, post(subject="Premier"))
    wait_until(lambda: _done(1), what="first post done")
    assert sink.handler.noops == 0
    send(engine, post(subject="Second"))
    wait_until(lambda: _done(2), what="second post done")
    assert sink.handler.noops >= 1 and _all_sent_at_first_attempt()


RAW_UTF8 = ("From: Élodie Dupré <elodie.dupre@example.fr>\r\nTo: comite_directeur.comite@listes.example.fr\r\n"
            "Subject: =?utf-8?q?R=C3=A9union?=\r\nX-Lieu: Île de Riou\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            "Rendez-vous à l'île.\r\n").encode()


def _send_utf8(engine) -> None:  # type: ignore[no-untyped-def]
    import smtplib

    host, port = engine.bound["smtp"]
    with smtplib.SMTP(host, port) as client:
        client.ehlo()
        client.sendmail("elodie.dupre@example.fr", ["comite_directeur.comite@listes.example.fr"], RAW_UTF8,
                        mail_options=["SMTPUTF8", "BODY=8BITMIME"])


def test_issue_16_utf8_header_fields_go_out_with_smtputf8(start_engine, federation: Federation, sink: Sink) -> None:
    engine = start_engine()
    _send_utf8(engine)
    wait_until(lambda: _done(1), what="post done")
    assert len(sink.handler.received) == 2
    for copy in sink.handler.received:
        assert "SMTPUTF8" in copy.mail_options and "BODY=8BITMIME" in copy.mail_options
        assert "X-Lieu: Île de Riou".encode() in copy.data
        assert "Élodie Dupré" in str(copy.message["From"])  # the raw UTF-8 name, read (and rewritten for DMARC)


def test_issue_16_utf8_header_fields_to_a_relay_without_smtputf8_fail_with_a_clear_reason(
        start_engine, federation: Federation, engine_settings: Settings) -> None:
    plain = Sink(SinkHandler(), smtputf8=False)
    plain.start()
    try:
        engine = start_engine(dataclasses.replace(engine_settings, smarthost=plain.url))
        _send_utf8(engine)
        wait_until(lambda: _done(1), what="post done")
        assert plain.handler.received == []
    finally:
        plain.stop()
    rows = list(Delivery.select())
    assert [d.state for d in rows] == [DeliveryState.FAILED] * 2
    assert all(d.last_reply.startswith("554 5.6.9 UTF-8 header fields") and "SMTPUTF8" in d.last_reply for d in rows)


def test_issue_16_ascii_copies_go_out_without_smtputf8_or_8bitmime(start_engine, federation: Federation,
                                                                    sink: Sink) -> None:
    engine = start_engine()
    send(engine, post(author="elodie.dupre@example.fr", subject="Sortie"))
    wait_until(lambda: _done(1), what="post done")
    assert [copy.mail_options for copy in sink.handler.received] == [[], []]


BLOB = b"\x00\x01binary\nwith bare LF\r and CR\r\n.\n" + bytes(range(256)) + b"x" * 2000


def test_issue_16_binary_content_is_reencoded_for_a_relay_without_binarymime(
        start_engine, federation: Federation, sink: Sink, engine_settings: Settings) -> None:
    """A part with Content-Transfer-Encoding: binary, NUL bytes and a 2,000-octet line (stored as the
    intake would store it) reaches readers intact, carried as 7-bit base64 and quoted-printable."""
    from engine import clock

    raw = (b"From: elodie.dupre@example.fr\r\nTo: comite_directeur.comite@listes.example.fr\r\nSubject: Binaire\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
           b"Bonjour\x00 \xc3\xa0 tous " + b"y" * 1500 + b"\r\n--b1\r\nContent-Type: application/octet-stream\r\n"
           b"Content-Disposition: attachment; filename=\"blob.bin\"\r\nContent-Transfer-Encoding: binary\r\n\r\n"
           + BLOB + b"\r\n--b1--\r\n")
    Message.create(mailing_list=federation.board_list, envelope_sender="elodie.dupre@example.fr",
                   author="elodie.dupre@example.fr", subject="Binaire", content=raw, size=len(raw),
                   state=MessageState.ACCEPTED, received_at=clock.now())
    start_engine()
    wait_until(lambda: _done(1), what="post done")
    assert len(sink.handler.received) == 2
    for copy in sink.handler.received:
        assert "BODY=BINARYMIME" not in copy.mail_options
        assert b"\0" not in copy.data
        assert max(len(line) for line in copy.data.split(b"\r\n")) <= 998
        [attachment] = list(copy.message.iter_attachments())
        assert attachment.get_payload(decode=True) == BLOB
        text = copy.message.get_body(("plain",)).get_content()
        assert text.startswith("Bonjour\x00 à tous yyy")
