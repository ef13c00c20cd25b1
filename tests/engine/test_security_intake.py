"""Security review, issue 11, the list engine's findings 3, 4, 5, 10 and 11: each attack replayed over SMTP
or LMTP against a running engine (the test names give the finding's number)."""

from __future__ import annotations

import dataclasses
import smtplib
from email import policy as email_policy

from engine.config import Settings
from engine.outbound.models import Delivery
from engine.posting.models import Message
from tests.engine.conftest import Federation, wait_until
from tests.engine.test_engine_e2e import post
from tests.support.sink import Sink

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
