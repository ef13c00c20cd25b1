"""Sender authentication for lists whose posting rights depend on the From address (DELIVERABILITY §9.2).

A forged From of a member, sent from elsewhere, is held (or waits for its author's confirmation); the
same post authenticated by its author's provider (aligned DKIM, or SPF for the From domain) goes out.
"""

from __future__ import annotations

import dataclasses
import re
import smtplib

import pytest

from engine.config import Settings
from engine.lists.models import PostingPermission
from engine.posting import confirmation
from engine.posting.models import Message, MessageState
from engine.resolver import StaticResolver
from portal import create_app
from tests import factories
from tests.deliverability.helpers import LIST, as_bytes, make_post, send_raw
from tests.engine.conftest import Federation, wait_until
from tests.support.sink import Sink

AUTHOR = "Élodie Dupré <elodie.dupre@example.fr>"
ENVELOPE = "elodie.dupre@example.fr"


@pytest.fixture
def strict_spf(dns: StaticResolver) -> StaticResolver:
    dns.add("example.fr", "TXT", "v=spf1 ip4:192.0.2.0/24 -all")  # 127.0.0.1 is not example.fr's
    return dns


def copies(sink: Sink) -> list:  # type: ignore[type-arg]
    return [r for r in sink.handler.received if r.message["List-Id"]]


@pytest.mark.parametrize("policy", ["members", "roles"])
def test_forged_from_of_a_member_is_held_and_moderators_told(start_engine, federation: Federation, sink: Sink,  # type: ignore[no-untyped-def]
                                                            verifying_settings: Settings, strict_spf, policy: str) -> None:
    federation.board_list.post_policy = policy
    federation.board_list.save()
    if policy == "roles":
        PostingPermission.create(mailing_list=federation.board_list, role=factories.role("membre_cd"),
                                 structure=federation.region)
    engine = start_engine(verifying_settings)
    assert send_raw(engine, as_bytes(make_post(author=AUTHOR)), ENVELOPE) == {}
    held = Message.get()
    assert held.state == MessageState.HELD and "not authenticated" in held.reason
    assert "spf=fail smtp.mailfrom=example.fr" in held.authentication and "dmarc=none" in held.authentication
    asked = sink.handler.by_recipient()["webmaster@example.fr"][0].message
    assert "moderation/" in asked.get_content()
    assert copies(sink) == []


def test_the_same_post_signed_by_its_provider_is_distributed(start_engine, federation: Federation, sink: Sink,  # type: ignore[no-untyped-def]
                                                             verifying_settings: Settings, strict_spf,
                                                             author_domain) -> None:
    signed = author_domain("example.fr").sign(as_bytes(make_post(author=AUTHOR)))
    send_raw(start_engine(verifying_settings), signed, ENVELOPE)
    wait_until(lambda: len(copies(sink)) == 2, what="two copies")
    assert "dkim=pass header.d=example.fr" in Message.get().authentication


def test_spf_pass_for_the_from_domain_is_enough(start_engine, federation: Federation, sink: Sink,  # type: ignore[no-untyped-def]
                                                verifying_settings: Settings, dns: StaticResolver) -> None:
    dns.add("example.fr", "TXT", "v=spf1 ip4:127.0.0.0/8 -all")
    send_raw(start_engine(verifying_settings), as_bytes(make_post(author=AUTHOR)), ENVELOPE)
    wait_until(lambda: len(copies(sink)) == 2, what="two copies")
    assert "spf=pass" in Message.get().authentication


def test_a_signature_by_another_domain_does_not_authenticate_the_from(start_engine, federation: Federation,  # type: ignore[no-untyped-def]
                                                                      sink: Sink, verifying_settings: Settings,
                                                                      strict_spf, author_domain) -> None:
    signed = author_domain("evil.example").sign(as_bytes(make_post(author=AUTHOR)))
    send_raw(start_engine(verifying_settings), signed, "someone@evil.example")
    held = Message.get()
    assert held.state == MessageState.HELD and "dkim=pass header.d=evil.example" in held.authentication


@pytest.mark.parametrize(("results", "state"), [
    (["mx.listes.example.fr; dkim=pass header.d=example.fr; dmarc=pass header.from=example.fr"], MessageState.ACCEPTED),
    (["mx.listes.example.fr; spf=pass smtp.mailfrom=elodie.dupre@example.fr"], MessageState.ACCEPTED),
    (["evil.example; dmarc=pass header.from=example.fr"], MessageState.HELD),
    (["mx.listes.example.fr; dmarc=fail header.from=example.fr", "mx.listes.example.fr; dmarc=pass"], MessageState.HELD),
    ([], MessageState.HELD),
])
def test_header_mode_trusts_only_the_topmost_result_of_the_configured_authserv_id(
        start_engine, federation: Federation, sink: Sink, engine_settings: Settings,  # type: ignore[no-untyped-def]
        results: list[str], state: str) -> None:
    settings = dataclasses.replace(engine_settings, inbound_authentication="header", authserv_id="mx.listes.example.fr")
    data = as_bytes(make_post(author=AUTHOR))
    for value in reversed(results):
        data = f"Authentication-Results: {value}\r\n".encode() + data
    send_raw(start_engine(settings), data, ENVELOPE)
    assert Message.get().state in (state, MessageState.SENDING, MessageState.DONE) if state == MessageState.ACCEPTED \
        else Message.get().state == state


def test_confirm_mode_mails_the_author_a_link_that_releases_the_post(start_engine, federation: Federation,  # type: ignore[no-untyped-def]
                                                                      sink: Sink, verifying_settings: Settings,
                                                                      strict_spf, db) -> None:
    federation.board_list.sender_check = "confirm"
    federation.board_list.save()
    send_raw(start_engine(verifying_settings), as_bytes(make_post(author=AUTHOR)), ENVELOPE)
    held = Message.get()
    assert held.state == MessageState.HELD
    [notice] = sink.handler.by_recipient()[ENVELOPE]
    assert notice.message["Auto-Submitted"] == "auto-generated"
    assert "webmaster@example.fr" not in sink.handler.by_recipient()  # the author decides, not the moderators
    [url] = re.findall(r"https://listes\.example\.fr(/confirmer/\S+)", notice.message.get_content())
    client = create_app(verifying_settings, config={"TESTING": True, "WTF_CSRF_ENABLED": False}).test_client()
    page = client.get(url)
    assert page.status_code == 200 and "Oui, diffuser ce message" in page.get_data(as_text=True)
    assert Message.get().state == MessageState.HELD  # a GET (a link scanner) decides nothing
    assert client.post(url[:-3] + "xyz").status_code == 404
    assert client.post(url).status_code == 302
    wait_until(lambda: len(copies(sink)) == 2, what="copies after confirmation")
    assert client.post(url).status_code == 302  # twice: nothing more happens
    assert len(copies(sink)) == 2


def test_confirm_mode_mails_the_from_address_never_the_envelope_sender(start_engine, federation: Federation,  # type: ignore[no-untyped-def]
                                                                      sink: Sink, verifying_settings: Settings,
                                                                      strict_spf, db) -> None:
    """The From is what the post claims and what the link must prove: an envelope sender of the forger's
    choosing (here a forwarder's SRS address) must not receive the link that releases the post."""
    federation.board_list.sender_check = "confirm"
    federation.board_list.save()
    envelope = "SRS0=hX1c=TK=example.fr=elodie.dupre@relais.example.net"
    send_raw(start_engine(verifying_settings), as_bytes(make_post(author=AUTHOR)), envelope)
    assert Message.get().state == MessageState.HELD
    wait_until(lambda: ENVELOPE in sink.handler.by_recipient(), what="the confirmation mail")
    received = sink.handler.by_recipient()
    assert set(received) == {ENVELOPE}  # the From's address only: not the envelope, not the moderators
    [notice] = received[ENVELOPE]
    assert notice.rcpt_tos == [ENVELOPE] and notice.message["To"].addresses[0].addr_spec == ENVELOPE
    assert envelope.lower() not in str(notice.message).lower()
    assert re.findall(r"https://listes\.example\.fr/confirmer/\S+", notice.message.get_content())


def test_a_confirmation_link_names_one_message_and_one_address(verifying_settings: Settings, federation: Federation,  # type: ignore[no-untyped-def]
                                                               db) -> None:
    from engine import clock, tokens

    message = Message.create(mailing_list=federation.board_list, author="elodie.dupre@example.fr", content=b"x", size=1,
                             state=MessageState.HELD, received_at=clock.now())
    token = confirmation.confirmation_url(verifying_settings, message).rsplit("/", 1)[1]
    assert confirmation.load(verifying_settings, token).id == message.id
    Message.update(author="other@example.fr").where(Message.id == message.id).execute()
    with pytest.raises(tokens.BadToken):
        confirmation.load(verifying_settings, token)


def test_non_members_still_follow_the_posting_policy(start_engine, federation: Federation, sink: Sink,  # type: ignore[no-untyped-def]
                                                     verifying_settings: Settings, strict_spf) -> None:
    federation.board_list.hold_unauthorised = False
    federation.board_list.save()
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send_raw(start_engine(verifying_settings), as_bytes(make_post(author="Paul <paul.durand@example.fr>")),
                 "paul.durand@example.fr")
    assert refused.value.smtp_code == 550


@pytest.mark.parametrize(("field", "value"), [("post_policy", "anyone"), ("sender_check", "off")])
def test_open_lists_and_lists_that_opted_out_are_not_checked(start_engine, federation: Federation, sink: Sink,  # type: ignore[no-untyped-def]
                                                             verifying_settings: Settings, strict_spf,
                                                             field: str, value: str) -> None:
    setattr(federation.board_list, field, value)
    federation.board_list.save()
    send_raw(start_engine(verifying_settings), as_bytes(make_post(author=AUTHOR)), ENVELOPE)
    wait_until(lambda: len(copies(sink)) == 2, what="two copies")


def test_over_lmtp_the_mta_in_front_is_not_taken_for_the_sender(start_engine, federation: Federation, sink: Sink,  # type: ignore[no-untyped-def]
                                                                 verifying_settings: Settings, dns: StaticResolver) -> None:
    # SPF would pass for 127.0.0.1, but over LMTP that address is the MTA's, not the author's.
    dns.add("example.fr", "TXT", "v=spf1 ip4:127.0.0.0/8 -all")
    engine = start_engine(verifying_settings)
    with smtplib.LMTP(*engine.bound["lmtp"], timeout=10) as client:
        client.ehlo("mx.listes.example.fr")
        assert client.mail(ENVELOPE)[0] == 250 and client.rcpt(LIST)[0] == 250
        assert client.data(as_bytes(make_post(author=AUTHOR)))[0] == 250
    held = Message.get()
    assert held.state == MessageState.HELD and "spf=none" in held.authentication


def test_dns_lookups_of_the_intake_never_run_in_the_database_thread(start_engine, federation: Federation,  # type: ignore[no-untyped-def]
                                                                    sink: Sink, verifying_settings: Settings,
                                                                    strict_spf: StaticResolver, author_domain) -> None:
    # A slow DNS answer (SPF may take ten) must not stall claims and records of every delivery meanwhile.
    import threading

    threads: list[str] = []
    lookup = strict_spf.lookup

    def recording(name: str, rdtype: str):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return lookup(name, rdtype)

    strict_spf.lookup = recording  # type: ignore[method-assign]
    signed = author_domain("example.fr").sign(as_bytes(make_post(author=AUTHOR)))
    send_raw(start_engine(verifying_settings), signed, ENVELOPE)
    wait_until(lambda: len(copies(sink)) == 2, what="two copies")
    assert threads and not any(name.startswith("palanquee-db") for name in threads), threads
