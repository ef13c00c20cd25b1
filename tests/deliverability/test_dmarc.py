"""DMARC-safe posting (RFC 7489, RFC 7960 §4): From rewriting by the author's policy, the author kept visible."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from email import policy
from email.parser import BytesParser
from email.utils import getaddresses
from pathlib import Path

import pytest

from engine import clock
from engine.config import Settings
from engine.posting import dmarc, keys
from engine.posting.render import ListInfo, Personal, prepare
from engine.resolver import StaticResolver
from tests.deliverability.conftest import verifies
from tests.deliverability.helpers import LIST, as_bytes, make_post, send_raw
from tests.engine.conftest import Federation, wait_until
from tests.support.sink import Sink

POSTS = Path(__file__).resolve().parents[1] / "data" / "posts"


@pytest.fixture
def zone(dns: StaticResolver) -> StaticResolver:
    dns.add("_dmarc.rejecting.example", "TXT", "v=DMARC1; p=reject; rua=mailto:d@rejecting.example")
    dns.add("_dmarc.relaxed.example", "TXT", "v=DMARC1; p=none")
    dns.add("_dmarc.quarantine.example", "TXT", "v=DMARC1; p=none; sp=quarantine")
    dns.add("_dmarc.broken.example", "TXT", TimeoutError("no answer"))  # type: ignore[arg-type]
    return dns


def one_copy(start_engine, sink: Sink, settings: Settings, federation: Federation, author: str,  # type: ignore[no-untyped-def]
             mode: str = dmarc.Mode.AUTOMATIC, **list_fields: object):
    federation.board_list.post_policy = "anyone"
    federation.board_list.dmarc_mode = mode
    for name, value in list_fields.items():
        setattr(federation.board_list, name, value)
    federation.board_list.save()
    engine = start_engine(settings)
    address = getaddresses([author])[0][1]
    data = as_bytes(make_post(author="placeholder@example.org")).replace(b"placeholder@example.org", author.encode())
    send_raw(engine, data, address)
    wait_until(lambda: len(sink.handler.received) == 2, what="two copies")
    return sink.handler.received[0]


def test_author_under_p_reject_gets_the_list_from(start_engine, sink: Sink, engine_settings: Settings, zone,  # type: ignore[no-untyped-def]
                                                  federation: Federation, list_key: keys.DkimKey) -> None:
    copy = one_copy(start_engine, sink, engine_settings, federation, "Jeanne Rejet <jeanne@rejecting.example>")
    message = copy.message
    [sender] = message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Jeanne Rejet via Comité directeur – Provence", LIST)
    assert [a.addr_spec for a in message["Reply-To"].addresses] == ["jeanne@rejecting.example"]
    assert message["Reply-To"].addresses[0].display_name == "Jeanne Rejet"
    assert message["X-Original-From"] == "Jeanne Rejet <jeanne@rejecting.example>"
    assert "Cc" not in message
    # The message still reads as the author wrote it, and the list's DKIM aligns with the new From.
    assert message.get_body(("plain",)).get_content().replace("\r\n", "\n").startswith("Bonjour à tous,\nrendez-vous samedi au port à 8 h.")
    assert message["Subject"] == "Sortie à Cassis" and message["Message-ID"] == "<sortie-cassis@example.fr>"
    assert verifies(copy.data) and b"d=listes.example.fr" in copy.data.split(b"\r\n\r\n")[0]
    assert len(message.get_all("From")) == 1


@pytest.mark.parametrize("author", ["Paul Libre <paul@relaxed.example>", "Zoé Sansdmarc <zoe@plain.example>"])
def test_authors_under_p_none_or_no_record_keep_their_from(start_engine, sink: Sink, engine_settings: Settings,  # type: ignore[no-untyped-def]
                                                           zone, federation: Federation, author: str) -> None:
    message = one_copy(start_engine, sink, engine_settings, federation, author).message
    assert str(message["From"]) == author
    assert "Reply-To" not in message and "X-Original-From" not in message
    assert message.get_body(("plain",)).get_content().replace("\r\n", "\n").startswith("Bonjour à tous,")


@pytest.mark.parametrize("author", ["Sous Domaine <a@mail.quarantine.example>", "Panne <b@broken.example>"])
def test_subdomain_policy_and_unknown_policy_rewrite(start_engine, sink: Sink, engine_settings: Settings, zone,  # type: ignore[no-untyped-def]
                                                     federation: Federation, author: str) -> None:
    # RFC 7489 §6.6.3: no record at the subdomain, so the organizational domain's sp= applies; a DNS
    # failure could hide a p=reject, so the safe side is to rewrite.
    message = one_copy(start_engine, sink, engine_settings, federation, author).message
    assert message["From"].addresses[0].addr_spec == LIST
    assert message["Reply-To"].addresses[0].addr_spec == getaddresses([author])[0][1]


@pytest.mark.parametrize("record", ["v=DMARC1; p=reject; pct=0", "v=DMARC1; p=quarantine; pct=10",
                                    "v=DMARC1; pct=0; p=reject; sp=none"])
def test_a_sampling_pct_is_ignored_and_the_policy_applies_to_every_copy(  # type: ignore[no-untyped-def]
        start_engine, sink: Sink, engine_settings: Settings, zone, federation: Federation, record: str) -> None:
    # RFC 7489 §6.3 pct: receivers apply the policy to that share of failing mail, chosen at random; any copy
    # may be in it, so the cautious reading is the policy itself (docs/deliverability.md).
    zone.add("_dmarc.echantillon.example", "TXT", record)
    assert dmarc.lookup("echantillon.example").p in ("reject", "quarantine")
    message = one_copy(start_engine, sink, engine_settings, federation, "Ève Échantillon <eve@echantillon.example>"
                       ).message
    assert message["From"].addresses[0].addr_spec == LIST
    assert message["Reply-To"].addresses[0].addr_spec == "eve@echantillon.example"


def test_always_mode_rewrites_a_p_none_author(start_engine, sink: Sink, engine_settings: Settings, zone,  # type: ignore[no-untyped-def]
                                              federation: Federation) -> None:
    message = one_copy(start_engine, sink, engine_settings, federation, "Paul Libre <paul@relaxed.example>",
                       mode=dmarc.Mode.ALWAYS).message
    assert message["From"].addresses[0].display_name == "Paul Libre via Comité directeur – Provence"
    assert message["Reply-To"].addresses[0].addr_spec == "paul@relaxed.example"


def test_never_mode_keeps_a_p_reject_author(start_engine, sink: Sink, engine_settings: Settings, zone,  # type: ignore[no-untyped-def]
                                            federation: Federation) -> None:
    message = one_copy(start_engine, sink, engine_settings, federation, "Jeanne Rejet <jeanne@rejecting.example>",
                       mode=dmarc.Mode.NEVER).message
    assert message["From"].addresses[0].addr_spec == "jeanne@rejecting.example"


def test_author_in_cc_when_the_list_says_so_or_replies_go_to_the_list(start_engine, sink: Sink, zone,  # type: ignore[no-untyped-def]
                                                                      engine_settings: Settings,
                                                                      federation: Federation) -> None:
    message = one_copy(start_engine, sink, engine_settings, federation, "Jeanne Rejet <jeanne@rejecting.example>",
                       reply_to="list").message
    assert [a.addr_spec for a in message["Reply-To"].addresses] == [LIST]
    assert [a.addr_spec for a in message["Cc"].addresses] == ["jeanne@rejecting.example"]


@pytest.mark.parametrize("reply_to", ["author", "list"])
def test_a_list_set_to_author_in_cc_puts_the_author_in_cc_not_reply_to(start_engine, sink: Sink, zone,  # type: ignore[no-untyped-def]
                                                                       engine_settings: Settings,
                                                                       federation: Federation,
                                                                       list_key: keys.DkimKey, reply_to: str) -> None:
    """dmarc_author_in=cc (the list's setting, through render.list_info): From rewritten, the author in Cc
    beside the post's own Cc; Reply-To is the list's only when the list sends replies to itself."""
    copy = one_copy(start_engine, sink, engine_settings, federation, "Jeanne Rejet <jeanne@rejecting.example>",
                    dmarc_author_in=dmarc.AuthorIn.CC, reply_to=reply_to)
    message = copy.message
    [sender] = message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Jeanne Rejet via Comité directeur – Provence", LIST)
    assert [(a.display_name, a.addr_spec) for a in message["Cc"].addresses] == [("Jeanne Rejet",
                                                                                  "jeanne@rejecting.example")]
    if reply_to == "list":
        assert [a.addr_spec for a in message["Reply-To"].addresses] == [LIST]
    else:
        assert "Reply-To" not in message  # "reply all" reaches the author through Cc, "reply" the list
    assert message["X-Original-From"] == "Jeanne Rejet <jeanne@rejecting.example>"
    assert len(message.get_all("Cc")) == 1 and verifies(copy.data)


def test_new_lists_default_to_always(federation: Federation) -> None:
    assert federation.board_list.dmarc_mode == dmarc.Mode.ALWAYS
    assert federation.board_list.dmarc_author_in == dmarc.AuthorIn.REPLY_TO


def test_an_encoded_line_break_in_the_author_name_injects_nothing() -> None:
    # The intake's own handling of such a From belongs to the posting rules (branch sec-engine); the
    # rewriting itself must neither raise nor let the decoded CR/LF become a header break.
    author = "=?utf-8?q?Eve=0D=0ABcc=3A_victim=40example=2Ecom?= <eve@rejecting.example>"
    raw = as_bytes(make_post(author="placeholder@example.org")).replace(b"placeholder@example.org", author.encode())
    info = ListInfo(list_id=1, name="Comité directeur – Provence", local_part="comite_directeur.comite",
                    domain="listes.example.fr", rewrite_from=True)
    copy = prepare(raw, info).copy(Personal("https://listes.example.fr/u/T", "mailto:x", "membre"))
    head = copy.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc" not in head
    parsed = BytesParser(policy=policy.default).parsebytes(copy)
    [sender] = parsed["From"].addresses
    assert sender.addr_spec == LIST
    assert " ".join(sender.display_name.split()) == "Eve Bcc: victim@example.com via Comité directeur – Provence"
    assert parsed["Reply-To"].addresses[0].addr_spec == "eve@rejecting.example"


def test_policies_are_cached_for_their_ttl(zone: StaticResolver) -> None:
    zone.ttl = 600
    with clock.frozen(datetime(2026, 11, 30, 9, 0)) as advance:
        assert dmarc.lookup("rejecting.example").p == "reject"
        zone.add("_dmarc.rejecting.example", "TXT", "v=DMARC1; p=none")
        assert dmarc.lookup("rejecting.example").p == "reject"  # cached
        advance(timedelta(seconds=601))
        assert dmarc.lookup("rejecting.example").p == "none"
    assert zone.queries.count(("_dmarc.rejecting.example", "TXT")) == 2


def test_record_parsing_follows_rfc7489() -> None:
    assert dmarc.parse_record("v=DMARC1; p=reject; adkim=s") == {"v": "DMARC1", "p": "reject", "adkim": "s"}
    assert dmarc.parse_record("v=spf1 -all") is None
    assert dmarc.parse_record("p=reject; v=DMARC1") is None  # v= must come first (§6.4)
    assert dmarc.organizational_domain("mail.orange.fr") == "orange.fr"
    assert dmarc.organizational_domain("a.b.example.co.uk") == "example.co.uk"
    assert dmarc.aligned("mail.orange.fr", "orange.fr") and not dmarc.aligned("mail.orange.fr", "orange.fr", "s")


def test_settings_dataclass_keeps_defaults(engine_settings: Settings) -> None:
    assert dataclasses.replace(engine_settings).dkim_signing == "engine"


@pytest.mark.parametrize("cc_mode", [False, True])
def test_raw_eight_bit_names_are_read_as_utf8_when_rewriting(cc_mode: bool) -> None:
    # The post's From, Cc and Subject carry raw UTF-8 (an SMTPUTF8 client, or a careless one).
    raw = (POSTS / "raw-8bit-headers.eml").read_bytes().replace(
        b"To: ", "Cc: Zoé <zoe@example.fr>\r\nTo: ".encode(), 1)
    info = ListInfo(list_id=1, name="Comité directeur", local_part="comite_directeur.comite",
                    domain="listes.example.fr", rewrite_from=True, author_in_cc=cc_mode)
    copy = prepare(raw, info).copy(Personal("https://listes.example.fr/u/T", "mailto:x", "membre"))
    parsed = BytesParser(policy=policy.default).parsebytes(copy)
    assert parsed["From"].addresses[0].display_name == "Gérard Lefèvre via Comité directeur"
    assert str(parsed["X-Original-From"]) == "Gérard Lefèvre <gerard@example.fr>"
    if cc_mode:
        assert [a.display_name for a in parsed["Cc"].addresses] == ["Zoé", "Gérard Lefèvre"]
    else:
        assert parsed["Reply-To"].addresses[0].display_name == "Gérard Lefèvre"
