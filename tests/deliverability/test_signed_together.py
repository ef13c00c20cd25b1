"""Copies signed several at a time (their RSA operations back to back) are the copies signed one by one."""

from __future__ import annotations

import types

import dkim
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from engine.config import Settings
from engine.outbound import delivery
from engine.outbound.models import Delivery, DeliveryState
from engine.posting import keys, signing
from engine.posting.dkim import Signature
from engine.posting.render import ListInfo, Personal, prepare
from engine.posting.signing import CopySigner
from tests.deliverability.conftest import verifies
from tests.deliverability.helpers import as_bytes, make_post, send_raw
from tests.deliverability.test_dkim import _nacl_shim
from tests.engine.conftest import Federation, wait_until
from tests.support.sink import Sink


def test_copies_signed_together_are_the_copies_signed_one_by_one(dns, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    dns.add("r._domainkey.listes.example.fr", "TXT", keys.txt_record(keys.Algorithm.RSA, rsa_key))
    dns.add("e._domainkey.listes.example.fr", "TXT", keys.txt_record(keys.Algorithm.ED25519, ed_key))
    monkeypatch.setattr(signing, "time", types.SimpleNamespace(time=lambda: 1_764_500_000.0))  # one t= for both ways
    info = ListInfo(list_id=1, name="Comité directeur", local_part="cd", domain="listes.example.fr", rewrite_from=True)
    signer = CopySigner(prepare(as_bytes(make_post()), info), [
        Signature(keys.SigningKey("listes.example.fr", "r", keys.Algorithm.RSA, rsa_key)),
        Signature(keys.SigningKey("listes.example.fr", "e", keys.Algorithm.ED25519, ed_key))])
    people = [Personal(f"https://listes.example.fr/u/T{n}", f"mailto:cd-unsubscribe@listes.example.fr?subject=T{n}",
                       "membre du comité directeur") for n in range(3)]
    together = signer.copies(people, stuffed=True)
    assert together == [signer.copy(person, stuffed=True) for person in people]
    assert len(set(together)) == 3
    monkeypatch.setattr(dkim, "nacl", _nacl_shim(), raising=False)  # dkimpy's ed25519 needs PyNaCl (test_dkim.py)
    for copy in signer.copies(people):
        assert copy.startswith(b"DKIM-Signature: v=1; a=ed25519-sha256;")  # the usual order: RSA's last, on top of…
        assert verifies(copy, 0) and verifies(copy, 1)  # each copy its own two signatures
        assert not verifies(copy.replace(b"/u/T", b"/u/X"), 1)


def test_a_signed_copy_that_cannot_be_built_is_deferred_alone(start_engine, federation: Federation, sink: Sink,  # type: ignore[no-untyped-def]
                                                             engine_settings: Settings, list_key: keys.DkimKey,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    real = delivery.PreparedMessage._personal

    def personal(self, item, verp_key):  # type: ignore[no-untyped-def]
        if item.address == "elodie.dupre@example.fr":
            raise UnicodeEncodeError("ascii", "é", 0, 1, "a footer that cannot be encoded")
        return real(self, item, verp_key)

    monkeypatch.setattr(delivery.PreparedMessage, "_personal", personal)
    engine = start_engine(engine_settings)
    send_raw(engine, as_bytes(make_post()), "elodie.dupre@example.fr")
    wait_until(lambda: len(sink.handler.received) == 1, what="the other copy")
    [copy] = sink.handler.received
    assert copy.rcpt_tos == ["Famille.Martin@example.fr"] and verifies(copy.data)
    wait_until(lambda: Delivery.get(Delivery.address == "elodie.dupre@example.fr").state == DeliveryState.DEFERRED,
               what="the broken copy deferred")
    assert "4.3.0 Internal error building the copy" in Delivery.get(
        Delivery.address == "elodie.dupre@example.fr").last_reply
