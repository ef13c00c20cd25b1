"""ARC sealing of list copies (RFC 8617), verified with dkimpy's arc_verify after real SMTP."""

from __future__ import annotations

import dataclasses

import dkim
import pytest
from cryptography.hazmat.primitives import serialization

from engine import resolver
from engine.config import Settings
from engine.posting import keys
from engine.resolver import StaticResolver
from tests.deliverability.conftest import verifies
from tests.deliverability.helpers import as_bytes, make_post, send_raw
from tests.engine.conftest import Federation, wait_until
from tests.support.sink import Sink

AUTHOR = "Élodie Dupré <elodie.dupre@example.fr>"


def arc_verdict(data: bytes) -> tuple[str, list[dict[str, object]], str]:
    validation, results, reason = dkim.arc_verify(data, dnsfunc=resolver.dkim_dnsfunc)
    return validation.decode() if validation else "", results, reason


@pytest.fixture
def sealing(federation: Federation) -> Federation:
    federation.board_list.arc_seal = True
    federation.board_list.save()
    return federation


def sealed_copies(start_engine, sink: Sink, settings: Settings, data: bytes) -> list:  # type: ignore[no-untyped-def,type-arg]
    send_raw(start_engine(settings), data, "elodie.dupre@example.fr")
    wait_until(lambda: len(sink.handler.received) == 2, what="two copies")
    return list(sink.handler.received)


def test_each_copy_carries_a_valid_first_arc_set(start_engine, sealing: Federation, sink: Sink, dns: StaticResolver,  # type: ignore[no-untyped-def]
                                                 verifying_settings: Settings, list_key: keys.DkimKey,
                                                 author_domain) -> None:
    signed = author_domain("example.fr").sign(as_bytes(make_post(author=AUTHOR)))
    for copy in sealed_copies(start_engine, sink, verifying_settings, signed):
        validation, results, reason = arc_verdict(copy.data)
        assert validation == "pass", reason
        message = copy.message
        assert message["ARC-Seal"].startswith("i=1;") and "cv=none" in message["ARC-Seal"]
        aar = " ".join(message["ARC-Authentication-Results"].split())
        # The AAR records what the list saw on arrival: the author's own signature verified.
        assert aar.startswith("i=1; listes.example.fr;") and "dkim=pass header.d=example.fr" in aar
        assert "d=listes.example.fr" in message["ARC-Message-Signature"]
        assert verifies(copy.data)  # DKIM still verifies beside the seal


def test_a_field_added_after_sealing_breaks_the_chain(start_engine, sealing: Federation, sink: Sink,  # type: ignore[no-untyped-def]
                                                      engine_settings: Settings, list_key: keys.DkimKey) -> None:
    copy = sealed_copies(start_engine, sink, engine_settings, as_bytes(make_post(author=AUTHOR)))[0]
    assert arc_verdict(copy.data)[0] == "pass"
    tampered = copy.data.replace(b"\r\nSubject:", b"\r\nSubject: autre\r\nSubject:", 1)
    assert arc_verdict(tampered)[0] == "fail"


def test_lists_seal_only_when_they_ask(start_engine, federation: Federation, sink: Sink,  # type: ignore[no-untyped-def]
                                       engine_settings: Settings, list_key: keys.DkimKey) -> None:
    copy = sealed_copies(start_engine, sink, engine_settings, as_bytes(make_post(author=AUTHOR)))[0]
    assert "ARC-Seal" not in copy.message and verifies(copy.data)


def test_an_existing_chain_is_extended(start_engine, sealing: Federation, sink: Sink, dns: StaticResolver,  # type: ignore[no-untyped-def]
                                       verifying_settings: Settings, list_key: keys.DkimKey, author_domain) -> None:
    # A forwarder sealed the post before it reached the list: the list adds instance 2 with cv=pass.
    sealing.board_list.sender_check = "off"  # the forwarded post itself is not authenticated (no DKIM, no SPF)
    sealing.board_list.save()
    forwarder = author_domain("forwarder.example")
    original = as_bytes(make_post(author=AUTHOR))
    pem = forwarder.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption())
    with_results = b"Authentication-Results: forwarder.example; spf=pass smtp.mailfrom=example.fr\r\n" + original
    seal = dkim.arc_sign(with_results, b"mail", b"forwarder.example", pem, b"forwarder.example",
                         include_headers=[b"from", b"to", b"subject"])
    inbound = b"".join(seal) + with_results
    assert arc_verdict(inbound)[0] == "pass"
    copy = sealed_copies(start_engine, sink, verifying_settings, inbound)[0]
    validation, results, reason = arc_verdict(copy.data)
    assert validation == "pass", reason
    assert [result["instance"] for result in results] == [2, 1]
    assert "cv=pass" in copy.message["ARC-Seal"] and copy.message["ARC-Seal"].startswith("i=2;")


def test_arc_needs_the_engine_to_sign(start_engine, sealing: Federation, sink: Sink,  # type: ignore[no-untyped-def]
                                      engine_settings: Settings, list_key: keys.DkimKey) -> None:
    settings = dataclasses.replace(engine_settings, dkim_signing="smarthost")
    copy = sealed_copies(start_engine, sink, settings, as_bytes(make_post(author=AUTHOR)))[0]
    assert "ARC-Seal" not in copy.message and "DKIM-Signature" not in copy.message
