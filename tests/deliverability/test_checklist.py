"""/work/shared/DELIVERABILITY.md, item by item: a post over real SMTP through the engine, the copies read at a sink.

Numbers are the checklist's (§0 table; sections in the names). Items 11 (bounce scores), 12 (per-destination
throttling) and 13 (retries) are tested by the bounce and delivery work (tests/engine, branches bounces and
outbound); §2.3's endpoint details by tests/portal/test_unsubscribe.py.
"""

from __future__ import annotations

import dataclasses
import re
import smtplib
from email.utils import parsedate_to_datetime

import dkim
import pytest

from engine import resolver
from engine.bounces import verp
from engine.config import Settings
from engine.lists.models import OptOut, PostPolicy
from engine.outbound.models import Delivery
from engine.posting import keys
from engine.posting.models import Message, MessageState
from portal import create_app
from tests import factories
from tests.deliverability.conftest import verifies
from tests.deliverability.helpers import LIST, as_bytes, make_post, send_raw
from tests.engine.conftest import Federation, wait_until
from tests.support.sink import Received, Sink, SinkHandler

AUTHOR = "Élodie Dupré <elodie.dupre@example.fr>"
HOSTILE = {"List_Unsubscribe": "<https://evil.example/u/x>", "List_Id": "<other.example.org>",
           "List_Unsubscribe_Post": "List-Unsubscribe=One-Click", "Bcc": "hidden@example.org"}


def fan_out(start_engine, sink: Sink, settings: Settings, expected: int = 2, **headers: str) -> list[Received]:  # type: ignore[no-untyped-def]
    engine = start_engine(settings)
    before = len(sink.handler.received)
    send_raw(engine, as_bytes(make_post(author=AUTHOR, **(headers or HOSTILE))), "elodie.dupre@example.fr")
    wait_until(lambda: len(sink.handler.received) - before == expected, what=f"{expected} copies")
    return sink.handler.received[before:]


@pytest.fixture
def copies(start_engine, federation: Federation, sink: Sink, engine_settings: Settings,  # type: ignore[no-untyped-def]
           list_key: keys.DkimKey) -> list[Received]:
    return fan_out(start_engine, sink, engine_settings)


def https_urls(copy: Received) -> list[str]:
    return re.findall(r"<(https://[^>]+)>", str(copy.message["List-Unsubscribe"]))


def test_1_one_click_headers_on_every_copy(copies: list[Received]) -> None:  # RFC 8058 §3.1
    for copy in copies:
        message = copy.message
        assert len(message.get_all("List-Unsubscribe")) == 1 and len(message.get_all("List-Unsubscribe-Post")) == 1
        assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in copy.data
        value = " ".join(str(message["List-Unsubscribe"]).split())
        assert re.fullmatch(r"<https://[^>]+>, <mailto:[^>]+>", value)  # https first, each in <…>
        assert len(https_urls(copy)) == 1 and "evil.example" not in value
    assert len({https_urls(copy)[0] for copy in copies}) == len(copies)  # personal


def test_2_unsubscribe_headers_are_covered_by_the_dkim_signature(copies: list[Received]) -> None:  # RFC 8058 §4
    for copy in copies:
        assert verifies(copy.data)
        signed = set(_tag(copy, "h").lower().split(":"))
        assert {"from", "list-unsubscribe", "list-unsubscribe-post"} <= signed
        assert not verifies(copy.data.replace(b"https://listes.example.fr/u/", b"https://listes.example.fr/v/", 1))


def _tag(copy: Received, name: str) -> str:
    value = "".join(str(copy.message["DKIM-Signature"]).split())
    return dict(part.split("=", 1) for part in value.split(";") if "=" in part)[name]


def test_3_4_one_click_post_unsubscribes_at_once_and_the_next_post_skips_the_member(
        start_engine, federation: Federation, sink: Sink, engine_settings: Settings, copies: list[Received]) -> None:  # type: ignore[no-untyped-def]
    [elodie] = [c for c in copies if c.rcpt_tos == ["elodie.dupre@example.fr"]]
    path = https_urls(elodie)[0].removeprefix("https://listes.example.fr")
    client = create_app(engine_settings, config={"TESTING": True}).test_client()
    assert client.get(path).status_code == 200 and OptOut.select().count() == 0  # a GET (a scanner) changes nothing
    answer = client.post(path, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 200 and not 300 <= answer.status_code < 400
    assert OptOut.select().count() == 1
    later = fan_out(start_engine, sink, engine_settings, expected=1)
    assert [c.rcpt_tos for c in later] == [["Famille.Martin@example.fr"]]


def test_1_1_list_post_names_the_list_or_says_no_on_an_announce_only_list(  # RFC 2369 §3.4
        start_engine, federation: Federation, sink: Sink, engine_settings: Settings,  # type: ignore[no-untyped-def]
        copies: list[Received]) -> None:
    for copy in copies:  # a discussion list: posts go to its address
        assert copy.message.get_all("List-Post") == [f"<mailto:{LIST}>"]
    federation.board_list.post_policy = PostPolicy.MODERATORS  # announce-only: its owner alone writes
    federation.board_list.owner = federation.board[0]
    federation.board_list.save()
    announced = fan_out(start_engine, sink, engine_settings, List_Post=f"<mailto:{LIST}>")
    assert len(announced) == 2
    for copy in announced:  # the post's own List-Post is replaced, not kept beside ours
        assert copy.message.get_all("List-Post") == ["NO"]
        assert b"\r\nList-Post: NO\r\n" in copy.data


def test_5_list_id_is_the_address_based_label(start_engine, federation: Federation, sink: Sink,  # type: ignore[no-untyped-def]
                                              engine_settings: Settings, copies: list[Received]) -> None:  # RFC 2919
    federation.board_list.name = "Bureau (nouveau nom)"
    federation.board_list.save()
    renamed = fan_out(start_engine, sink, engine_settings)
    for copy in [*copies, *renamed]:
        value = " ".join(str(copy.message["List-Id"]).split())
        assert re.fullmatch(r'(.*)?<[^<>@\s]+\.[a-z0-9.-]+>', value) and len(value) <= 255
        assert value.endswith("<comite_directeur.comite.listes.example.fr>")


def test_6_rfc5322_singletons_message_id_lines_and_date(copies: list[Received]) -> None:
    for copy in copies:
        message = copy.message
        for name in ("From", "Date", "Message-ID", "Subject", "To"):
            assert len(message.get_all(name, [])) == 1, name
        assert re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", message["Message-ID"])
        assert parsedate_to_datetime(message["Date"]) is not None
        assert len(message["From"].addresses) == 1
        assert max(len(line) for line in copy.data.split(b"\r\n")) <= 998
        assert "Bcc" not in message


def test_7_dmarc_safe_from(copies: list[Received]) -> None:  # RFC 7960 §4, new lists rewrite always
    for copy in copies:
        assert copy.message["From"].addresses[0].addr_spec == LIST
        assert copy.message["From"].addresses[0].display_name.startswith("Élodie Dupré via ")
        assert copy.message["Reply-To"].addresses[0].addr_spec == "elodie.dupre@example.fr"


def test_8_dkim_by_the_list_domain_aligned_with_from(copies: list[Received], list_key: keys.DkimKey) -> None:
    for copy in copies:
        assert _tag(copy, "d") == copy.message["From"].addresses[0].domain == "listes.example.fr"
        assert _tag(copy, "a") == "rsa-sha256" and _tag(copy, "c") == "relaxed/relaxed"
        with pytest.raises(KeyError):
            _tag(copy, "l")
    assert keys.load_private_key(list_key.private_key).key_size >= 2048  # type: ignore[union-attr]


def test_9_arc_seal_when_the_list_relays(start_engine, federation: Federation, sink: Sink,  # type: ignore[no-untyped-def]
                                         engine_settings: Settings, list_key: keys.DkimKey) -> None:
    federation.board_list.arc_seal = True
    federation.board_list.save()
    for copy in fan_out(start_engine, sink, engine_settings):
        assert re.match(r"i=1;.*cv=none", " ".join(copy.message["ARC-Seal"].split()))
        assert dkim.arc_verify(copy.data, dnsfunc=resolver.dkim_dnsfunc)[0] == b"pass"


def test_10_verp_envelope_per_recipient(copies: list[Received], start_engine, engine_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    key = verp.signing_key(engine_settings)
    senders = set()
    for copy in copies:
        local, _, domain = copy.mail_from.partition("@")
        assert domain == "listes.example.fr" and len(local.encode()) <= 64
        token = local.partition("+")[2]
        assert Delivery.get_by_id(verp.read_token(key, token)).address == copy.rcpt_tos[0]
        flipped = token[:-1] + ("0" if token[-1] != "0" else "1")
        assert verp.read_token(key, flipped) is None
        senders.add(copy.mail_from)
    assert len(senders) == len(copies)
    engine = start_engine(engine_settings)
    with smtplib.SMTP(*engine.bound["smtp"]) as client:
        client.ehlo("test")
        client.mail("")
        assert client.rcpt(next(iter(senders)))[0] == 250
        assert client.rcpt("comite_directeur.comite-bounces+garbage.0000000000@listes.example.fr")[0] == 550


def test_14_loop_protection_and_list_markers(start_engine, federation: Federation, sink: Sink,  # type: ignore[no-untyped-def]
                                             engine_settings: Settings, copies: list[Received]) -> None:
    for copy in copies:
        assert copy.message["Precedence"] == "list" and copy.message["X-Loop"] == LIST
    engine = start_engine(engine_settings)
    looped = as_bytes(make_post(author=AUTHOR, X_Loop=LIST))
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send_raw(engine, looped, "elodie.dupre@example.fr")
    assert refused.value.smtp_code == 550
    send_raw(engine, as_bytes(make_post(author=AUTHOR, Auto_Submitted="auto-replied")), "elodie.dupre@example.fr")
    assert Message.select().where(Message.state == MessageState.DISCARDED).count() == 1
    assert len(sink.handler.received) == len(copies)


def test_15_no_open_relay_and_no_spoofed_posting(start_engine, federation: Federation, sink: Sink, dns,  # type: ignore[no-untyped-def]
                                                 engine_settings: Settings) -> None:
    engine = start_engine(dataclasses.replace(engine_settings, inbound_authentication="verify"))
    with smtplib.SMTP(*engine.bound["smtp"]) as client:
        client.ehlo("test")
        client.mail("someone@example.org")
        code, reply = client.rcpt("someone@gmail.com")
        assert code == 550 and b"5.7.1" in reply
    dns.add("example.fr", "TXT", "v=spf1 ip4:192.0.2.1 -all")
    send_raw(engine, as_bytes(make_post(author=AUTHOR)), "elodie.dupre@example.fr")
    assert Message.get().state == MessageState.HELD
    assert not any(r.message["List-Id"] for r in sink.handler.received)


def test_2_4_visible_personal_unsubscribe_link_in_every_text_part(copies: list[Received]) -> None:
    for copy in copies:
        url = https_urls(copy)[0]
        plain = copy.message.get_body(("plain",)).get_content()
        html = copy.message.get_body(("html",)).get_content()
        assert url in plain and "Se désabonner" in plain and url in html


def test_3_2_non_ascii_names_and_subjects_are_encoded_words(copies: list[Received]) -> None:  # RFC 2047, RFC 6532
    for copy in copies:
        head = copy.data.split(b"\r\n\r\n", 1)[0]
        assert head.isascii()
        assert copy.message["Subject"] == "Sortie à Cassis"


@pytest.mark.parametrize("smtputf8", [False, True])
def test_3_2_d_an_idn_domain_member_is_sent_to_its_a_label(start_engine, federation: Federation,  # type: ignore[no-untyped-def]
                                                          engine_settings: Settings, smtputf8: bool) -> None:
    """RCPT uses the xn-- form (IDNA2008), whether the relay offers SMTPUTF8 or not (docs/deliverability.md);
    a UTF-8 local part still needs SMTPUTF8 (553 5.6.7 without); a domain IDNA2008 refuses fails that copy
    alone (553 5.1.3); everyone else is served."""
    board = factories.role("membre_cd")
    for address in ("jerome@plongée-13.fr", "jérôme@plongée-13.fr", "x@exa\u2603mple.fr"):
        factories.mandate(factories.member("Jérôme", "Idn", email=address, club=federation.club), board,
                          federation.region)
    relay = Sink(SinkHandler(), smtputf8=smtputf8)
    relay.start()
    try:
        copies = fan_out(start_engine, relay, dataclasses.replace(engine_settings, smarthost=relay.url),
                         expected=4 if smtputf8 else 3)
        wait_until(lambda: Message.select().where(Message.state == MessageState.DONE).exists(), what="post done")
    finally:
        relay.stop()
    by_rcpt = {copy.rcpt_tos[0]: copy for copy in copies}
    assert by_rcpt["jerome@xn--plonge-13-f4a.fr"].mail_options == []  # an ASCII envelope: no SMTPUTF8 needed
    assert "elodie.dupre@example.fr" in by_rcpt and not any("plongée" in rcpt for rcpt in by_rcpt)
    replies = {d.address: d.last_reply for d in Delivery.select()}
    assert replies["jerome@plongée-13.fr"].startswith("250")  # kept as the member typed it
    assert replies["x@exa\u2603mple.fr"].startswith("553 5.1.3 ") and "IDNA2008" in replies["x@exa\u2603mple.fr"]
    if smtputf8:
        assert "SMTPUTF8" in by_rcpt["jérôme@xn--plonge-13-f4a.fr"].mail_options
    else:
        assert replies["jérôme@plongée-13.fr"].startswith("553 5.6.7 Non-ASCII local part")


def test_9_3_a_list_name_with_a_line_break_sends_nothing(start_engine, federation: Federation, sink: Sink,  # type: ignore[no-untyped-def]
                                                         engine_settings: Settings) -> None:
    federation.board_list.name = "Comité\r\nBcc: victim@example.com"
    federation.board_list.save()
    engine = start_engine(engine_settings)
    # Refused at DATA, before anything is stored: a temporary refusal, since the list's staff can correct it.
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send_raw(engine, as_bytes(make_post(author=AUTHOR)), "elodie.dupre@example.fr")
    assert refused.value.smtp_code == 451 and b"4.3.5" in refused.value.smtp_error
    assert Message.select().count() == 0 and Delivery.select().count() == 0
    assert not sink.handler.received
