"""The engine's own notice of a post it could not render (``message_failed``, engine/outbound/failures.py):
checklist §6. From the list's -bounces address (a bounce comes back to the engine, never to a person, and
never loops), Auto-Submitted, within the author limits, never to an automaton. Real engine, SMTP sink."""

from __future__ import annotations

import re
import smtplib
from email.message import EmailMessage

import pytest

from engine import notices
from engine.config import Settings
from engine.posting.models import Message, MessageState
from tests.engine.conftest import Federation, settle, wait_until, without_marker
from tests.engine.test_delivery_isolation import _notices, _poison_on, _store
from tests.support.sink import Sink

BOUNCES = "comite_directeur.comite-bounces@listes.example.fr"
ADMIN = "webmaster@example.fr"  # the list has no owner: the administrator is told


def _fail(start_engine, sink: Sink, settings: Settings, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
          change: dict[str, object] | None = None, headers: bytes = b""):
    """Store a post rendering cannot handle (changed as ``change`` and ``headers`` say), start the engine,
    wait for the message to fail and the owner's notice; return the engine and the notices by recipient."""
    _poison_on(monkeypatch, b"X-Poison: yes")
    poison = _store(settings, X_Poison="yes")
    content = bytes(Message.get_by_id(poison).content).replace(b"X-Poison", headers + b"X-Poison")
    if "author" in (change or {}):  # the From the post carries, not only the stored column
        content = re.sub(rb"(?m)^From: [^\r\n]*", b"From: " + str(change["author"]).encode(), content, count=1)  # type: ignore[index]
    Message.update(content=content, **(change or {})).where(Message.id == poison).execute()
    engine = start_engine()
    wait_until(lambda: Message.get_by_id(poison).state == MessageState.FAILED, what="failed")
    wait_until(lambda: ADMIN in _notices(sink), what="the owner's notice")
    return engine, _notices(sink)


def test_the_author_is_told_from_the_lists_bounces_address_marked_auto_submitted(
        start_engine, federation: Federation, sink: Sink, engine_settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    engine, _ = _fail(start_engine, sink, engine_settings, monkeypatch)
    wait_until(lambda: len(_notices(sink)) == 2, what="two notices")
    for received in sink.handler.received:
        # RFC 5321 §4.5.5 / RFC 3834 §5: a bounce of the notice goes to the list's -bounces address, which the
        # intake accepts and answers nothing; Auto-Submitted keeps vacation programs quiet.
        assert received.mail_from == BOUNCES, received.rcpt_tos
        assert received.message["Auto-Submitted"] == "auto-generated"
    author = {r.rcpt_tos[0]: r for r in sink.handler.received}["elodie.dupre@example.fr"].message
    assert "n’a pas pu être diffusé" in author["Subject"] and author["To"] == "elodie.dupre@example.fr"
    assert "List-Unsubscribe" not in author  # the engine's own mail, not a list copy
    # The author's server bounces it: the engine takes the bounce at -bounces and answers nobody.
    dsn = EmailMessage()
    dsn["From"], dsn["To"], dsn["Subject"] = "MAILER-DAEMON@mx.example.fr", BOUNCES, "Undelivered Mail"
    dsn.set_content("Final-Recipient: rfc822;elodie.dupre@example.fr\nStatus: 5.2.2\n")
    host, port = engine.bound["smtp"]
    with smtplib.SMTP(host, port) as client:
        assert client.send_message(dsn, from_addr="", to_addrs=[BOUNCES]) == {}
    before = len(sink.handler.received)
    settle(engine, federation, sink)
    assert len(without_marker(sink.handler.received)) == before


@pytest.mark.parametrize("change, headers", [
    pytest.param({"author": "noreply@example.fr"}, b"", id="noreply-author"),
    pytest.param({"author": "bureau-owner@example.org"}, b"", id="list-software-author"),
    pytest.param({"envelope_sender": ""}, b"", id="null-return-path"),
    pytest.param({}, b"Precedence: list\r\n", id="precedence-list"),
    pytest.param({}, b"List-Id: <autre.listes.example.org>\r\n", id="from-another-list"),
    pytest.param({}, b"Auto-Submitted: auto-replied\r\n", id="auto-submitted"),
])
def test_an_automaton_author_is_never_told(start_engine, federation: Federation, sink: Sink,  # type: ignore[no-untyped-def]
                                           engine_settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                           change: dict[str, object], headers: bytes) -> None:
    _, told = _fail(start_engine, sink, engine_settings, monkeypatch, change, headers)
    assert list(told) == [ADMIN]


def test_an_author_over_the_daily_limit_is_not_told(start_engine, federation: Federation, sink: Sink,
                                                    engine_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(notices.AUTHOR_NOTICES_PER_DAY):  # ten notices already went to this author today
        assert notices.within_author_limits("Elodie.Dupre@example.fr", federation.board_list.id)
    _, told = _fail(start_engine, sink, engine_settings, monkeypatch)
    assert list(told) == [ADMIN]
